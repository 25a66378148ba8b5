"""sharpen-bench's test-split section: the model card's numbers, how students run, and a missing test split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import model_card
from benchmarks import split_quality as SQ
from benchmarks import test_split as ts
from benchmarks.cli import EXIT_OK
from benchmarks.cli import main as bench_main
from benchmarks.models import resolve
from kd_trainer.models.student import save_checkpoint
from tests.helpers import make_pool, perturbed_student, soft_frame


@pytest.fixture()
def pool() -> Path:
    """A tiny photo pool (test/ and val/ plus a manifest) in the test's cache directory (KD_CACHE_DIR)."""
    return make_pool([(96, 128), (128, 96), (96, 96)], 112)


def test_sharpen_bench_reports_the_model_cards_numbers(pool: Path, tmp_path: Path) -> None:
    """The model card and sharpen-bench, each run from its own command line on the same pool with the same
    student: every per-family figure of every method is identical (not approximately: the same floats)."""
    ckpt = save_checkpoint(tmp_path / "s.pt", perturbed_student("runet-p"), name="runet-p")
    card = tmp_path / "card" / "model_card.md"
    assert model_card.main(["--student", f"s={ckpt}", "-o", str(card)]) == 0
    out = tmp_path / "bench"
    argv = ["--smoke", "--no-speed", "--no-live", "--no-video", "--presets", "gauss1.5"]
    assert bench_main([*argv, "--models", str(ckpt), "--test-frames", "0", "-o", str(out)]) == EXIT_OK

    c = json.loads(card.with_suffix(".json").read_text())
    b = json.loads((out / "benchmark.json").read_text())["test_split"]
    assert b["families_scored"] == c["families_scored"] and len(c["families_scored"]) >= 8
    assert b["frames"] == c["frames"] and len(b["frames"]) == 3
    assert b["unsharp_mask"] == c["unsharp_mask"]
    assert list(b["scores"]) == list(c["scores"]) == [ts.IDENTITY, ts.USM_GLOBAL, ts.USM_FAMILY, "s"]
    for name in c["scores"]:
        assert b["scores"][name]["families"] == c["scores"][name]["families"], name
        assert b["scores"][name]["overall"] == c["scores"][name]["overall"], name
        assert b["scores"][name]["per_frame"] == c["scores"][name]["per_frame"], name
    assert b["targets"]["s"] == c["targets"]["s"]
    assert b["students"]["s"]["how"] == SQ.TORCH_HOW

    md = (out / "benchmark.md").read_text()
    new, legacy = md.index(f"## {SQ.TITLE}"), md.index(f"## {SQ.LEGACY_TITLE}")
    assert new < legacy and md.index("## Quality") == new  # the first quality section
    gain = c["scores"]["s"]["families"]["jpeg"]["psnr_gain"]
    assert f"{gain:+.2f}" in md[new:legacy] and "**s**:" in md[new:legacy]
    # the same by-content tables as the model card
    card_md = card.read_text()
    by_content = card_md[card_md.index("**photo** (3 frames):") : card_md.index("## Targets")].strip()
    assert by_content in md[new:legacy]
    assert (out / SQ.PLOT_FILE).stat().st_size > 0


def test_missing_test_split_says_what_to_run(tmp_path: Path) -> None:
    split = SQ.measure([], SQ.SplitConfig(), log=lambda _: None)
    assert split["hint"] == "kd-data photos" and "not a folder" in split["skipped"]
    text = "\n".join(SQ.render(split))
    assert "`kd-data photos`" in text and "Not measured" in text
    assert "Not run: --no-test-split." in "\n".join(SQ.render(None, "--no-test-split"))


def test_onnx_students_run_at_the_frame_size_or_via_their_checkpoint(tmp_path: Path) -> None:
    import onnx

    from kd_trainer.export import export_onnx

    model = perturbed_student("runet-p")
    fixed = export_onnx(model, tmp_path / "fixed.onnx", height=48, width=64).path
    alone = tmp_path / "alone" / "alone.onnx"
    alone.parent.mkdir()
    alone.write_bytes(fixed.read_bytes())
    save_checkpoint(tmp_path / "fixed.pt", model, name="runet-p")
    proto = onnx.load(str(fixed))  # the same graph taking any height and width
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "height", "width"
    del proto.graph.value_info[:]
    anysize = tmp_path / "anysize.onnx"
    onnx.save(proto, str(anysize))

    specs, errors = resolve([str(fixed), str(alone), str(anysize)])
    assert not errors
    runs = {r.label: r for r in SQ.student_runs(specs)}
    assert runs["fixed"].method is not None and runs["fixed"].path.endswith("fixed.pt")
    assert "fixed at 48x64" in runs["fixed"].how
    assert runs["alone"].method is None and "not scored" in runs["alone"].how
    dyn = runs["anysize"]
    assert dyn.method is not None and "Sharpener" in dyn.how
    frame = soft_frame(0, 40, 72)  # larger than the fixed export in width: runs at its own size
    out = ts.pick(dyn.method, "jpeg")(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8
    for close in dyn.closers:
        close()

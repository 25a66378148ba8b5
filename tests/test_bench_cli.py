"""sharpen-bench end to end: the quick/smoke run, and bad input that must give a report, not a traceback."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from kd_trainer.models.student import build_student, save_checkpoint


def _numbers(obj: Any) -> list[float]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers(v)]
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return [float(obj)]
    return []


@pytest.fixture(scope="module")
def trained_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A student checkpoint that is not the identity (random, non-zero tail): stands for a trained one."""
    torch.manual_seed(1)
    model = build_student("runet-p")
    with torch.no_grad():
        torch.nn.init.normal_(model.tail.weight, std=0.01)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, name="tiny")


def test_smoke_run_writes_a_complete_report(
    tmp_path: Path, trained_pt: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "reports"
    code = main(["--quick", "--smoke", "--models", "runet-p", str(trained_pt), "-o", str(out)])
    stdout = capsys.readouterr().out
    assert code == EXIT_OK, stdout
    for name in ("benchmark.md", "benchmark.json", "pareto.png", "crops.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert str((out / name).resolve()) in stdout  # says what it wrote and where
    data = json.loads((out / "benchmark.json").read_text())
    assert data["exit_code"] == 0 and data["errors"] == []
    assert all(math.isfinite(x) for x in _numbers(data))

    rows = data["speed"]["rows"]
    models = {(r["model"], r["mode"]) for r in rows}
    assert {
        ("runet-p", "end_to_end"),
        ("runet-p", "compute"),
        ("tiny", "end_to_end"),
        ("unsharp mask", "end_to_end"),
    } <= models
    for r in rows:
        assert r["fps"] > 0 and r["n"] >= 1 and r["p50_ms"] <= r["p99_ms"]
    assert next(r for r in rows if r["model"] == "runet-p")["weights"].startswith("random")

    q = data["quality"]
    methods = {o["method"] for o in q["overall"]}
    assert {"identity (degraded input)", "unsharp mask (tuned)", "tiny fp32", "tiny int8"} <= methods
    assert not any(m.startswith("runet-p") for m in methods)  # random weights: never scored
    assert {e["preset"] for e in q["summary"]} == {"gauss1.5", "call"}
    assert q["tuning"]["global"]["pairs"] > 0
    assert set(q["tuning"]["images"]["names"]).isdisjoint(q["frames"]["names"])
    assert q["seed_setting"]["seed_reported_ssim_pct"] == 95.72 and q["seed_setting"]["summary"]
    assert len(q["video"]["rows"]) >= 3 and q["video"]["frames"] == 3

    md = (out / "benchmark.md").read_text()
    for text in (
        "## Machine",
        "## Speed (1920x1080)",
        "## Quality",
        "seed's setting",
        "Video check",
        "random weights",
    ):
        assert text in md
    assert data["teacher"]["status"] == "skipped" and data["teacher"]["why"]  # no teacher in the test cache
    # no photo pool in the test cache: the test-split section says what to run, the rest of the report goes on
    assert data["test_split"]["hint"] == "kd-data photos" and data["test_split"]["skipped"]
    assert "Run `kd-data photos`" in md and md.index("held-out test split") < md.index("(legacy)")


def test_missing_and_corrupt_models_are_reported(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"definitely not a checkpoint")
    out = tmp_path / "r"
    code = main(
        ["--smoke", "--no-quality", "--models", str(tmp_path / "missing.pt"), str(corrupt), "-o", str(out)]
    )
    assert code == EXIT_PARTIAL
    data = json.loads((out / "benchmark.json").read_text())
    errors = "\n".join(data["errors"])
    assert "missing.pt" in errors and "no such file" in errors
    assert "corrupt.pt" in errors
    assert any(r["model"] == "unsharp mask" for r in data["speed"]["rows"])  # what could run, ran
    md = (out / "benchmark.md").read_text()
    assert "missing.pt" in md and "Exit status: 1" in md


def test_engine_that_cannot_run_here_is_reported(tmp_path: Path) -> None:
    from trt_engine.header import write_engine

    engine = tmp_path / "other_gpu.engine"
    shape = [1, 1080, 1920, 3]
    write_engine(
        engine,
        {
            "builder": "tensorrt",
            "trt_version": "10.9.0",
            "compute_capabilities": ["8.6"],
            "io": "uint8_nhwc",
            "color": "rgb",
            "precision": "fp16",
            "inputs": [{"name": "frames", "shape": shape, "dtype": "uint8"}],
            "outputs": [{"name": "frames_out", "shape": shape, "dtype": "uint8"}],
        },
        b"\0" * 64,
    )
    out = tmp_path / "r"
    code = main(["--smoke", "--no-quality", "--models", str(engine), "-o", str(out)])
    assert code == EXIT_PARTIAL
    data = json.loads((out / "benchmark.json").read_text())
    msg = next(e for e in data["errors"] if "other_gpu" in e)
    assert "GPU" in msg or "rebuild" in msg.lower()
    assert not any(r["model"] == "other_gpu" for r in data["speed"]["rows"])


def test_frame_folder_without_images(tmp_path: Path) -> None:
    empty = tmp_path / "frames"
    empty.mkdir()
    out = tmp_path / "r"
    code = main(["--smoke", "--no-speed", "--frames", str(empty), "-o", str(out)])
    assert code == EXIT_PARTIAL
    data = json.loads((out / "benchmark.json").read_text())
    assert any("contains no images" in e for e in data["errors"])
    assert "quality" not in data and "no usable evaluation frames" in data["quality_skipped"]
    assert "Not run: no usable evaluation frames" in (out / "benchmark.md").read_text()


def test_unwritable_output_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["--smoke", "--no-speed", "--no-quality", "-o", str(blocker / "sub")])
    assert code == EXIT_USAGE


def test_bad_arguments_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--device", "tpu"])
    assert exc.value.code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without a GPU")
def test_cuda_without_gpu_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["--device", "cuda", "--no-speed", "--no-quality", "-o", str(tmp_path)]) == EXIT_USAGE

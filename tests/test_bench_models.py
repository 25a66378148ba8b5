"""Model specs for the benchmark: registry names, checkpoints, exports and their cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmarks.models import checkpoint_for, fixed_onnx_for, onnx_for, precision_onnx, resolve
from benchmarks.runners import Runner
from kd_trainer.models.student import build_student, count_macs, save_checkpoint


def test_registry_names_are_random_speed_only_specs() -> None:
    specs, errors = resolve(["runet-p"])
    assert errors == []
    (spec,) = specs
    assert not spec.trained and spec.weights.startswith("random")
    assert spec.gmac == round(count_macs(build_student("runet-p"), 1080, 1920) / 1e9, 3)
    pt = checkpoint_for(spec)
    assert pt is not None and pt.is_file() and checkpoint_for(spec) == pt  # cached, not rewritten


def test_bad_names_become_messages_not_exceptions(tmp_path: Path) -> None:
    odd = tmp_path / "model.txt"
    odd.write_text("x")
    empty_onnx = tmp_path / "empty.onnx"
    empty_onnx.write_bytes(b"")
    specs, errors = resolve(["no-such-student", str(odd), str(empty_onnx)])
    assert specs == []
    assert len(errors) == 3
    assert "not a registry student" in errors[0]
    assert "unsupported suffix" in errors[1]
    assert "empty.onnx" in errors[2]


def test_checkpoint_export_is_cached_and_runs_through_the_sdk(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_student("runet-p")
    pt = save_checkpoint(tmp_path / "s.pt", model, name="s")
    (spec,) = resolve([str(pt)])[0]
    assert spec.trained and spec.student == "s"
    first = onnx_for(spec, 1)
    mtime = first.stat().st_mtime_ns
    assert onnx_for(spec, 1) == first and first.stat().st_mtime_ns == mtime
    frame = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    with Runner(first, batch=1, color="rgb") as runner:
        out = runner.process(frame)
        fn, how = runner.compute_fn()
        assert "onnxruntime" in how
        fn()
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.array_equal(out, frame)  # an untrained student (zero tail) is the identity


def test_precision_variants_of_a_dynamic_shipped_onnx_come_from_a_static_export() -> None:
    """The shipped ONNX are dynamic-size (timed as they are); fp16/int8 need a fixed size, so they are converted
    from a cached static 1080p export of the shipped .pt (sharpen-bench reported errors for them before)."""
    from kd_trainer.export import read_onnx_metadata

    (spec,) = resolve(["fast"])[0]
    assert read_onnx_metadata(onnx_for(spec, 1))["height"] == "dynamic"
    fixed = fixed_onnx_for(spec)
    meta = read_onnx_metadata(fixed)
    assert fixed != spec.onnx and (meta["height"], meta["width"]) == ("1080", "1920")
    mtime = fixed.stat().st_mtime_ns
    assert fixed_onnx_for(spec) == fixed and fixed.stat().st_mtime_ns == mtime  # cached
    fp16, tool = precision_onnx(fixed, "fp16", [])
    assert read_onnx_metadata(fp16)["precision"] == "fp16" and "make_precision_onnx" in tool

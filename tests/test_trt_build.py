"""build-engine: real strongly typed engines with TensorRT-RTX (CPU-only ahead-of-time builds) or TensorRT.

``pip install tensorrt-rtx-cu13`` makes the ``tensorrt``-marked tests run on a CPU-only machine: TensorRT-RTX
parses and builds without a GPU (its engines target RTX GPUs and cannot run here).
"""

from __future__ import annotations

import importlib.util

import pytest

from kd_trainer.testing import make_student
from trt_engine.build import build_engine, detect_tensorrt
from trt_engine.cli import build_engine_main
from trt_engine.header import read_engine, read_header
from trt_engine.precision import get_metadata, load_onnx

H, W = 64, 96
HAS_RTX = importlib.util.find_spec("tensorrt_rtx") is not None
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return make_student(tmp_path_factory.mktemp("build"), height=H, width=W)


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_RTX, reason="tensorrt_rtx not installed (pip install tensorrt-rtx-cu13)")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("source", ["float", "uint8"])
def test_rtx_builds_engines(student, tmp_path, precision, source):
    onnx_path = student.onnx if source == "float" else student.onnx_uint8
    out = tmp_path / f"s_{precision}.engine"
    res = build_engine(onnx_path, out, precision, flavour="tensorrt_rtx", timing_cache=tmp_path / "tc.cache")
    assert res.engine == out and res.flavour == "tensorrt_rtx"
    header = read_header(out)
    meta, plan = read_engine(out)
    assert len(plan) == header.plan_size > 10_000
    assert meta["builder"] == "tensorrt_rtx" and meta["trt_version"] == res.trt_version
    assert meta["precision"] == precision and meta["io"] == "uint8_nhwc" and meta["strongly_typed"]
    assert meta["inputs"] == [{"name": "frames", "shape": [1, H, W, 3], "dtype": "uint8"}]
    assert meta["outputs"][0]["dtype"] == "uint8"
    assert (meta["batch"], meta["height"], meta["width"]) == (1, H, W)
    assert (
        meta["compute_capabilities"] == ["8.0", "8.6", "8.9", "12.0"]
        and meta["compute_capability_forward"] == "12.0"
    )
    assert meta["config"]["widths"] == [16, 32] and meta["student"] == "runet-n"
    if precision != "fp32":
        checks = meta["validation"]["onnxruntime"]
        assert checks["psnr_vs_fp32_db"] > 35 and "psnr_drop_db" in checks
    assert get_metadata(load_onnx(res.precision_onnx))["precision"] == precision
    # the plan deserializes only on a GPU; TensorRT-RTX's runtime knows the plan's own header size though
    import tensorrt_rtx as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    assert runtime.engine_header_size > 0


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_RTX, reason="tensorrt_rtx not installed (pip install tensorrt-rtx-cu13)")
def test_build_engine_cli_batch_and_float_io(student, tmp_path, capsys):
    out = tmp_path / "b2.engine"
    code = build_engine_main(
        [
            str(student.onnx),
            "--precision",
            "fp16",
            "--batch",
            "2",
            "--io",
            "float",
            "-o",
            str(out),
            "--builder",
            "tensorrt_rtx",
        ]
    )
    assert code == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "wrote fp16 ONNX" in text and "wrote engine" in text and str(out) in text
    meta, _ = read_engine(out)
    assert meta["io"] == "float32_nchw" and meta["batch"] == 2
    assert meta["inputs"][0] == {"name": "input", "shape": [2, 3, H, W], "dtype": "float32"}
    code = build_engine_main(
        [
            str(student.onnx),
            "--precision",
            "fp16",
            "-o",
            str(tmp_path / "cc.engine"),
            "--builder",
            "tensorrt_rtx",
            "--compute-capability",
            "8.9",
            "--no-verify",
        ]
    )
    assert code == 0
    meta, _ = read_engine(tmp_path / "cc.engine")
    assert meta["compute_capabilities"] == ["8.9"] and "compute_capability_forward" not in meta


@pytest.mark.skipif(HAS_TRT, reason="full TensorRT is installed here")
def test_without_builder_writes_onnx_and_explains(student, tmp_path, capsys):
    out = tmp_path / "x.engine"
    code = build_engine_main(
        [str(student.onnx), "--precision", "fp16", "-o", str(out), "--builder", "tensorrt"]
    )
    assert code == 3
    text = capsys.readouterr().out
    assert not out.exists()
    ponnx = tmp_path / "x.fp16.onnx"
    assert ponnx.is_file() and f"build-engine {ponnx} --precision fp16 -o {out}" in text
    assert "pip install" in text
    assert build_engine_main([str(student.onnx), "--precision", "fp16", "-o", str(out), "--onnx-only"]) == 0
    assert detect_tensorrt("tensorrt") is None


def test_cli_errors(student, tmp_path, capsys):
    assert (
        build_engine_main([str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "a.engine"), "--onnx-only"])
        == 1
    )
    assert "not found" in capsys.readouterr().err
    assert build_engine_main([str(student.onnx), "-o", str(tmp_path / "a.trt"), "--onnx-only"]) == 1
    assert ".engine or .plan" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        build_engine_main([])
    assert info.value.code == 2


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_full_tensorrt_engine_runs(student, tmp_path):
    """On a GPU machine with TensorRT 10: build, then run the engine through the Sharpener vs onnxruntime."""
    if not HAS_TRT:
        pytest.skip("TensorRT not installed")
    import numpy as np

    from kd_trainer.testing import photo_frames
    from trt_engine import Sharpener
    from trt_engine.build import local_gpu_cc

    if local_gpu_cc() is None:
        pytest.skip("no GPU")
    out = tmp_path / "g.engine"
    res = build_engine(student.onnx, out, "fp16", flavour="tensorrt")
    meta, _ = read_engine(out)
    assert meta["validation"]["comparator"].get("ort_vs_engine_passed") is True
    frames, _ = photo_frames(H, W)
    with Sharpener(out, color="rgb") as eng, Sharpener(res.precision_onnx, color="rgb") as ort_s:
        for f in frames:
            assert np.abs(eng.process(f).astype(int) - ort_s.process(f)).max() <= 3
        streamed = list(eng.stream(iter(frames * 4)))
        assert all(np.array_equal(a, eng.process(b)) for a, b in zip(streamed, frames * 4, strict=True))
    with Sharpener(out, color="rgb", cuda_graph=True) as eng:
        assert eng.process(frames[0]).shape == frames[0].shape

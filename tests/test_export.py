import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from kd_trainer.cli import export_main
from kd_trainer.export import export_onnx, read_onnx_metadata
from kd_trainer.models.student import save_checkpoint
from kd_trainer.testing import torch_reference
from tests.helpers import perturbed_student
from trt_engine import Sharpener


def test_float_export_static_shape_metadata_and_parity(tmp_path) -> None:
    model = perturbed_student("runet-n")
    result = export_onnx(model, tmp_path / "s.onnx", height=72, width=100, batch=2, name="runet-n")
    assert result.max_abs_error < 1e-5
    proto = onnx.load(str(result.path))
    assert proto.opset_import[0].version >= 17
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 72, 100]  # static
    meta = read_onnx_metadata(result.path)
    assert (
        meta["io"] == "float32_nchw"
        and meta["color"] == "rgb"
        and json.loads(meta["config"])["widths"] == [16, 32]
    )
    x = np.random.default_rng(0).random((2, 3, 72, 100), dtype=np.float32)
    (y,) = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).clamp(0, 1).numpy()
    assert np.abs(y - ref).max() < 1e-5


def test_uint8_nhwc_export_rounds_like_torch(tmp_path) -> None:
    model = perturbed_student("runet-p")
    result = export_onnx(model, tmp_path / "u8.onnx", height=40, width=64, uint8_io=True)
    assert result.io == "uint8_nhwc" and result.max_abs_error <= 1.0
    frame = np.random.default_rng(1).integers(0, 256, (1, 40, 64, 3), dtype=np.uint8)
    (y,) = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]).run(
        None, {"frames": frame}
    )
    assert y.dtype == np.uint8 and y.shape == frame.shape
    ops = [n.op_type for n in onnx.load(str(result.path)).graph.node]
    assert "Round" in ops and ops[-1] in ("Cast", "Transpose")


def test_export_refuses_bad_arguments_and_leaves_nothing(tmp_path) -> None:
    with pytest.raises(ValueError, match="opset"):
        export_onnx(perturbed_student(), tmp_path / "x.onnx", opset=13)
    assert list(tmp_path.iterdir()) == []


def test_export_cli(tmp_path, capsys) -> None:
    ckpt = save_checkpoint(
        tmp_path / "s.pt", perturbed_student("runet-p"), name="runet-p", metrics={"call": 1}
    )
    assert export_main([str(ckpt), "-o", str(tmp_path / "s.onnx"), "--height", "48", "--width", "64"]) == 0
    out = capsys.readouterr().out
    assert "max abs error" in out and "onnx.checker ok" in out
    assert read_onnx_metadata(tmp_path / "s.onnx")["student"] == "runet-p"
    (tmp_path / "bad.pt").write_bytes(b"junk")
    assert export_main([str(tmp_path / "bad.pt"), "-o", str(tmp_path / "b.onnx")]) == 1
    assert "corrupt" in capsys.readouterr().err and not (tmp_path / "b.onnx").exists()


def _assert_matches_torch_at_sizes(model, onnx_path, sizes) -> None:
    """A dynamic-size ONNX export gives the torch model's output (to 1e-5) at each ``(h, w)`` in ``sizes``."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for h, w in sizes:
        x = np.random.default_rng(h).random((1, 3, h, w), dtype=np.float32)
        (y,) = session.run(None, {"input": x})
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).clamp(0, 1).numpy()
        assert np.abs(y - ref).max() < 1e-5


# the context branch reads the only level (runet-f3) or the deepest of three (runet-m4)
@pytest.mark.parametrize("name", ["runet-f3", "runet-m4"])
def test_frame_context_student_exports_with_dynamic_size_and_matches_torch(tmp_path, name) -> None:
    model = perturbed_student(name)
    with torch.no_grad():  # a non-trivial context branch: per-frame scales away from 1
        torch.nn.init.normal_(model.context.scale.weight, std=0.5)
        torch.nn.init.normal_(model.bands.gain.weight, std=0.5)
    result = export_onnx(model, tmp_path / "ctx.onnx", height=64, width=96, dynamic=True, name=name)
    _assert_matches_torch_at_sizes(model, result.path, ((64, 96), (120, 200)))  # pooled stats follow the size


def test_high_pass_student_exports_with_dynamic_size_and_matches_torch(tmp_path) -> None:
    model = perturbed_student("runet-m3")  # AveragePool + Resize remove the residual's local mean
    result = export_onnx(model, tmp_path / "hp.onnx", height=64, width=96, dynamic=True, name="runet-m3")
    _assert_matches_torch_at_sizes(model, result.path, ((64, 96), (120, 200)))  # any multiple of 8
    frame = np.random.default_rng(0).integers(0, 256, (61, 203, 3), dtype=np.uint8)  # the SDK pads the rest
    out = Sharpener(result.path, color="rgb").process(frame)
    expected = torch_reference(model, frame)
    assert out.shape == frame.shape and np.abs(out.astype(np.int16) - expected.astype(np.int16)).max() <= 1


def test_strength_head_student_exports_with_dynamic_size_and_matches_torch(tmp_path) -> None:
    from kd_trainer.models.student import with_strength_head

    model = with_strength_head(perturbed_student("runet-fh")).eval()
    with torch.no_grad():  # a fitted head: a per-frame scale that follows the frame's statistics
        weights = torch.linspace(-2.0, 2.0, model.strength.linear.in_features)
        model.strength.set_linear(weights, 0.8, 1.75)
    result = export_onnx(model, tmp_path / "head.onnx", height=64, width=96, dynamic=True, name="runet-fh")
    _assert_matches_torch_at_sizes(model, result.path, ((64, 96), (120, 200)))
    # the scale multiplies the residual before the pixel shuffle, so the onnxruntime backend can still run the
    # final DepthToSpace + Add on the host (a multiply after it cost ~12 ms a 1080p frame on 2 cores)
    import onnx

    from trt_engine.backends.onnxrt import _host_pixel_shuffle, _without_final_clip

    graph = onnx.load(str(result.path))
    _without_final_clip(graph)
    assert _host_pixel_shuffle(graph) is not None


@pytest.mark.parametrize("name", ["runet-fg", "runet-fs", "runet-fe"])
def test_band_frame_gain_student_exports_and_keeps_the_host_pixel_shuffle(tmp_path, name: str) -> None:
    """``runet-fg`` (and ``runet-fs`` and ``runet-fe``, which also sample a coarse band and every 16th row): the
    pooled statistics follow the frame size in the dynamic graph, and the per-frame gain acts before the tail, so the
    graph still ends in ``DepthToSpace`` + ``Add`` (run on the host by onnxruntime)."""
    import onnx

    from trt_engine.backends.onnxrt import _host_pixel_shuffle, _without_final_clip

    model = perturbed_student(name)
    with torch.no_grad():
        torch.nn.init.normal_(model.bands.frame.weights.weight, std=0.5)
        model.bands.frame.weights.bias.fill_(0.1)
    result = export_onnx(model, tmp_path / "fg.onnx", height=64, width=96, dynamic=True, name=name)
    _assert_matches_torch_at_sizes(model, result.path, ((64, 96), (120, 200)))
    graph = onnx.load(str(result.path))
    _without_final_clip(graph)
    assert _host_pixel_shuffle(graph) is not None


def test_cored_band_student_exports_and_keeps_the_host_pixel_shuffle(tmp_path) -> None:
    """``runet-fc``: the cored band (Relu and Sub on the low-resolution bands) exports at any size, matches torch
    and, acting before the tail, keeps the graph's final ``DepthToSpace`` + ``Add`` for the host."""
    import onnx

    from trt_engine.backends.onnxrt import _host_pixel_shuffle, _without_final_clip

    model = perturbed_student("runet-fc")
    with torch.no_grad():
        torch.nn.init.normal_(model.bands.core_gain.weight, std=0.5)
        model.bands.core_gain.bias.fill_(0.5)
    result = export_onnx(model, tmp_path / "fc.onnx", height=64, width=96, dynamic=True, name="runet-fc")
    _assert_matches_torch_at_sizes(model, result.path, ((64, 96), (120, 200)))
    graph = onnx.load(str(result.path))
    _without_final_clip(graph)
    assert _host_pixel_shuffle(graph) is not None


@pytest.mark.parametrize("name", ["runet-m5", "runet-m6"])
def test_frame_filter_student_exports_with_dynamic_size_and_matches_torch(tmp_path, name: str) -> None:
    model = perturbed_student(name)
    with torch.no_grad():  # a non-trivial per-frame filter
        torch.nn.init.normal_(model.frame_filter.weights.weight, std=0.5)
        model.frame_filter.weights.bias.fill_(0.1)
    result = export_onnx(model, tmp_path / "ff.onnx", height=64, width=96, dynamic=True, name=name)
    _assert_matches_torch_at_sizes(model, result.path, ((64, 96), (120, 200)))  # pooled stats follow the size

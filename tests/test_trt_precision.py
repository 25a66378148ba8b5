"""Precision ONNX (fp16, int8 Q/DQ, uint8 I/O) written by trt_engine.precision, checked with onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from kd_trainer.io import write_image
from kd_trainer.metrics import psnr
from kd_trainer.testing import make_student, photo_frames, torch_reference
from trt_engine import Sharpener
from trt_engine.precision import (
    add_uint8_io,
    boundary_convs,
    fp16_region,
    get_metadata,
    load_onnx,
    make_precision_onnx,
    set_batch,
    tensorrt_friendly_uint8,
)

H, W = 96, 128
# Stated tolerances, measured on these random-weight students (tail std 0.2, so the residual is large and
# quantisation errors are visible) over degraded scikit-image photos: fp16 ~67 dB and int8 ~49 dB PSNR
# against the fp32 model's output (runet-n). Thresholds leave margin for other CPUs.
FP16_MIN_PSNR_VS_FP32 = 55.0
INT8_MIN_PSNR_VS_FP32 = 40.0
MAX_PSNR_DROP_VS_TRUTH = 0.5


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return make_student(tmp_path_factory.mktemp("prec"), height=H, width=W)


@pytest.fixture(scope="module")
def photos():
    return photo_frames(H, W, names=("chelsea", "coffee", "astronaut"))


def _outputs(path, frames):
    with Sharpener(path, color="rgb") as s:
        return [s.process(f) for f in frames]


def _mean_psnr(refs, outs):
    return float(np.mean([min(psnr(r, o), 100.0) for r, o in zip(refs, outs, strict=True)]))


@pytest.fixture(scope="module")
def fp16(student, tmp_path_factory):
    return make_precision_onnx(student.onnx, tmp_path_factory.mktemp("fp16") / "s.fp16.onnx", "fp16")


@pytest.fixture(scope="module")
def int8(student, tmp_path_factory):
    return make_precision_onnx(student.onnx, tmp_path_factory.mktemp("int8") / "s.int8.onnx", "int8")


def test_fp16_graph_structure(fp16):
    model = load_onnx(fp16.path)
    assert get_metadata(model)["precision"] == "fp16"
    g = model.graph
    assert g.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # fp32 I/O kept
    assert g.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    conv_weights = {n.input[1] for n in g.node if n.op_type in ("Conv", "ConvTranspose")}
    inits = {t.name: t for t in g.initializer}
    assert conv_weights and all(inits[w].data_type == TensorProto.FLOAT16 for w in conv_weights)
    casts = [n for n in g.node if n.op_type == "Cast"]
    assert len(casts) >= 2  # into fp16 after the input glue, back to fp32 before the global residual/clamp
    types = {vi.name: vi.type.tensor_type.elem_type for vi in g.value_info}
    clip = next(n for n in g.node if n.op_type == "Clip")
    assert types.get(clip.input[0], TensorProto.FLOAT) == TensorProto.FLOAT  # output glue stays fp32


def test_fp16_region_is_the_body_only(student):
    model = load_onnx(student.onnx)
    region = {model.graph.node[i].op_type for i in fp16_region(model)}
    assert "Conv" in region and "Clip" not in region
    adds_outside = [
        n for i, n in enumerate(model.graph.node) if n.op_type == "Add" and i not in fp16_region(model)
    ]
    assert adds_outside, "the global residual add must stay fp32"


def test_fp16_accuracy(student, fp16, photos):
    inputs, truths = photos
    ref, out = _outputs(student.onnx, inputs), _outputs(fp16.path, inputs)
    assert _mean_psnr(ref, out) >= FP16_MIN_PSNR_VS_FP32
    drop = _mean_psnr(truths, ref) - _mean_psnr(truths, out)
    assert abs(drop) <= MAX_PSNR_DROP_VS_TRUTH
    assert fp16.metrics["psnr_vs_fp32_db"] >= FP16_MIN_PSNR_VS_FP32  # the built-in held-out check agrees
    assert abs(fp16.metrics["psnr_drop_db"]) <= MAX_PSNR_DROP_VS_TRUTH


def test_int8_graph_structure(student, int8):
    model = load_onnx(int8.path)
    meta = get_metadata(model)
    assert meta["precision"] == "int8"
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    qs = [n for n in g.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in g.node if n.op_type == "DequantizeLinear"]
    assert qs and dqs
    for node in qs + dqs:  # symmetric: every zero point is an int8 zero
        zp = inits[node.input[2]]
        assert zp.dtype == np.int8 and not zp.any()
    producers = {o: n for n in g.node for o in n.output}
    _, edge = boundary_convs(load_onnx(student.onnx))
    per_channel = 0
    for node in g.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        weight_src = producers.get(node.input[1])
        if node.name in edge:  # first/last layers: float weights, no Q/DQ
            assert weight_src is None or weight_src.op_type != "DequantizeLinear", node.name
            continue
        assert weight_src is not None and weight_src.op_type == "DequantizeLinear", node.name
        scale = inits[weight_src.input[1]]
        w = inits[weight_src.input[0]]
        axis = 0 if node.op_type == "Conv" else 1
        assert w.dtype == np.int8 and scale.shape == (w.shape[axis],)
        per_channel += 1
    assert per_channel >= 5
    assert len(edge) == 3  # stem, tail and the full-resolution detail conv of runet-n


def test_int8_accuracy(student, int8, photos):
    inputs, truths = photos
    ref, out = _outputs(student.onnx, inputs), _outputs(int8.path, inputs)
    assert _mean_psnr(ref, out) >= INT8_MIN_PSNR_VS_FP32
    assert abs(_mean_psnr(truths, ref) - _mean_psnr(truths, out)) <= MAX_PSNR_DROP_VS_TRUTH
    assert int8.metrics["psnr_vs_fp32_db"] >= INT8_MIN_PSNR_VS_FP32
    assert "synthesized" in int8.calibration


def test_int8_calibration_folder_and_held_out(student, tmp_path, photos):
    import skimage.data

    folder = tmp_path / "calib"
    names = ["astronaut", "coffee", "rocket", "chelsea", "immunohistochemistry", "hubble_deep_field"]
    for i, name in enumerate(names):
        write_image(folder / f"{i:02d}.png", getattr(skimage.data, name)())
    res = make_precision_onnx(student.onnx, tmp_path / "c.int8.onnx", "int8", calib_dir=folder)
    assert "5 images" in res.calibration and "1 held out" in res.calibration
    assert res.metrics["frames"] == 1 and res.metrics["psnr_vs_fp32_db"] >= INT8_MIN_PSNR_VS_FP32
    # frames that are already model inputs: no ground truth, fidelity only
    res = make_precision_onnx(
        student.onnx, tmp_path / "d.int8.onnx", "int8", calib_dir=folder, calib_preset="none"
    )
    assert "psnr_drop_db" not in res.metrics and res.metrics["psnr_vs_fp32_db"] > 30
    # no verification: every image calibrates
    res = make_precision_onnx(student.onnx, tmp_path / "f.int8.onnx", "int8", calib_dir=folder, verify=False)
    assert "6 images" in res.calibration and "0 held out" in res.calibration and res.metrics == {}
    with pytest.raises(FileNotFoundError):
        make_precision_onnx(student.onnx, tmp_path / "e.int8.onnx", "int8", calib_dir=tmp_path / "nothing")


def test_uint8_io_wrapper_matches_float_graph(student, photos, tmp_path):
    model = add_uint8_io(load_onnx(student.onnx))
    path = tmp_path / "u8.onnx"
    onnx.save(model, str(path))
    g = model.graph
    assert g.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert [n.op_type for n in g.node[:2]] == ["Cast", "Transpose"]  # TensorRT: uint8 only at Casts
    assert [n.op_type for n in g.node[-2:]] == ["Transpose", "Cast"]
    inputs, _ = photos
    for frame, out in zip(inputs, _outputs(path, inputs), strict=True):
        assert np.abs(out.astype(int) - torch_reference(student.model, frame)).max() <= 1


def _transpose_first_uint8_onnx(model, path):
    """A uint8 NHWC graph that transposes before casting (as other exporters write it)."""
    import torch

    class TransposeFirst(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            x = frames.permute(0, 3, 1, 2).to(torch.float32) / 255.0
            y = torch.round(self.model(x).clamp(0.0, 1.0) * 255.0)
            return y.permute(0, 2, 3, 1).to(torch.uint8)

    sample = torch.zeros(1, 64, 96, 3, dtype=torch.uint8)
    program = torch.onnx.export(
        TransposeFirst().eval(),
        (sample,),
        input_names=["frames"],
        output_names=["frames_out"],
        opset_version=18,
        dynamo=True,
    )
    onnx.save(program.model_proto, str(path))
    return path


def test_tensorrt_friendly_uint8_is_exact(student, photos, tmp_path):
    assert load_onnx(student.onnx_uint8).graph.node[0].op_type == "Cast"  # kd_trainer.export casts first
    source = _transpose_first_uint8_onnx(student.model, tmp_path / "transpose_first.onnx")
    original = load_onnx(source)
    assert original.graph.node[0].op_type == "Transpose"
    fixed = tensorrt_friendly_uint8(original)
    ops = [n.op_type for n in fixed.graph.node]
    assert ops[:2] == ["Cast", "Transpose"] and ops[-1] == "Cast"
    path = tmp_path / "fixed.onnx"
    onnx.save(fixed, str(path))
    inputs, _ = photos
    inputs = [np.ascontiguousarray(f[:64, :96]) for f in inputs]
    assert all(
        np.array_equal(a, b) for a, b in zip(_outputs(path, inputs), _outputs(source, inputs), strict=True)
    )


def test_set_batch(student, photos, tmp_path):
    path = tmp_path / "b3.onnx"
    onnx.save(set_batch(load_onnx(student.onnx), 3), str(path))
    inputs, _ = photos
    with Sharpener(path, color="rgb") as s:
        assert s.info["model_batch"] == 3
        outs = s.process_batch(inputs)
    assert all(np.array_equal(a, b) for a, b in zip(outs, _outputs(student.onnx, inputs), strict=True))
    res = make_precision_onnx(student.onnx, tmp_path / "b2.fp16.onnx", "fp16", batch=2, uint8_io=True)
    assert res.io == "uint8_nhwc"
    with Sharpener(res.path) as s:
        assert s.info["model_batch"] == 2 and s.info["precision"] == "fp16"


def test_refusals(student, fp16, tmp_path):
    with pytest.raises(ValueError, match="precision"):
        make_precision_onnx(student.onnx, tmp_path / "x.onnx", "int4")
    with pytest.raises(ValueError, match="already a fp16"):
        make_precision_onnx(fp16.path, tmp_path / "y.onnx", "int8")
    same = make_precision_onnx(fp16.path, tmp_path / "z.onnx", "fp16")  # already fp16: passed through
    assert same.metrics == {} and get_metadata(load_onnx(same.path))["precision"] == "fp16"
    model = load_onnx(student.onnx)
    for vi in list(model.graph.input) + list(model.graph.output):
        vi.type.tensor_type.shape.dim[2].Clear()
        vi.type.tensor_type.shape.dim[2].dim_param = "H"
    del model.graph.value_info[:]
    dyn = tmp_path / "dyn.onnx"
    onnx.save(model, str(dyn))
    with pytest.raises(ValueError, match="dynamic image size"):
        make_precision_onnx(dyn, tmp_path / "w.onnx", "fp16")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        make_precision_onnx(empty, tmp_path / "v.onnx", "fp16")


@pytest.mark.parametrize(
    "name,precision,floor",
    [
        ("runet-f5", "fp16", FP16_MIN_PSNR_VS_FP32),
        ("runet-f5", "int8", INT8_MIN_PSNR_VS_FP32),
        ("runet-f5-log", "fp16", FP16_MIN_PSNR_VS_FP32),
        ("runet-fg", "fp16", FP16_MIN_PSNR_VS_FP32),
        ("runet-fg", "int8", INT8_MIN_PSNR_VS_FP32),
        ("runet-fs", "fp16", FP16_MIN_PSNR_VS_FP32),
        ("runet-fs", "int8", INT8_MIN_PSNR_VS_FP32),
        ("runet-fe", "fp16", FP16_MIN_PSNR_VS_FP32),
        ("runet-fe", "int8", INT8_MIN_PSNR_VS_FP32),
        ("runet-fc", "fp16", FP16_MIN_PSNR_VS_FP32),
        ("runet-fc", "int8", INT8_MIN_PSNR_VS_FP32),
    ],
)
def test_a_student_with_a_per_frame_branch_converts_and_stays_close(
    tmp_path, photos, name, precision, floor
) -> None:
    """Per-frame branches survive fp16 and int8 conversion: the frame filter's pooled statistics (log ones too:
    squared bands would underflow in fp16), MLP and space-to-depth bands (``runet-f5``), and the band gains' frame
    term (``runet-fg``; ``runet-fs`` adds a strided sample and a pooled coarse band, ``runet-fe`` an edge profile),
    and the cored band (``runet-fc``: a learned threshold in Relu and Sub)."""
    import dataclasses

    import torch

    from kd_trainer.export import export_onnx
    from kd_trainer.models.student import get_config
    from tests.helpers import perturbed_student

    if name == "runet-f5-log":
        model = perturbed_student(dataclasses.replace(get_config("runet-f5"), frame_filter_log=True))
    else:
        model = perturbed_student(name)
    if name == "runet-fc":  # a cored band that does something
        head = model.bands.core_gain
    else:
        branch = model.frame_filter if model.frame_filter is not None else model.bands.frame
        head = branch.weights
    with torch.no_grad():  # a branch that does something, per frame
        torch.nn.init.normal_(head.weight, std=0.3)
    src = export_onnx(model, tmp_path / "ff.onnx", height=H, width=W, name=name.removesuffix("-log")).path
    result = make_precision_onnx(src, tmp_path / f"ff.{precision}.onnx", precision)
    assert result.metrics["psnr_vs_fp32_db"] >= floor
    inputs, _ = photos
    refs, outs = _outputs(src, inputs), _outputs(result.path, inputs)
    assert _mean_psnr(refs, outs) >= floor
    assert max(np.abs(r.astype(int) - f.astype(int)).max() for r, f in zip(refs, inputs, strict=True)) > 2

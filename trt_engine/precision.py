"""Precision lives in the graph: FP16 and INT8 (Q/DQ) ONNX variants of an exported student, checked with ORT.

Engines are built *strongly typed* from these files, so TensorRT takes every tensor's type from the ONNX and
the same file serves TensorRT 10, TensorRT 11 and TensorRT-RTX (which has no FP16/INT8 builder flags).

- :func:`add_uint8_io` folds uint8 NHWC I/O into a float32 NCHW graph (Transpose on uint8, Cast, /255 at the
  input; clamp, x255, Round, Cast to uint8, Transpose at the output): an engine then takes decoded frames
  directly, moving 4x fewer bytes over PCIe.
- :func:`convert_fp16`: weights and activations of the network *body* in fp16: every node that lies on a
  path between the first and the last convolution and whose op is in :data:`FP16_OPS`. The I/O glue (uint8
  casts, scaling, reflect padding, the global residual add, clamp, rounding) and any op not in the list
  (reductions, exp, pow, normalisations: the overflow-prone ones) stay fp32, with Casts at the boundaries.
- :func:`quantize_int8`: onnxruntime's ``quantize_static`` in QDQ format, symmetric int8 activations and
  weights, per-channel weights (axis 0 for Conv, 1 for ConvTranspose), float biases, calibrated with MinMax
  on real frames; the first and last layers (every convolution with no convolution before it or none after
  it: the stem, the tail, a full-resolution detail conv) are excluded and stay fp32.
- :func:`make_precision_onnx` writes one of these (atomically) and verifies it with onnxruntime on held-out
  frames: PSNR of the output against the fp32 model's output, and, when ground truth is known, the PSNR of
  both against it and the drop.

On a CPU, onnxruntime runs fp16 nodes it has no fp16 kernel for by casting to fp32 around each node, so the
check measures fp16 weight and activation *storage* rounding; TensorRT's fp16 kernels accumulate in fp32 too.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trt_engine.io import atomic_path
from trt_engine.meta import io_layout, proto_metadata, set_proto_metadata

PRECISIONS = ("fp32", "fp16", "int8")
CONV_OPS = ("Conv", "ConvTranspose")
#: ops run in fp16 inside the network body (all others stay fp32).
FP16_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Add",
        "Sub",
        "Mul",
        "Concat",
        "Sigmoid",
        "Tanh",
        "Identity",
        "DepthToSpace",
        "SpaceToDepth",
        "Transpose",
        "Reshape",
        "MaxPool",
        "AveragePool",
    }
)
#: skimage.data photographs used when no calibration folder is given (all ship with scikit-image).
CALIB_PHOTOS = ("astronaut", "coffee", "rocket", "hubble_deep_field", "retina")
HELDOUT_PHOTOS = ("chelsea", "immunohistochemistry")


# ------------------------------------------------------------------------------------------ graph helpers
def load_onnx(path: str | os.PathLike[str]) -> Any:
    import onnx

    from trt_engine.errors import ModelLoadError, require_model_file

    p = Path(path)
    require_model_file(p, "ONNX model", "re-export it with kd-export")
    try:
        return onnx.load(str(p))
    except Exception as exc:
        raise ModelLoadError(f"cannot parse ONNX model {p} (corrupt?): {exc}") from exc


def get_metadata(model: Any) -> dict[str, str]:
    """``kd.*`` metadata of a ModelProto, prefix removed (:func:`trt_engine.meta.proto_metadata`)."""
    return proto_metadata(model)


def set_metadata(model: Any, **values: Any) -> None:
    """Set ``kd.*`` metadata entries (non-strings as JSON)."""
    set_proto_metadata(model, values)


def _elem_types(model: Any) -> dict[str, int]:
    g = model.graph
    types = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    return types


def io_kind(model: Any) -> str:
    """``float32_nchw`` or ``uint8_nhwc`` from the graph's single input."""
    from onnx import TensorProto

    from trt_engine.errors import ModelLoadError

    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise ModelLoadError(f"expected one graph input, found {[i.name for i in inputs]}")
    t = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    dtype = {TensorProto.UINT8: "uint8", TensorProto.FLOAT: "float32"}.get(t.elem_type, str(t.elem_type))
    kind = io_layout(dtype, dims)
    if kind is None:
        raise ModelLoadError(
            f"unsupported graph input {inputs[0].name!r}: elem type {t.elem_type}, dims {dims}"
        )
    return kind


def input_shape(model: Any) -> tuple[int | None, ...]:
    t = model.graph.input[0].type.tensor_type
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim)


def _finalize(model: Any) -> Any:
    import onnx

    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model


def add_uint8_io(model: Any) -> Any:
    """Wrap a float32 NCHW image graph (RGB in [0,1]) with uint8 NHWC input ``frames`` / output ``frames_out``."""
    import onnx
    from onnx import TensorProto, helper

    if io_kind(model) == "uint8_nhwc":
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    old_in, old_out = g.input[0], g.output[0]
    n, _, h, w = [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
        for d in old_in.type.tensor_type.shape.dim
    ]
    x, y = old_in.name, old_out.name
    # TensorRT accepts uint8 only at Casts (no Transpose on uint8), so the transposes run on floats.
    pre = [
        helper.make_node("Cast", ["frames"], ["kd_f32_nhwc"], to=TensorProto.FLOAT, name="kd_in_cast"),
        helper.make_node(
            "Transpose", ["kd_f32_nhwc"], ["kd_f32_nchw"], perm=[0, 3, 1, 2], name="kd_in_transpose"
        ),
        helper.make_node("Div", ["kd_f32_nchw", "kd_255"], [x], name="kd_in_scale"),
    ]
    post = [
        helper.make_node("Clip", [y, "kd_0", "kd_1"], ["kd_clipped"], name="kd_out_clip"),
        helper.make_node("Mul", ["kd_clipped", "kd_255"], ["kd_scaled"], name="kd_out_scale"),
        helper.make_node("Round", ["kd_scaled"], ["kd_rounded"], name="kd_out_round"),
        helper.make_node(
            "Transpose", ["kd_rounded"], ["kd_nhwc_out"], perm=[0, 2, 3, 1], name="kd_out_transpose"
        ),
        helper.make_node("Cast", ["kd_nhwc_out"], ["frames_out"], to=TensorProto.UINT8, name="kd_out_cast"),
    ]
    g.initializer.extend(
        [
            helper.make_tensor("kd_255", TensorProto.FLOAT, [], [255.0]),
            helper.make_tensor("kd_0", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("kd_1", TensorProto.FLOAT, [], [1.0]),
        ]
    )
    nodes = pre + list(g.node) + post
    del g.node[:]
    g.node.extend(nodes)
    del g.input[:]
    del g.output[:]
    g.input.append(helper.make_tensor_value_info("frames", TensorProto.UINT8, [n, h, w, 3]))
    g.output.append(helper.make_tensor_value_info("frames_out", TensorProto.UINT8, [n, h, w, 3]))
    set_metadata(model, io="uint8_nhwc", input="frames", output="frames_out")
    return _finalize(model)


def tensorrt_friendly_uint8(model: Any) -> Any:
    """Reorder ``Transpose(uint8) -> Cast(float)`` into ``Cast -> Transpose`` (and the same at the output).

    TensorRT allows uint8 tensors only as inputs/outputs of Cast, so a uint8 NHWC graph that transposes
    before casting (as the exporter's uint8 variant does) fails to parse. The reordering is exact.
    """
    import onnx
    from onnx import TensorProto

    model = onnx.shape_inference.infer_shapes(onnx.ModelProto.FromString(model.SerializeToString()))
    g = model.graph
    types = _elem_types(model)
    consumers: dict[str, list[Any]] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producer = {out: node for node in g.node for out in node.output}
    changed = False
    for node in list(g.node):
        if node.op_type != "Transpose" or types.get(node.input[0]) != TensorProto.UINT8:
            continue
        users = consumers.get(node.output[0], [])
        if len(users) == 1 and users[0].op_type == "Cast":  # input side: Transpose(u8) -> Cast(float)
            cast = users[0]
            src, mid, dst = node.input[0], node.output[0], cast.output[0]
            cast.input[0], cast.output[0] = src, mid
            node.input[0], node.output[0] = mid, dst
            changed = True
            continue
        prev = producer.get(node.input[0])
        if prev is not None and prev.op_type == "Cast" and len(consumers.get(prev.output[0], [])) == 1:
            # output side: Cast(->u8) -> Transpose(u8)  =>  Transpose(float) -> Cast(->u8)
            src, mid, dst = prev.input[0], prev.output[0], node.output[0]
            node.input[0], node.output[0] = src, mid
            prev.input[0], prev.output[0] = mid, dst
            changed = True
    if not changed:
        return model
    _toposort(g)
    return _finalize(model)


def _toposort(g: Any) -> None:
    """Reorder ``g.node`` topologically (stable: original order among ready nodes)."""
    available = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    nodes, ordered = list(g.node), []
    while nodes:
        for k, node in enumerate(nodes):
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
                del nodes[k]
                break
        else:
            raise ValueError("graph has a cycle or a missing input")
    copies = [type(n)() for n in ordered]
    for dst, src in zip(copies, ordered, strict=True):
        dst.CopyFrom(src)
    del g.node[:]
    g.node.extend(copies)


def set_batch(model: Any, batch: int) -> Any:
    """A copy of ``model`` with a fixed batch dimension ``batch`` (inputs and outputs; shapes re-inferred).

    Works for fully convolutional graphs like the students; a graph with a hard-coded batch inside (e.g. a
    Reshape constant) fails shape inference with a message to re-export at that batch size instead.
    """
    import onnx

    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    if dim0.HasField("dim_value") and dim0.dim_value == batch:
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for vi in list(model.graph.input) + list(model.graph.output):
        dim = vi.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = batch
    try:
        model = _finalize(model)
    except Exception as exc:
        raise ValueError(
            f"cannot set the batch size to {batch} in this graph ({exc}); export it with that batch instead "
            f"(kd-export --batch {batch})"
        ) from exc
    set_metadata(model, batch=str(batch))
    return model


def fp16_region(model: Any) -> set[int]:
    """Indices of the nodes that run in fp16: between the first and last convolution, op in FP16_OPS."""
    g = model.graph
    producer = {out: i for i, node in enumerate(g.node) for out in node.output}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(g.node):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    convs = [i for i, node in enumerate(g.node) if node.op_type in CONV_OPS]

    def closure(start: list[int], step: Any) -> set[int]:
        seen, todo = set(start), list(start)
        while todo:
            for j in step(todo.pop()):
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        return seen

    down = closure(convs, lambda i: [c for out in g.node[i].output for c in consumers.get(out, [])])
    up = closure(convs, lambda i: [producer[name] for name in g.node[i].input if name in producer])
    return {i for i in down & up if g.node[i].op_type in FP16_OPS}


def convert_fp16(model: Any) -> Any:
    """A copy of ``model`` whose network body runs in fp16 (see the module docstring); graph I/O unchanged."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.shape_inference.infer_shapes(onnx.ModelProto.FromString(model.SerializeToString()))
    g = model.graph
    region = fp16_region(model)
    if not region:
        raise ValueError("no convolution body found to convert to fp16")
    types = _elem_types(model)
    inits = {t.name: t for t in g.initializer}
    graph_outputs = {o.name for o in g.output}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(g.node):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    produced_in_region = {out for i in region for out in g.node[i].output}

    renamed: dict[str, str] = {}  # fp32 tensor name -> fp16 name used inside the region
    casts_after: dict[int, list[Any]] = {}
    head: list[Any] = []
    new_inits: list[Any] = []
    for i in sorted(region):
        node = g.node[i]
        for name in node.input:
            if (
                not name
                or name in renamed
                or types.get(name) != TensorProto.FLOAT
                or name in produced_in_region
            ):
                continue
            half = f"{name}__fp16"
            renamed[name] = half
            if name in inits:
                arr = numpy_helper.to_array(inits[name]).astype(np.float32)
                arr16 = np.clip(arr, -65504.0, 65504.0).astype(np.float16)
                new_inits.append(numpy_helper.from_array(arr16, half))
            else:
                cast = helper.make_node(
                    "Cast", [name], [half], to=TensorProto.FLOAT16, name=f"kd_to_fp16_{len(renamed)}"
                )
                src = next((j for j, n in enumerate(g.node) if name in n.output), None)
                (casts_after.setdefault(src, []) if src is not None else head).append(cast)
        for out in node.output:
            if types.get(out) not in (TensorProto.FLOAT, None):
                continue
            half = f"{out}__fp16"
            renamed[out] = half
            outside = [c for c in consumers.get(out, []) if c not in region]
            if outside or out in graph_outputs:
                casts_after.setdefault(i, []).append(
                    helper.make_node(
                        "Cast", [half], [out], to=TensorProto.FLOAT, name=f"kd_to_fp32_{len(renamed)}"
                    )
                )
    for i in region:
        node = g.node[i]
        for k, name in enumerate(node.input):
            if name in renamed:
                node.input[k] = renamed[name]
        for k, name in enumerate(node.output):
            if name in renamed:
                node.output[k] = renamed[name]
    nodes = list(head)
    for i, node in enumerate(g.node):
        nodes.append(node)
        nodes.extend(casts_after.get(i, []))
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(new_inits)
    # Drop fp32 initializers now used by nobody.
    used = {name for node in g.node for name in node.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    set_metadata(model, precision="fp16")
    return _finalize(model)


def boundary_convs(model: Any) -> tuple[list[str], list[str]]:
    """(all conv node names, the "first and last layers"): convs with no conv before them (they read the
    input) or no conv after them (they write the output), e.g. the stem, the tail and a full-res detail conv.
    Unnamed nodes get names."""
    g = model.graph
    for i, node in enumerate(g.node):
        if not node.name:
            node.name = f"kd_node_{i}_{node.op_type}"
    producer = {out: i for i, node in enumerate(g.node) for out in node.output}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(g.node):
        for name in node.input:
            consumers.setdefault(name, []).append(i)

    def reaches_conv(start: int, step: Any) -> bool:
        seen, todo = {start}, list(step(start))
        while todo:
            j = todo.pop()
            if j in seen:
                continue
            seen.add(j)
            if g.node[j].op_type in CONV_OPS:
                return True
            todo.extend(step(j))
        return False

    def up(i: int) -> list[int]:
        return [producer[name] for name in g.node[i].input if name in producer]

    def down(i: int) -> list[int]:
        return [c for out in g.node[i].output for c in consumers.get(out, [])]

    convs = [i for i, node in enumerate(g.node) if node.op_type in CONV_OPS]
    edge = [i for i in convs if not reaches_conv(i, up) or not reaches_conv(i, down)]
    return [g.node[i].name for i in convs], [g.node[i].name for i in edge]


def quantize_int8(model: Any, out: str | os.PathLike[str], calib_inputs: Sequence[np.ndarray]) -> Path:
    """Static symmetric int8 Q/DQ quantisation (see the module docstring); writes ``out`` atomically."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if not calib_inputs:
        raise ValueError("int8 quantisation needs at least one calibration frame")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    convs, edge = boundary_convs(model)
    if len(convs) - len(edge) < 1:
        raise ValueError(f"int8 needs convolutions besides the first and last layers (found {len(convs)})")
    input_name = model.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{input_name: x} for x in calib_inputs])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # quantize_static logs a generic "consider pre-processing" warning
    try:
        with tempfile.TemporaryDirectory(prefix="kd-int8-") as tmp, atomic_path(out) as dst:
            src = Path(tmp) / "fp32.onnx"
            onnx.save(model, str(src))
            quantize_static(
                str(src),
                str(dst),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(CONV_OPS),
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=edge,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
            )
            quantized = onnx.load(str(dst))
            set_metadata(quantized, precision="int8", int8_excluded=edge)
            onnx.save(quantized, str(dst))
            onnx.checker.check_model(str(dst))
    finally:
        root_logger.setLevel(level)
    return Path(out)


# ------------------------------------------------------------------------------------------ frames
def fit_frame(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (area when shrinking, cubic when growing) and centre-crop an RGB image to ``height x width``."""
    import cv2

    h, w = rgb.shape[:2]
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(rgb, (nw, nh), interpolation=interp) if (nh, nw) != (h, w) else rgb
    top, left = (nh - height) // 2, (nw - width) // 2
    return np.ascontiguousarray(resized[top : top + height, left : left + width])


@dataclass
class FrameSet:
    """Model-sized RGB frames: ``inputs`` to run, optional ``truths`` (ground truth) and where they came from."""

    inputs: list[np.ndarray]
    truths: list[np.ndarray] | None
    source: str


def _photos(names: Sequence[str]) -> list[np.ndarray]:
    import skimage.data

    return [getattr(skimage.data, name)() for name in names]


def _bundled_sample() -> np.ndarray | None:
    from trt_engine.io import ImageReadError, read_image
    from trt_engine.paths import SAMPLES_DIR

    path = SAMPLES_DIR / "sample_1080p.png"
    if not path.is_file():
        return None
    try:
        return read_image(path)
    except ImageReadError as exc:
        print(f"notice: bundled sample not used for calibration: {exc}")
        return None


def calibration_sets(
    calib_dir: str | os.PathLike[str] | None,
    height: int,
    width: int,
    preset: str = "call",
    max_frames: int = 32,
    hold_out: bool = True,
) -> tuple[FrameSet, FrameSet]:
    """(calibration, held-out verification) frame sets at the model's size.

    With ``calib_dir``: its images, sorted; every 5th image (at least one, when there are >= 2) is held out
    for verification and never used for calibration (``hold_out=False``: all images calibrate, none is held
    out, for builds that skip verification). ``preset`` (a :mod:`trt_engine.degrade` preset, default
    ``call``) degrades each image to make the model's input, the image itself being the ground truth; pass
    ``"none"`` when the folder already holds degraded frames as the model will see them (verification then
    compares with the fp32 output only).

    Without ``calib_dir``: scikit-image's bundled photographs (plus the bundled 1080p sample, if present),
    degraded with ``preset`` at several seeds; a notice recommends real frames.
    """
    from trt_engine.degrade import degrade
    from trt_engine.io import list_images, read_image

    if calib_dir is not None:
        paths = list_images(calib_dir)
        if not paths:
            raise FileNotFoundError(f"no images (.png/.jpg/...) in calibration folder {calib_dir}")
        if not hold_out:
            held = []
        else:
            held = [p for i, p in enumerate(paths) if i % 5 == 4] if len(paths) >= 5 else paths[-1:]
        calib = [p for p in paths if p not in held] or paths
        if hold_out and len(paths) == 1:
            print(f"notice: only one calibration image in {calib_dir}; it is also used for verification")
        if len(calib) > max_frames:
            step = len(calib) / max_frames
            calib = [calib[int(i * step)] for i in range(max_frames)]
        calib_imgs = [fit_frame(read_image(p), height, width) for p in calib]
        held_imgs = [fit_frame(read_image(p), height, width) for p in held]
        source = f"{len(calib)} images from {calib_dir} ({len(held)} held out)"
    else:
        sample = _bundled_sample()
        base = [fit_frame(x, height, width) for x in _photos(CALIB_PHOTOS)]
        if sample is not None:
            base.append(fit_frame(sample, height, width))
        seeds = max(1, min(4, max_frames // len(base)))
        calib_imgs = [img for img in base for _ in range(seeds)]
        held_imgs = [fit_frame(x, height, width) for x in _photos(HELDOUT_PHOTOS)]
        source = f"{len(calib_imgs)} synthesized frames (scikit-image photos{' + bundled sample' if sample is not None else ''})"
    if preset == "none":
        return FrameSet(calib_imgs, None, source), FrameSet(held_imgs, None, source)
    calib_in = [degrade(img, preset, seed=i) for i, img in enumerate(calib_imgs)]
    held_in = [degrade(img, preset, seed=10_000 + i) for i, img in enumerate(held_imgs)]
    return FrameSet(calib_in, calib_imgs, source), FrameSet(held_in, held_imgs, source)


def model_inputs(frames: Sequence[np.ndarray], io: str, batch: int) -> list[np.ndarray]:
    """Model-ready input tensors (batched to ``batch``, repeating the last frame to fill) from RGB frames."""
    arrays = []
    for start in range(0, len(frames), batch):
        chunk = list(frames[start : start + batch])
        chunk += [chunk[-1]] * (batch - len(chunk))
        stacked = np.stack(chunk)
        if io == "float32_nchw":
            arrays.append(
                np.ascontiguousarray(stacked.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
            )
        else:
            arrays.append(stacked)
    return arrays


# ------------------------------------------------------------------------------------------ verification
def run_frames(onnx_path: str | os.PathLike[str], frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Outputs (RGB uint8) of an ONNX model on RGB frames, through the SDK's onnxruntime backend."""
    from trt_engine.sharpener import Sharpener

    with Sharpener(onnx_path, color="rgb") as sharpener:
        return list(sharpener.process_batch(list(frames)))


def compare(
    ref_path: str | os.PathLike[str], test_path: str | os.PathLike[str], held: FrameSet
) -> dict[str, float]:
    """PSNR of ``test`` against ``ref`` outputs (fidelity) and, with ground truth, both against it."""
    from trt_engine.metrics import psnr

    ref = run_frames(ref_path, held.inputs)
    test = run_frames(test_path, held.inputs)
    fidelity = [min(psnr(r, t), 100.0) for r, t in zip(ref, test, strict=True)]
    diff = max(int(np.abs(r.astype(np.int16) - t).max()) for r, t in zip(ref, test, strict=True))
    result = {
        "frames": len(ref),
        "psnr_vs_fp32_db": round(float(np.mean(fidelity)), 3),
        "min_psnr_vs_fp32_db": round(float(np.min(fidelity)), 3),
        "max_abs_diff_levels": diff,
    }
    if held.truths is not None:
        p_ref = float(np.mean([psnr(g, r) for g, r in zip(held.truths, ref, strict=True)]))
        p_test = float(np.mean([psnr(g, t) for g, t in zip(held.truths, test, strict=True)]))
        p_in = float(np.mean([psnr(g, x) for g, x in zip(held.truths, held.inputs, strict=True)]))
        result.update(
            {
                "psnr_input_db": round(p_in, 3),
                "psnr_fp32_db": round(p_ref, 3),
                "psnr_db": round(p_test, 3),
                "psnr_drop_db": round(p_ref - p_test, 3),
            }
        )
    return result


@dataclass
class PrecisionResult:
    path: Path
    precision: str
    io: str
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: str = ""


def make_precision_onnx(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    precision: str,
    *,
    uint8_io: bool = False,
    batch: int | None = None,
    calib_dir: str | os.PathLike[str] | None = None,
    calib_preset: str = "call",
    max_calib_frames: int = 32,
    verify: bool = True,
) -> PrecisionResult:
    """Write ``src`` as an ``fp32``/``fp16``/``int8`` ONNX at ``out`` (optionally with uint8 I/O), verified.

    A source whose metadata already says ``precision`` is copied through unchanged (re-running build-engine
    on a precision ONNX does not convert twice).
    """
    import onnx

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    model = load_onnx(src)
    have = get_metadata(model).get("precision", "fp32")
    if have not in ("fp32", precision):
        raise ValueError(f"{src} is already a {have} model; convert from the fp32 export instead")
    if batch is not None:
        model = set_batch(model, batch)
    fp32 = tensorrt_friendly_uint8(add_uint8_io(model) if uint8_io else model)
    io = io_kind(fp32)
    shape = input_shape(fp32)
    n, h, w = (shape[0], shape[1], shape[2]) if io == "uint8_nhwc" else (shape[0], shape[2], shape[3])
    if h is None or w is None:
        raise ValueError(
            f"{src} has a dynamic image size {shape}; export a fixed-size model (kd-export --static) first"
        )
    batch = n or 1
    need_frames = verify or (precision == "int8" and have != "int8")
    calib = held = None
    if need_frames:
        calib, held = calibration_sets(calib_dir, h, w, calib_preset, max_calib_frames, hold_out=verify)

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="kd-precision-") as tmp:
        ref_path = Path(tmp) / "fp32.onnx"
        onnx.save(fp32, str(ref_path))
        if precision == have:
            with atomic_path(out) as dst:
                onnx.save(fp32, str(dst))
        elif precision == "fp16":
            with atomic_path(out) as dst:
                onnx.save(convert_fp16(fp32), str(dst))
        elif precision == "int8":
            assert calib is not None
            quantize_int8(fp32, out, model_inputs(calib.inputs, io, batch))
        else:  # pragma: no cover - guarded above
            raise AssertionError(precision)
        metrics: dict[str, Any] = {}
        if verify and held is not None and precision != "fp32" and have == "fp32":
            metrics = compare(ref_path, out, held)
    return PrecisionResult(out, precision, io, metrics, calib.source if calib else "")

"""Export a student to ONNX (dynamic height/width, or a fixed shape for engines) with its ModelMeta contract,
the ONNX checker and an onnxruntime parity check.

Graph I/O contract (recorded in the model's metadata_props, read back by ``trt_engine``):
- ``float32_nchw``: input ``input`` float32 [N,3,H,W] RGB in [0,1]; output ``output`` same shape, clipped.
- ``uint8_nhwc``: input ``frames`` uint8 [N,H,W,3] RGB; output ``frames_out`` uint8, with the Cast at the
  very input, Round + Cast at the very output, so an app hands decoded frames straight in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kd_trainer.models.student import ResidualUNet, load_student, merge_branches
from trt_engine.io import atomic_path
from trt_engine.meta import (
    META_PREFIX,
    ONNX_FORMAT,
    ModelMeta,
    kd_strings,
    onnx_metadata_props,
    set_proto_metadata,
)

__all__ = [
    "META_PREFIX",
    "ONNX_FORMAT",
    "ExportResult",
    "export_checkpoint",
    "export_onnx",
    "read_onnx_metadata",
]


class Uint8NHWC(nn.Module):
    """Wrap a float NCHW image model with uint8 NHWC input and output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = (
            frames.to(torch.float32).permute(0, 3, 1, 2) / 255.0
        )  # Cast first: TensorRT wants uint8 cast at once
        y = self.model(x).clamp(0.0, 1.0) * 255.0
        return torch.round(y).permute(0, 2, 3, 1).to(torch.uint8)


class ClampedFloat(nn.Module):
    """Clip the student's output to [0, 1] inside the graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).clamp(0.0, 1.0)


@dataclass
class ExportResult:
    path: Path
    io: str
    shape: tuple[int, int, int, int]
    max_abs_error: float
    metadata: dict[str, str]


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``kd.*`` metadata of an exported model as strings, without the prefix (the runtime's reader;
    :func:`trt_engine.meta.read_onnx_meta` gives the parsed :class:`~trt_engine.meta.ModelMeta`)."""
    return kd_strings(onnx_metadata_props(path))


def export_onnx(
    model: ResidualUNet,
    out: str | os.PathLike[str],
    *,
    height: int = 1080,
    width: int = 1920,
    batch: int = 1,
    uint8_io: bool = False,
    dynamic: bool = False,
    opset: int = 18,
    name: str = "",
    extra_metadata: dict[str, Any] | None = None,
    check: bool = True,
    seed: int = 0,
) -> ExportResult:
    """Export ``model`` with a static ``batch x 3 x height x width`` shape (``dynamic=False``, for engines), or
    with dynamic height and width (``dynamic=True``, for onnxruntime: any frame size that is a multiple of
    the student's ``multiple``, recorded in the metadata; the runtime pads other sizes), and verify it.

    The ONNX is checked with ``onnx.checker`` and run with onnxruntime on a random input (for a dynamic model
    at two sizes, ``height x width`` rounded up to the multiple being one); the max absolute difference to
    PyTorch is returned (in [0,1] units for float I/O, in levels for uint8 I/O).
    """
    import onnx

    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    if min(height, width, batch) < 1:
        raise ValueError(f"invalid export shape batch={batch} height={height} width={width}")
    model = merge_branches(model).eval().cpu()  # over-parameterised training convs export as plain convs
    multiple = model.config.multiple
    wrapped: nn.Module = Uint8NHWC(model) if uint8_io else ClampedFloat(model)
    rng = np.random.default_rng(seed)
    sizes = [(height, width)]
    if dynamic:  # trace at a small multiple of the size multiple; check parity there and at height x width
        up = lambda v: -(-v // multiple) * multiple  # noqa: E731
        sizes = [(4 * multiple, 6 * multiple), (up(height), up(width))]
    samples = []
    for h, w in sizes:
        if uint8_io:
            samples.append(torch.from_numpy(rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)))
        else:
            samples.append(torch.from_numpy(rng.random((batch, 3, h, w), dtype=np.float32)))
    sample = samples[0]
    if uint8_io:
        in_name, out_name, io = "frames", "frames_out", "uint8_nhwc"
    else:
        in_name, out_name, io = "input", "output", "float32_nchw"
    axes = (1, 2) if uint8_io else (2, 3)
    dynamic_shapes = ({axes[0]: torch.export.Dim.AUTO, axes[1]: torch.export.Dim.AUTO},) if dynamic else None

    import trt_engine

    contract = ModelMeta(
        io=io,
        color="rgb",
        batch=batch,
        height=None if dynamic else height,
        width=None if dynamic else width,
        multiple=multiple,
        precision="fp32",
        student=name,
        config=model.config.to_dict(),
        versions={"image-sharpening-kd": trt_engine.__version__, "torch": torch.__version__, "opset": opset},
        input=in_name,
        output=out_name,
        format=ONNX_FORMAT,
    )
    for key, value in (extra_metadata or {}).items():
        if key == "metrics":
            contract.metrics = json.loads(value) if isinstance(value, str) else dict(value)
        else:
            contract.extra[key] = value
    metadata = contract.to_strings()

    out_path = Path(out)
    with atomic_path(out_path) as tmp:
        with warnings.catch_warnings(), _quiet_exporter():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapped,
                (sample,),
                input_names=[in_name],
                output_names=[out_name],
                opset_version=opset,
                dynamic_shapes=dynamic_shapes,
                dynamo=True,
                optimize=True,
                verbose=False,
            )
        proto = program.model_proto
        if dynamic:
            _name_dims(proto, axes)
        set_proto_metadata(proto, contract)
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
        error = max(_parity(wrapped, tmp, in_name, x) for x in samples) if check else float("nan")
    return ExportResult(out_path, io, (batch, 3, height, width), error, metadata)


def _name_dims(proto: Any, axes: tuple[int, int]) -> None:
    """Call the exporter's symbolic image axes ``height`` and ``width`` (graph input and output alike)."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    names = {dims[axes[0]].dim_param: "height", dims[axes[1]].dim_param: "width"}
    for value in list(proto.graph.input) + list(proto.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def export_program(
    checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], *, height: int = 1080, width: int = 1920
) -> Path:
    """A self-contained ``torch.export`` program of a checkpoint's student (float32 NCHW RGB in [0,1], output
    clipped, dynamic height/width in multiples of the student's ``multiple``) with its ModelMeta inside: the
    runtime's PyTorch backend runs it without the trainer. ``height x width`` is the checked size."""
    import trt_engine
    from trt_engine.backends.torch import EXPORTED_META

    model, ckpt = load_student(checkpoint)
    model = merge_branches(model)
    m = model.config.multiple
    wrapped = ClampedFloat(model).eval()
    sample = torch.rand(1, 3, 4 * m, 6 * m, generator=torch.Generator().manual_seed(0))
    dims = {2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
    with torch.no_grad():
        program = torch.export.export(wrapped, (sample,), dynamic_shapes=(dims,))
        check = torch.rand(1, 3, -(-height // m) * m, -(-width // m) * m)
        error = float((program.module()(check) - wrapped(check)).abs().max())
    if error > 1e-5:
        raise RuntimeError(f"exported program differs from the student by {error:.3g}")
    meta = ModelMeta(
        io="float32_nchw",
        batch=1,
        multiple=m,
        student=ckpt.get("name", ""),
        config=model.config.to_dict(),
        metrics=dict(ckpt.get("metrics") or {}),
        versions={"image-sharpening-kd": trt_engine.__version__, "torch": torch.__version__},
        input="input",
        output="output",
        format="image-sharpening-kd/torch-export-v1",
    )
    out_path = Path(out)
    with atomic_path(out_path) as tmp:
        torch.export.save(program, str(tmp), extra_files={EXPORTED_META: json.dumps(meta.to_dict())})
    return out_path


def export_checkpoint(
    checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], **kwargs: Any
) -> ExportResult:
    """Load a student checkpoint and export it; the checkpoint's metrics travel in the metadata."""
    model, ckpt = load_student(checkpoint)
    extra = dict(kwargs.pop("extra_metadata", None) or {})
    if ckpt.get("metrics"):
        extra.setdefault("metrics", ckpt["metrics"])
    return export_onnx(model, out, name=ckpt.get("name", ""), extra_metadata=extra, **kwargs)


def _parity(wrapped: nn.Module, onnx_path: Path, in_name: str, sample: torch.Tensor) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (ort_out,) = session.run(None, {in_name: sample.numpy()})
    with torch.no_grad():
        ref = wrapped(sample).numpy()
    return float(np.abs(ort_out.astype(np.float64) - ref.astype(np.float64)).max())


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress prints and registration warnings."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            yield
    finally:
        logger.setLevel(level)

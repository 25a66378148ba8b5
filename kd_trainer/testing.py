"""Small real students and frames for tests, examples and smoke checks (no network, a second or two on CPU).

The registry's students start as the identity (their tail convolution is zero-initialised), which would make
every parity test pass trivially; :func:`make_student` perturbs the tail so the residual branch matters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class StudentFiles:
    """A perturbed student saved as a checkpoint and exported to ONNX."""

    model: object  # kd_trainer.models.student.ResidualUNet
    pt: Path
    onnx: Path
    onnx_uint8: Path | None
    height: int
    width: int


def make_student(
    folder: str | os.PathLike[str],
    name: str = "runet-n",
    height: int = 64,
    width: int = 96,
    batch: int = 1,
    uint8: bool = True,
    tail_std: float = 0.2,
    seed: int = 0,
) -> StudentFiles:
    """Build student ``name`` with a random non-zero tail, save ``student.pt`` and export ``student.onnx``
    (float32 NCHW) and, with ``uint8``, ``student_u8.onnx`` (uint8 NHWC), all ``batch x height x width``."""
    import torch

    from kd_trainer.export import export_onnx
    from kd_trainer.models.student import build_student, save_checkpoint

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_student(name)
    with torch.no_grad():
        model.tail.weight.normal_(0.0, tail_std)
        model.tail.bias.normal_(0.0, 0.01)
        if getattr(model, "detail", None) is not None:
            model.detail.weight.normal_(0.0, 0.05)
    model.eval()
    pt = save_checkpoint(folder / "student.pt", model, name=name)
    onnx_path = export_onnx(
        model, folder / "student.onnx", height=height, width=width, batch=batch, name=name
    ).path
    u8 = None
    if uint8:
        u8 = export_onnx(
            model,
            folder / "student_u8.onnx",
            height=height,
            width=width,
            batch=batch,
            uint8_io=True,
            name=name,
        ).path
    return StudentFiles(model, Path(pt), onnx_path, u8, height, width)


def torch_reference(model: object, rgb: np.ndarray) -> np.ndarray:
    """The student's output on one HxWx3 uint8 RGB frame, computed directly in PyTorch (float32)."""
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
        y = model(x).clamp(0.0, 1.0) * 255.0  # type: ignore[operator]
        return torch.round(y)[0].permute(1, 2, 0).to(torch.uint8).numpy()


def photo_frames(
    height: int, width: int, preset: str = "call", names: tuple[str, ...] = ("chelsea", "coffee")
):
    """(degraded inputs, ground truths): scikit-image photos fitted to ``height x width`` and degraded."""
    import skimage.data

    from kd_trainer.degrade import degrade
    from trt_engine.precision import fit_frame

    truths = [fit_frame(getattr(skimage.data, n)(), height, width) for n in names]
    return [degrade(t, preset, seed=i) for i, t in enumerate(truths)], truths

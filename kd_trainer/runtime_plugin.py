"""Lets the runtime's PyTorch backend (:mod:`trt_engine.backends.torch`) open trainer checkpoints.

Registered when :mod:`kd_trainer` is imported, and declared as the entry point
``image_sharpening_kd.checkpoint_loaders: student = kd_trainer.runtime_plugin:register`` so that the runtime
finds it on demand without importing the trainer itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHECKPOINT_FORMAT = "image-sharpening-kd/student-v1"


def load(path: Path) -> tuple[Any, dict[str, Any]]:
    """(student in eval mode, ModelMeta fields) of a checkpoint; CheckpointError (ValueError) names the file."""
    from kd_trainer.models.student import load_student, merge_branches

    model, ckpt = load_student(path)
    model = merge_branches(model)
    meta: dict[str, Any] = {
        "student": ckpt.get("name", ""),
        "config": model.config.to_dict(),
        "multiple": model.config.multiple,
        "io": "float32_nchw",
        "color": "rgb",
    }
    if ckpt.get("metrics"):
        meta["metrics"] = ckpt["metrics"]
    return model, meta


def register() -> None:
    from trt_engine.backends.torch import register_checkpoint_loader

    register_checkpoint_loader(CHECKPOINT_FORMAT, load)

"""Runtimes behind :class:`trt_engine.Sharpener`, one module each, imported only when a model needs them.

``.engine``/``.plan`` -> :mod:`.tensorrt` (TensorRT + cuda-python), ``.onnx`` -> :mod:`.onnxrt`
(onnxruntime), ``.pt``/``.pth`` -> :mod:`.torch` (PyTorch student checkpoints).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from trt_engine.backends.base import Backend, BackendInfo

#: suffix -> (module, class, description)
BACKENDS: dict[str, tuple[str, str, str]] = {
    ".engine": ("trt_engine.backends.tensorrt", "TensorRTBackend", "TensorRT engine from build-engine"),
    ".plan": ("trt_engine.backends.tensorrt", "TensorRTBackend", "TensorRT engine from build-engine"),
    ".onnx": ("trt_engine.backends.onnxrt", "OnnxRuntimeBackend", "ONNX model, run with onnxruntime"),
    ".pt": ("trt_engine.backends.torch", "TorchBackend", "student checkpoint, run with PyTorch"),
    ".pth": ("trt_engine.backends.torch", "TorchBackend", "student checkpoint, run with PyTorch"),
    ".pt2": ("trt_engine.backends.torch", "TorchBackend", "torch.export program, run with PyTorch"),
}


def supported_suffixes() -> str:
    return ", ".join(f"{s} ({d})" for s, (_, _, d) in BACKENDS.items())


def backend_class(path: str | os.PathLike[str]) -> type[Backend]:
    """The backend class for a model file, chosen by its suffix (ValueError for anything else)."""
    suffix = Path(path).suffix.lower()
    if suffix not in BACKENDS:
        raise ValueError(
            f"unsupported model file {str(path)!r} (suffix {suffix or 'none'!r}); supported: {supported_suffixes()}"
        )
    module, name, _ = BACKENDS[suffix]
    return getattr(importlib.import_module(module), name)


__all__ = ["BACKENDS", "Backend", "BackendInfo", "backend_class", "supported_suffixes"]

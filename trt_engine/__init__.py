"""Real-time sharpening SDK: ``Sharpener(path).process(frame)`` for ``.engine``, ``.onnx`` and ``.pt`` models.

Importing this package is cheap: TensorRT, CUDA, onnxruntime and PyTorch are imported only when a model
that needs them is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Sharpener", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from trt_engine.sharpener import Sharpener


def __getattr__(name: str) -> Any:
    if name == "Sharpener":
        from trt_engine.sharpener import Sharpener

        return Sharpener
    raise AttributeError(f"module 'trt_engine' has no attribute {name!r}")

"""Exception types raised by ``trt_engine`` (all documented in docs/sdk.md and docs/engines.md).

- :class:`FrameError` (a ``ValueError``): a frame handed to :class:`~trt_engine.Sharpener` breaks the frame
  contract (dtype, shape, channels, size); the message says what was expected and what was given.
- :class:`ModelLoadError` (a ``ValueError``): a model file is empty, corrupt, or not a model this SDK can run.
- :class:`EngineHeaderError` (a :class:`ModelLoadError`): an ``.engine`` file's header is missing or damaged.
- :class:`EngineMismatchError` (a ``RuntimeError``): an engine was built for another TensorRT version or GPU;
  the message says "rebuild with build-engine".
- :class:`BackendUnavailableError` (a ``RuntimeError``): the runtime a model needs (GPU, TensorRT,
  cuda-python, an onnxruntime execution provider) is not installed or not present.
"""

from __future__ import annotations

from pathlib import Path


class FrameError(ValueError):
    """A frame does not satisfy the frame contract (HxWx3 uint8 in the chosen colour order)."""


class ModelLoadError(ValueError):
    """A model file is empty, corrupt or not runnable by this SDK."""


class EngineHeaderError(ModelLoadError):
    """An engine file has no valid image-sharpening-kd header, or its plan is truncated."""


class EngineMismatchError(RuntimeError):
    """An engine was built for another TensorRT version or another GPU: rebuild it with build-engine."""


class BackendUnavailableError(RuntimeError):
    """The runtime a model needs is not installed here (GPU, TensorRT, cuda-python, an ORT provider)."""


def require_model_file(path: str | Path, what: str, empty_hint: str) -> Path:
    """``path`` as a Path if it is a non-empty file; else FileNotFoundError / ModelLoadError naming it."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {p}")
    if p.stat().st_size == 0:
        raise ModelLoadError(f"{p} is empty (0 bytes); {empty_hint}")
    return p

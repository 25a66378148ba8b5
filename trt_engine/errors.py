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


#: Range checks for sizes read from model files (graph shapes, engine headers), applied before any buffer is
#: allocated: a crafted file must be refused in milliseconds, not after allocating gigabytes.
MAX_MODEL_SIDE = 16384
MAX_MODEL_BATCH = 256
MAX_MODEL_PIXELS = 16384 * 16384  # batch x height x width of one fixed-shape model call


def check_model_sizes(path: str | Path, batch: object, height: object, width: object) -> None:
    """ModelLoadError naming ``path`` unless each size is None (dynamic) or a plausible positive int."""
    dims = {
        "batch": (batch, MAX_MODEL_BATCH),
        "height": (height, MAX_MODEL_SIDE),
        "width": (width, MAX_MODEL_SIDE),
    }
    for name, (value, limit) in dims.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ModelLoadError(
                f"{path}: implausible model {name} {str(value)[:40]} (allowed 1..{limit}); the file is corrupt or "
                "crafted; re-export it with kd-export (and rebuild engines with build-engine)"
            )
    if (
        batch is not None
        and height is not None
        and width is not None
        and batch * height * width > MAX_MODEL_PIXELS
    ):
        raise ModelLoadError(
            f"{path}: model input {batch}x{height}x{width} exceeds {MAX_MODEL_PIXELS} pixels per call; "
            "export a smaller fixed size or a dynamic-size model"
        )

"""One small interface over the SDK for timing and quality runs.

End to end always goes through ``trt_engine.Sharpener`` (host uint8 frame in, host frame out: colour
conversion, padding, upload/download included). Compute only calls the backend's model runtime on input
that is already converted (and, on a GPU, already on the device). ``trt_engine`` is imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .frames import BenchInputError


class Runner:
    """``process``/``process_batch``/``stream`` on HxWx3 uint8 frames (through ``trt_engine.Sharpener``), and
    ``compute_fn`` for the model runtime alone on prepared input."""

    def __init__(self, path: Path, *, batch: int = 1, color: str = "bgr", device: str | None = None) -> None:
        self.path = Path(path)
        self.batch = batch
        if not self.path.is_file():
            raise BenchInputError(f"model file not found: {self.path}")
        try:
            from trt_engine import Sharpener
        except ImportError as exc:
            raise BenchInputError(f"the SDK (trt_engine) cannot be imported: {exc}") from exc
        try:
            self._sharpener = Sharpener(str(self.path), device=device, color=color, batch=batch)
        except (ValueError, RuntimeError, OSError, ImportError) as exc:
            raise BenchInputError(f"{self.path.name}: {exc}") from exc
        info = dict(self._sharpener.info)
        info.setdefault("runner", "trt_engine.Sharpener")
        info.setdefault("memory", memory_note(info))
        self.info: dict[str, Any] = info

    def process(self, frame: np.ndarray) -> np.ndarray:
        return self._sharpener.process(frame)

    def process_batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        return list(self._sharpener.process_batch(frames))

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        return self._sharpener.stream(frames)

    def compute_fn(self) -> tuple[Callable[[], Any], str]:
        """A zero-argument callable running only the model on pre-converted input, and how it was made.

        The backend's own runtime object is called directly: onnxruntime ``session.run`` on a batch already
        in the graph's input layout; PyTorch ``model(x)`` on a tensor already on the device in the model's
        dtype; TensorRT ``execute_async_v3`` on input already uploaded (+ stream sync). An unfamiliar
        backend falls back to ``backend.run`` on a model-ready uint8 batch (said in the returned text).
        """
        made = _backend_compute(self._sharpener.backend, self.batch, self.info)
        if made is None:
            raise BenchInputError(
                f"{self.path.name}: no compute-only entry point for backend {self.info.get('backend')!r}"
            )
        return made

    def close(self) -> None:
        self._sharpener.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _model_batch(batch: int, info: dict[str, Any]) -> np.ndarray:
    """A random uint8 NHWC batch of the model's size (1080p for size-agnostic models)."""
    h, w = info.get("height") or 1080, info.get("width") or 1920
    n = info.get("model_batch") or batch
    return np.random.default_rng(0).integers(0, 256, (int(n), int(h), int(w), 3), dtype=np.uint8)


def _backend_compute(backend: Any, batch: int, info: dict[str, Any]) -> tuple[Callable[[], Any], str] | None:
    """Compute-only callables for the SDK's backends (None when the backend's internals are unfamiliar)."""
    kind = info.get("backend")
    x = _model_batch(batch, info)
    if kind == "onnxruntime" and hasattr(backend, "session"):
        if getattr(backend, "io", "") == "uint8_nhwc":
            feed = x
        else:
            feed = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255.0)
        session, names, inputs = backend.session, [backend.output_name], {backend.input_name: feed}
        return (lambda: session.run(names, inputs)), "onnxruntime session.run on input in the graph's layout"
    if kind == "torch" and hasattr(backend, "model"):
        import torch

        model, device, dtype = backend.model, backend.device, backend.dtype
        t = torch.from_numpy(x).permute(0, 3, 1, 2).to(device=device, dtype=dtype).div_(255.0)
        if device.type == "cuda":
            t = t.contiguous(memory_format=torch.channels_last)

        def run_torch() -> Any:
            with torch.inference_mode():
                return model(t)

        return run_torch, f"torch model(x) on a {dtype} tensor already on {device}"
    if kind == "tensorrt" and hasattr(backend, "_run_slot") and hasattr(backend, "_stage"):
        slot = backend._run_slot
        backend.run(x)  # stages and uploads once; the device input buffer then holds a real batch
        cudart = backend.cudart

        def run_trt() -> None:
            if not slot.context.execute_async_v3(int(slot.stream)):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            cudart.cudaStreamSynchronize(slot.stream)

        return run_trt, "TensorRT execute_async_v3 on input already on the GPU (+ stream sync)"
    if hasattr(backend, "run"):
        return (
            lambda: backend.run(x)
        ), "backend.run on a model-ready uint8 batch (includes layout conversion)"
    return None


def memory_note(info: dict[str, Any]) -> str:
    """How host frames reach the model (the report's "host memory" column): the backend's own word
    (``Sharpener.info["host_memory"]``), else inferred from backend and device."""
    if info.get("host_memory"):
        return str(info["host_memory"])
    device = str(info.get("device", "cpu"))
    backend = info.get("backend", "")
    if not device.startswith("cuda") and backend != "tensorrt":
        return "host only (no device copies)"
    if backend in ("tensorrt", "torch"):
        return "pinned staging buffers, reused (caller's pageable frame copied in, timed)"
    return "pageable (onnxruntime copies)"

"""The public API: ``Sharpener(path).process(frame)``.

Frame contract: a frame is a ``numpy.ndarray`` of shape ``H x W x 3`` and dtype ``uint8`` in the colour order
given by ``color`` (``"bgr"``, OpenCV's order, by default, or ``"rgb"``). Any strides are accepted. Frames
smaller than a fixed-shape model (or not a multiple of a dynamic model's size multiple) are reflect-padded
at the bottom/right and cropped back. Frames larger than a fixed-shape model are refused with a
:class:`~trt_engine.errors.FrameError` that says how to export a model of the right size. Every returned
frame is a new array, never a view into a buffer a later call reuses.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from trt_engine.backends import backend_class
from trt_engine.backends.base import Backend
from trt_engine.errors import FrameError, ModelLoadError, check_model_sizes

#: Largest side accepted for models without a fixed size (a 16K frame is ~800 MB of float activations).
MAX_SIDE = 16384
COLORS = ("bgr", "rgb")
_END = object()


MAX_STRENGTH = 3.0  # above 1 the model's change is extrapolated: for sources known to be soft (docs/sdk.md)


def check_strength(strength: Any) -> float:
    """``strength`` as a float, or a ValueError unless it is a number in [0, :data:`MAX_STRENGTH`]."""
    if (
        isinstance(strength, bool)
        or not isinstance(strength, (int, float))
        or not 0.0 <= strength <= MAX_STRENGTH
    ):
        raise ValueError(f"strength must be a number in [0, {MAX_STRENGTH:g}], got {strength!r}")
    return float(strength)


def blend(frame: np.ndarray, sharpened: np.ndarray, strength: float) -> np.ndarray:
    """``frame + strength * (sharpened - frame)`` in uint8 (rounded, clipped to 0..255): below 1 towards the
    input, above 1 past the model's output; 0 gives a copy of ``frame`` exactly, 1 ``sharpened`` itself."""
    import cv2

    if strength == 1.0:
        return sharpened
    if strength <= 0.0:
        return np.array(frame, copy=True)
    return cv2.addWeighted(sharpened, strength, frame, 1.0 - strength, 0.0)


def _module(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


class _Frame:
    """A frame of any supported type as an HxWx3 uint8 numpy array, and the way back to its type.

    numpy arrays pass through; PIL images are RGB by definition (converted to and from the Sharpener's colour
    order); torch tensors (CPU, or CUDA: copied to the host and the result back to their device) come back as
    tensors; other objects with ``__dlpack__`` / ``__cuda_array_interface__`` (CuPy, JAX, ...) are read
    through ``numpy.from_dlpack`` (host memory) or torch / CuPy (device memory) and come back as numpy arrays,
    or as arrays of their own library where it is imported already.
    """

    def __init__(self, frame: Any, color: str) -> None:
        self.kind, self.device, self.color = "numpy", None, color
        if isinstance(frame, np.ndarray):
            self.array = frame
        elif _module(frame) == "PIL" and hasattr(frame, "convert") and hasattr(frame, "size"):
            self.kind = "pil"
            rgb = np.asarray(frame.convert("RGB") if frame.mode != "RGB" else frame)
            self.array = np.ascontiguousarray(rgb[..., ::-1]) if color == "bgr" else rgb
        elif _module(frame) == "torch":
            self.kind, self.device = "torch", frame.device
            self.array = frame.detach().cpu().numpy()
        elif hasattr(frame, "__cuda_array_interface__") or hasattr(frame, "__dlpack__"):
            self.array = self._foreign(frame)
        else:
            self.array = frame  # refused by _check with the usual message

    def _foreign(self, frame: Any) -> np.ndarray:
        device_type = frame.__dlpack_device__()[0] if hasattr(frame, "__dlpack_device__") else None
        if device_type == 1 or (device_type is None and not hasattr(frame, "__cuda_array_interface__")):
            return np.from_dlpack(frame)  # CPU memory, no copy
        if _module(frame) == "cupy":
            import cupy

            self.kind = "cupy"
            return cupy.asnumpy(frame)
        try:
            import torch
        except ImportError:
            raise FrameError(
                f"a {type(frame).__name__} in GPU memory needs torch or CuPy to be read; copy it to the host "
                "(numpy) first"
            ) from None
        tensor = torch.from_dlpack(frame) if hasattr(frame, "__dlpack__") else torch.as_tensor(frame)
        self.kind, self.device = "torch", tensor.device
        return tensor.detach().cpu().numpy()

    def back(self, out: np.ndarray) -> Any:
        if self.kind == "pil":
            from PIL import Image

            return Image.fromarray(
                np.ascontiguousarray(out[..., ::-1]) if self.color == "bgr" else out, "RGB"
            )
        if self.kind == "torch":
            import torch

            tensor = torch.from_numpy(out)
            return tensor.to(self.device) if self.device is not None and self.device.type != "cpu" else tensor
        if self.kind == "cupy":
            import cupy

            return cupy.asarray(out)
        return out


def _describe(frame: Any) -> str:
    if isinstance(frame, np.ndarray):
        return f"shape {tuple(frame.shape)} dtype {frame.dtype}"
    return f"a {type(frame).__name__}"


class Sharpener:
    """Sharpen HxWx3 uint8 frames with a ``.engine``/``.plan``, ``.onnx`` or ``.pt`` model.

    Args:
        path: model file; the suffix picks the backend (TensorRT, onnxruntime, PyTorch).
        device: ``None`` = the backend's default (CPU for ``.onnx``/``.pt``, GPU 0 for engines);
            ``"cpu"``, ``"cuda"``/``"cuda:N"``; for ``.onnx`` also ``"tensorrt"`` (ORT's TensorRT provider).
        color: channel order of the frames you pass in and get back: ``"bgr"`` (OpenCV) or ``"rgb"``.
        batch: frames per model call in ``process_batch``/``stream``. Must equal a fixed-batch model's batch
            (or be None); defaults to that batch, else 1.
        threads: CPU threads for onnxruntime / PyTorch on CPU (default: the cores this process may use).
        cuda_graph: TensorRT only: capture each call into a CUDA graph (static shapes).
        model_color: override the model's channel order (default: its metadata, else ``"rgb"``).
        strength: 0..3, how far the output goes from the input along the model's change (1: the model's
            output; 0: the input unchanged, without running the model; above 1: the change extrapolated, for
            sources known to be soft, see docs/sdk.md); ``process(frame, strength=...)`` overrides it per call.

    A Sharpener may be shared between threads; model calls are serialised.
    """

    def __init__(
        self,
        path: str | Path,
        device: str | None = None,
        color: str = "bgr",
        batch: int | None = None,
        *,
        threads: int | None = None,
        cuda_graph: bool = False,
        model_color: str | None = None,
        strength: float = 1.0,
    ) -> None:
        self.strength = strength
        if not isinstance(color, str) or color.lower() not in COLORS:
            raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
        if model_color is not None and (
            not isinstance(model_color, str) or model_color.lower() not in COLORS
        ):
            raise ValueError(f"model_color must be 'bgr', 'rgb' or None, got {model_color!r}")
        if batch is not None and (not isinstance(batch, int) or batch < 1):
            raise ValueError(f"batch must be a positive integer or None, got {batch!r}")
        self.path = Path(path)
        cls = backend_class(self.path)  # ValueError for unknown suffixes, before touching the file
        if not self.path.is_file():
            raise FileNotFoundError(f"model not found: {self.path}")
        kwargs: dict[str, Any] = {"device": device, "threads": threads}
        if cuda_graph:
            kwargs["cuda_graph"] = True
        self._backend: Backend | None = cls(self.path, **kwargs)
        info = self._backend.info
        try:  # sizes read from the file, range-checked before any frame buffer is allocated from them
            check_model_sizes(self.path, info.batch, info.height, info.width)
        except ModelLoadError:
            self._backend.close()
            raise
        self.color = color.lower()
        self.model_color = (model_color or info.color or "rgb").lower()
        if self.model_color not in COLORS:
            self._backend.close()
            raise ModelLoadError(
                f"{self.path}: metadata names colour order {info.color!r}; expected bgr or rgb"
            )
        self._backend.swap_rb = self.color != self.model_color
        if info.batch is not None and batch is not None and batch != info.batch:
            self._backend.close()
            raise ValueError(
                f"{self.path} has a fixed batch of {info.batch}; pass batch=None or batch={info.batch} "
                f"(export/build another batch size for batch={batch})"
            )
        self.batch = info.batch or batch or 1
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ properties
    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise RuntimeError("this Sharpener is closed")
        return self._backend

    @property
    def strength(self) -> float:
        """The default strength of :meth:`process`, :meth:`process_batch` and :meth:`stream` (0..3; checked)."""
        return self._strength

    @strength.setter
    def strength(self, value: float) -> None:
        self._strength = check_strength(value)

    @property
    def info(self) -> dict[str, Any]:
        """Backend, device, precision, graph I/O, shape, colour orders, batch, providers and model metadata."""
        data = asdict(self.backend.info)
        data["model_color"] = data.pop("color")
        data["color"] = self.color
        data["batch"] = self.batch
        data["model_batch"] = self.backend.info.batch
        return data

    def __repr__(self) -> str:
        if self._backend is None:
            return f"Sharpener({str(self.path)!r}, closed)"
        i = self._backend.info
        size = f"{i.height}x{i.width}" if i.fixed_size else f"any size (multiple of {i.multiple})"
        return (
            f"Sharpener({str(self.path)!r}, backend={i.backend}, device={i.device}, precision={i.precision}, "
            f"{size}, color={self.color})"
        )

    # ----------------------------------------------------------------------------------- frame handling
    def _check(self, frame: Any, where: str = "frame") -> np.ndarray:
        """Validate one frame against the contract; return it (possibly made contiguous)."""
        expected = f"expected an HxWx3 uint8 array ({self.color} order), got {_describe(frame)}"
        if not isinstance(frame, np.ndarray):
            raise FrameError(f"{where}: {expected}; convert with numpy.asarray(...)")
        if frame.ndim != 3:
            hint = "grey frames: cv2.cvtColor(f, cv2.COLOR_GRAY2BGR)" if frame.ndim == 2 else "pass one frame"
            if frame.ndim == 4:
                hint = "use process_batch() for N x H x W x 3 batches"
            raise FrameError(f"{where}: {expected}; {hint}")
        if frame.shape[2] != 3:
            hint = (
                "drop alpha with frame[..., :3]"
                if frame.shape[2] == 4
                else "the last axis must be 3 colour channels"
            )
            raise FrameError(f"{where}: {expected}; {hint}")
        if frame.dtype != np.uint8:
            if frame.dtype.kind == "f":
                hint = "convert floats in [0,1] with (f * 255).round().clip(0, 255).astype(numpy.uint8)"
            else:
                hint = "convert with .astype(numpy.uint8) after scaling to 0-255"
            raise FrameError(f"{where}: {expected}; {hint}")
        h, w = frame.shape[:2]
        if h == 0 or w == 0:
            raise FrameError(f"{where}: {expected}; the frame is empty")
        info = self.backend.info
        if info.fixed_size and (h > info.height or w > info.width):
            raise FrameError(
                f"{where}: frame {h}x{w} is larger than the model's fixed input {info.height}x{info.width} "
                f"({self.path.name}); export a model of that size (kd-export CKPT --height {h} --width {w}) and "
                "rebuild its engine, or resize the frame"
            )
        if not info.fixed_size and max(h, w) > MAX_SIDE:
            raise FrameError(
                f"{where}: frame {h}x{w} exceeds the {MAX_SIDE}-pixel side limit; split it into tiles"
            )
        if not frame.flags.c_contiguous:
            frame = np.ascontiguousarray(frame)
        return frame

    def _target(self, h: int, w: int) -> tuple[int, int]:
        info = self.backend.info
        if info.fixed_size:
            return int(info.height), int(info.width)
        m = max(1, info.multiple)
        return -(-h // m) * m, -(-w // m) * m

    def _assemble(self, frames: Sequence[np.ndarray], target: tuple[int, int]) -> np.ndarray:
        """Stack (and reflect-pad) checked frames into one N x H x W x 3 batch for the backend."""
        import cv2

        th, tw = target
        n = max(len(frames), self.backend.info.batch or 0)
        if len(frames) == 1 and n == 1 and frames[0].shape[:2] == target:
            return frames[0][None]  # a view; backends never write to their input
        batch = np.zeros((n, th, tw, 3), np.uint8) if n > len(frames) else np.empty((n, th, tw, 3), np.uint8)
        for i, frame in enumerate(frames):
            h, w = frame.shape[:2]
            if (h, w) == target:
                batch[i] = frame
            else:
                cv2.copyMakeBorder(frame, 0, th - h, 0, tw - w, cv2.BORDER_REFLECT_101, dst=batch[i])
        return batch

    @staticmethod
    def _split(out: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        results = []
        for i, (h, w) in enumerate(sizes):
            frame = out[i]
            if frame.shape[:2] != (h, w):
                frame = np.ascontiguousarray(frame[:h, :w])
            results.append(frame)
        return results

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._same_shape(self.backend.run(batch), batch.shape)

    def _same_shape(self, out: Any, shape: tuple[int, ...]) -> np.ndarray:
        """The model's output, refused unless it has its input's shape (never crop or pad it silently)."""
        got = tuple(getattr(out, "shape", ()))
        if got != tuple(shape):
            raise ModelLoadError(
                f"{self.path}: the model returned {got} for an input of {tuple(shape)} (N x H x W x 3); a "
                "sharpening model must keep the frame size; export one whose output size equals its input"
            )
        return out

    # ---------------------------------------------------------------------------------------- public API
    def process(self, frame: Any, strength: float | None = None) -> Any:
        """Sharpen one HxWx3 uint8 frame; returns a new frame of the same type, size and colour order.

        ``frame``: a numpy array, a PIL image (RGB), a torch tensor (CPU or CUDA) or any object with
        ``__dlpack__`` / ``__cuda_array_interface__``. ``strength`` (0..3) overrides the Sharpener's.
        """
        s = self.strength if strength is None else check_strength(strength)
        wrapped = _Frame(frame, self.color)
        checked = self._check(wrapped.array)
        if s == 0.0:
            return wrapped.back(np.array(checked, copy=True))
        h, w = checked.shape[:2]
        out = self._split(self._run(self._assemble([checked], self._target(h, w))), [(h, w)])[0]
        return wrapped.back(blend(checked, out, s))

    def process_batch(
        self, frames: np.ndarray | Sequence[Any], strength: float | None = None
    ) -> np.ndarray | list[Any]:
        """Sharpen several frames; an ``N x H x W x 3`` array gives an array, a sequence gives a list.

        Frames are sent in chunks of ``self.batch``; frames of different sizes (and, in a list, of different
        types, as for :meth:`process`) may be mixed.
        """
        s = self.strength if strength is None else check_strength(strength)
        as_array = isinstance(frames, np.ndarray)
        if as_array:
            if frames.ndim != 4:
                raise FrameError(
                    f"process_batch: expected an N x H x W x 3 uint8 array or a list of frames, got {_describe(frames)}"
                )
            items: Sequence[Any] = list(frames)
        elif isinstance(frames, (list, tuple)):
            items = frames
        else:
            raise FrameError(
                f"process_batch: expected an N x H x W x 3 uint8 array or a list of frames, got {_describe(frames)}"
            )
        wrapped = [_Frame(f, self.color) for f in items]
        checked = [self._check(f.array, f"frame {i}") for i, f in enumerate(wrapped)]
        results: list[Any] = [np.array(f, copy=True) for f in checked] if s == 0.0 else [None] * len(checked)
        for start in range(0, len(checked) if s > 0.0 else 0, self.batch):
            groups: dict[tuple[int, int], list[int]] = {}
            for i in range(start, min(start + self.batch, len(checked))):
                h, w = checked[i].shape[:2]
                groups.setdefault(self._target(h, w), []).append(i)
            for target, idx in groups.items():
                out = self._run(self._assemble([checked[i] for i in idx], target))
                for i, frame in zip(idx, self._split(out, [checked[i].shape[:2] for i in idx]), strict=True):
                    results[i] = blend(checked[i], frame, s)
        if as_array:
            return np.stack(results) if results else np.empty((0, *frames.shape[1:]), np.uint8)
        return [f.back(r) for f, r in zip(wrapped, results, strict=True)]

    def stream(self, frames: Iterable[np.ndarray], prefetch: int = 2) -> Iterator[np.ndarray]:
        """Yield a sharpened frame for each input frame, in order, overlapping the stages.

        A reader thread pulls frames from ``frames`` (e.g. a video decoder), validates, pads and batches them
        into a bounded queue of ``prefetch`` batches (memory stays flat on endless streams) while this thread
        runs the model; GPU backends additionally overlap upload, compute and download across two CUDA
        streams. A bad frame raises the same :class:`FrameError` as :meth:`process`, at its position; when the
        source itself raises, every frame read before it is delivered first, then the error is re-raised.
        """
        backend = self.backend
        q: queue.Queue[Any] = queue.Queue(maxsize=max(1, prefetch))
        stop = threading.Event()
        strength = self.strength

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def reader() -> None:
            pending: list[np.ndarray] = []
            target: tuple[int, int] | None = None

            def flush() -> bool:  # send the pending frames as one batch as soon as it is complete
                nonlocal pending
                if not pending:
                    return True
                inputs = list(pending) if strength != 1.0 else None  # kept for the blend with the input
                ok = put((self._assemble(pending, target), [f.shape[:2] for f in pending], inputs))
                pending = []
                return ok

            try:
                for index, frame in enumerate(frames):
                    if stop.is_set():
                        return
                    frame = self._check(frame, f"frame {index}")
                    t = self._target(*frame.shape[:2])
                    if pending and t != target and not flush():
                        return
                    pending.append(frame)
                    target = t
                    if len(pending) == self.batch and not flush():  # no frame waits for the next one
                        return
                flush()
                put(_END)
            except BaseException as exc:  # frames read so far are delivered first, then it is re-raised
                if flush():
                    put(exc)

        sizes: deque[tuple[tuple[int, ...], list[tuple[int, int]], list[np.ndarray] | None]] = deque()
        failure: list[BaseException] = []

        def feed() -> Iterator[np.ndarray]:
            while True:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    failure.append(item)  # end the batches normally so the backend drains what it holds
                    return
                batch, batch_sizes, inputs = item
                sizes.append((batch.shape, batch_sizes, inputs))
                yield batch

        thread = threading.Thread(target=reader, name="sharpener-reader", daemon=True)
        thread.start()
        outputs = backend.stream(feed())
        try:
            while True:
                with self._lock:
                    try:
                        out = next(outputs)
                    except StopIteration:
                        break
                shape, batch_sizes, inputs = sizes.popleft()
                results = self._split(self._same_shape(out, shape), batch_sizes)
                if inputs is not None:
                    results = [blend(i, r, strength) for i, r in zip(inputs, results, strict=True)]
                yield from results
            if failure:
                raise failure[0]
        finally:
            stop.set()
            outputs.close()
            # The reader notices `stop` within 0.1 s unless it is blocked inside the caller's iterator; it is a
            # daemon thread, so give up waiting after a few seconds rather than hang the caller.
            deadline = time.monotonic() + 5.0
            while thread.is_alive() and time.monotonic() < deadline:
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)

    # ------------------------------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Release the model and its buffers (idempotent)."""
        if self._backend is not None:
            with self._lock:
                self._backend.close()
                self._backend = None

    def __enter__(self) -> Sharpener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

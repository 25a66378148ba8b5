"""Live sharpening: capture -> Sharpener -> sinks, on threads, at call latency.

Three threads joined by two bounded "latest frame" queues::

    capture thread --[queue, size 1]--> model thread --[queue, size 1]--> sink thread --> sinks
    (camera, URL, file paced                (Sharpener.process)              (virtual camera, recording,
     at its own fps, frames in memory)                                        preview, null)

A queue that is full when a new frame arrives throws away the frame already waiting in it (the stale one)
instead of blocking the producer: a slow model or sink costs frames, never latency. Every frame carries the
time it was captured; the sink thread records capture-to-sink latency when the frame has been handed to every
sink. The calling thread runs the status line, the preview window (GUI toolkits want the main thread) and
Ctrl-C: a ``KeyboardInterrupt`` stops the threads and closes the sinks, so a recording is finalised.

The command line is ``sharpen --camera ...`` (:mod:`trt_engine.cli`); docs/live.md is the guide.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np

LIVE_EXTRA = "pip install 'image-sharpening-kd[live]'  (or: pip install pyvirtualcam)"
#: Graph operators that do not depend on the frame size: a graph made only of these may be re-shaped.
_SIZE_FREE_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Sigmoid",
        "Tanh",
        "HardSigmoid",
        "HardSwish",
        "Clip",
        "Identity",
        "Cast",
        "Round",
        "Transpose",
        "DepthToSpace",
        "SpaceToDepth",
        "QuantizeLinear",
        "DequantizeLinear",
    }
)


class LiveError(RuntimeError):
    """A live source or sink cannot be opened or used; the message says what to do."""


# ------------------------------------------------------------------------------------------ frames and queues
@dataclass
class Frame:
    image: np.ndarray
    index: int
    captured: float  # time.perf_counter() when the frame was captured (or became due, for file sources)


class LatestQueue:
    """A bounded queue whose ``put`` never blocks: when full it drops the oldest (stalest) item."""

    def __init__(self, maxsize: int = 1) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._items: deque[Any] = deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: Any) -> int:
        """Add ``item``; return how many stale items were dropped to make room (0 or more)."""
        with self._cond:
            dropped = 0
            while len(self._items) >= self._maxsize:
                self._items.popleft()
                dropped += 1
            self._items.append(item)
            self.dropped += dropped
            self._cond.notify()
            return dropped

    def get(self, timeout: float) -> Any | None:
        """The oldest item, or None when nothing arrives within ``timeout`` seconds."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


# ------------------------------------------------------------------------------------------ sources
class Source(Protocol):
    width: int
    height: int
    fps: float
    name: str

    def frames(self, stop: threading.Event) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


def _quiet_opencv() -> Any:
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # pragma: no cover - very old OpenCV
        pass
    return cv2


def _paced(frames: Iterable[np.ndarray], fps: float, stop: threading.Event) -> Iterator[np.ndarray]:
    """Yield each frame when it is due at ``fps`` (frame i at start + i/fps), like a camera would."""
    period = 1.0 / fps
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        delay = start + i * period - time.perf_counter()
        if delay > 0 and stop.wait(delay):
            return
        if stop.is_set():
            return
        yield frame


class CaptureSource:
    """OpenCV capture: a camera index, a device path (``/dev/video2``), a URL, or a video file.

    Files are played in real time (paced at their own frame rate) so that they behave like a camera; cameras
    and URLs deliver at their own pace. ``size=(w, h)`` and ``fps`` request a camera mode (cameras only).
    """

    def __init__(self, spec: str | int, size: tuple[int, int] | None = None, fps: float | None = None):
        cv2 = _quiet_opencv()
        text = str(spec)
        self.kind = "camera"
        self.name = text
        if isinstance(spec, int) or text.isdigit():
            index = int(text)
            if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
                raise LiveError(f"no camera {index}: /dev/video{index} does not exist ({_linux_cameras()})")
            cap = cv2.VideoCapture(index)
            self.name = f"camera {index}"
        elif "://" in text:
            self.kind = "url"
            cap = cv2.VideoCapture(
                text,
                cv2.CAP_FFMPEG,
                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 10000],
            )
        elif text.startswith("/dev/"):
            if not Path(text).exists():
                raise LiveError(f"no camera at {text}: the device does not exist ({_linux_cameras()})")
            cap = cv2.VideoCapture(text, cv2.CAP_V4L2)
        else:
            self.kind = "file"
            if not Path(text).is_file():
                raise LiveError(
                    f"camera source not found: {text} (a camera index, /dev/videoN, a URL or a video file)"
                )
            cap = cv2.VideoCapture(text)
        if not cap.isOpened():
            cap.release()
            raise LiveError(f"cannot open {self.name}: OpenCV could not read it")
        if self.kind != "file":
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver keeps one frame, not a backlog
            if size:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
            if fps:
                cap.set(cv2.CAP_PROP_FPS, fps)
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise LiveError(f"{self.name} delivered no frame")
        self._cap, self._first = cap, first
        self.height, self.width = first.shape[:2]
        reported = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(reported) if reported and 1 <= reported <= 240 else 30.0

    def _read(self, stop: threading.Event) -> Iterator[np.ndarray]:
        yield self._first
        while not stop.is_set():
            ok, frame = self._cap.read()
            if not ok or frame is None:
                if self.kind == "file":
                    return
                raise LiveError(f"{self.name} stopped delivering frames")
            yield frame

    def frames(self, stop: threading.Event) -> Iterator[np.ndarray]:
        if self.kind == "file":
            return _paced(self._read(stop), self.fps, stop)
        return self._read(stop)

    def close(self) -> None:
        self._cap.release()


class ArraySource:
    """Frames from memory played in real time at ``fps`` (looping) for ``seconds``: a camera for benchmarks."""

    def __init__(
        self, frames: list[np.ndarray], fps: float = 30.0, seconds: float = 3.0, name: str = "frames"
    ):
        if not frames:
            raise ValueError("ArraySource needs at least one frame")
        self._frames = frames
        self.height, self.width = frames[0].shape[:2]
        self.fps, self.seconds, self.name = float(fps), float(seconds), name

    def frames(self, stop: threading.Event) -> Iterator[np.ndarray]:
        n = max(1, round(self.seconds * self.fps))
        return _paced((self._frames[i % len(self._frames)] for i in range(n)), self.fps, stop)

    def close(self) -> None:
        pass


def _linux_cameras() -> str:
    found = sorted(str(p) for p in Path("/dev").glob("video*"))
    return "cameras here: " + ", ".join(found) if found else "no /dev/video* devices on this machine"


# ------------------------------------------------------------------------------------------ sinks
class Sink(Protocol):
    name: str

    def send(self, frame: np.ndarray) -> None: ...

    def close(self) -> None: ...


class NullSink:
    """Throws frames away (benchmarks)."""

    name = "null"

    def send(self, frame: np.ndarray) -> None:
        pass

    def close(self) -> None:
        pass


class CallableSink:
    """Any function ``f(frame)`` as a sink."""

    def __init__(self, fn: Callable[[np.ndarray], Any], name: str = "function") -> None:
        self.fn, self.name = fn, name

    def send(self, frame: np.ndarray) -> None:
        self.fn(frame)

    def close(self) -> None:
        pass


def require_pyvirtualcam() -> Any:
    """Import pyvirtualcam or raise :class:`LiveError` naming what to install (no model or camera opened)."""
    try:
        import pyvirtualcam
    except ImportError:
        raise LiveError(f"--virtual-camera needs pyvirtualcam: {LIVE_EXTRA}; see docs/live.md") from None
    return pyvirtualcam


class VirtualCameraSink:
    """A pyvirtualcam camera (v4l2loopback on Linux, OBS Virtual Camera on Windows/macOS), BGR frames."""

    def __init__(self, width: int, height: int, fps: float, device: str | None = None) -> None:
        pyvirtualcam = require_pyvirtualcam()
        try:
            self._cam = pyvirtualcam.Camera(
                width=width, height=height, fps=fps, fmt=pyvirtualcam.PixelFormat.BGR, device=device
            )
        except Exception as exc:  # RuntimeError: no loopback device / OBS not installed
            hint = (
                "load v4l2loopback: sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=Sharpened"
                if sys.platform.startswith("linux")
                else "install OBS Studio (28+) and start its Virtual Camera once"
            )
            raise LiveError(
                f"cannot open a virtual camera ({str(exc).rstrip('. ')}); {hint} (docs/live.md)"
            ) from None
        self.name = f"virtual camera {self._cam.device}"

    def send(self, frame: np.ndarray) -> None:
        self._cam.send(frame)

    def close(self) -> None:
        self._cam.close()


class PreviewSink:
    """An OpenCV window. ``send`` (sink thread) keeps the newest frame; ``pump`` (main thread) shows it."""

    def __init__(self, title: str = "sharpen (q to quit)") -> None:
        cv2 = _quiet_opencv()
        if sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        ):
            raise LiveError(
                "--preview needs a display (DISPLAY/WAYLAND_DISPLAY is not set); use -o FILE or --virtual-camera"
            )
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise LiveError(
                "--preview needs OpenCV with a GUI, but this is a headless build; pip uninstall "
                "opencv-python-headless && pip install opencv-python"
            ) from None
        self._cv2, self.title, self.name = cv2, title, "preview"
        self._latest: np.ndarray | None = None
        self._lock = threading.Lock()
        self.closed_by_user = False

    def send(self, frame: np.ndarray) -> None:
        with self._lock:
            self._latest = frame

    def pump(self) -> bool:
        """Show the newest frame; False when the user pressed q/Esc or closed the window."""
        with self._lock:
            frame, self._latest = self._latest, None
        if frame is not None:
            self._cv2.imshow(self.title, frame)
        key = self._cv2.waitKey(1) & 0xFF
        visible = self._cv2.getWindowProperty(self.title, self._cv2.WND_PROP_VISIBLE) >= 1
        if key in (ord("q"), 27) or not visible:
            self.closed_by_user = True
        return not self.closed_by_user

    def close(self) -> None:
        try:
            self._cv2.destroyWindow(self.title)
        except self._cv2.error:
            pass


class RecordSink:
    """Record to a video file: H.264 with PyAV (timestamps from capture times), else OpenCV mp4v.

    Written to a hidden temporary name beside the target and renamed on :meth:`close`, which also runs on
    Ctrl-C: the recording is always finalised and playable.
    """

    def __init__(self, path: str | Path, fps: float, crf: int = 20, preset: str = "veryfast") -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".mkv", ".mov", ".avi"):
            raise LiveError(f"recording {self.path} needs a video suffix (.mp4, .mkv, .mov or .avi)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=f".tmp{self.path.suffix}", dir=self.path.parent
        )
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a recording gets the usual permissions
        self._tmp = Path(tmp)
        self.fps, self.crf, self.preset = fps, crf, preset
        self.name = f"recording {self.path}"
        self.frames = 0
        self.notes: list[str] = []
        self._writer: Any = None
        self._container: Any = None
        self._stream: Any = None
        self._t0: float | None = None
        self._last_pts = -1
        try:
            import av  # noqa: F401

            self._use_av = True
        except ImportError:
            self._use_av = False
            self.notes.append("PyAV is not installed: recorded with OpenCV's mp4v at a constant frame rate")

    def _open(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if self._use_av:
            import av

            self._container = av.open(str(self._tmp), "w")
            stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            stream.width, stream.height = w - w % 2, h - h % 2
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.options = {"crf": str(self.crf), "preset": self.preset, "tune": "zerolatency"}
            self._stream = stream
        else:
            cv2 = _quiet_opencv()
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise LiveError(f"OpenCV cannot write {self.path}")

    def send(self, frame: np.ndarray, captured: float | None = None) -> None:
        if self._stream is None and self._writer is None:
            self._open(frame)
        if self._writer is not None:
            self._writer.write(frame)
        else:
            import av

            now = time.perf_counter() if captured is None else captured
            if self._t0 is None:
                self._t0 = now
            pts = max(self._last_pts + 1, round((now - self._t0) * 1000))
            self._last_pts = pts
            h, w = self._stream.height, self._stream.width
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format="bgr24")
            picture.pts, picture.time_base = pts, Fraction(1, 1000)
            for packet in self._stream.encode(picture):
                self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        try:
            if self._stream is not None:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
            if self._container is not None:
                self._container.close()
            if self._writer is not None:
                self._writer.release()
            if self.frames:
                os.replace(self._tmp, self.path)
            else:
                self.notes.append(f"nothing recorded: {self.path} not written")
        finally:
            if self._tmp.exists():
                self._tmp.unlink()


# ------------------------------------------------------------------------------------------ the loop
@dataclass
class LiveStats:
    """Counters and latencies of one live run (latencies in seconds, capture to sink)."""

    captured: int = 0
    processed: int = 0
    delivered: int = 0
    dropped: int = 0
    seconds: float = 0.0
    stopped_by: str = "end of source"
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self.latencies, float), q)) if self.latencies else math.nan

    def summary(self) -> dict[str, Any]:
        s = max(self.seconds, 1e-9)
        return {
            "seconds": self.seconds,
            "frames_in": self.captured,
            "frames_out": self.delivered,
            "dropped": self.dropped,
            "in_fps": self.captured / s,
            "out_fps": self.delivered / s,
            "kept": self.delivered / self.captured if self.captured else math.nan,
            "latency_p50_ms": self.percentile(50) * 1e3,
            "latency_p95_ms": self.percentile(95) * 1e3,
            "stopped_by": self.stopped_by,
        }

    def line(self) -> str:
        d = self.summary()
        return (
            f"{d['frames_in']} frames in ({d['in_fps']:.1f} fps), {d['frames_out']} out ({d['out_fps']:.1f} fps), "
            f"{d['dropped']} dropped, latency p50 {d['latency_p50_ms']:.0f} ms p95 {d['latency_p95_ms']:.0f} ms "
            f"over {d['seconds']:.1f} s"
        )


class LiveLoop:
    """Capture -> ``process`` -> sinks on three threads, joined by :class:`LatestQueue` s of ``queue_size``.

    ``process`` is any ``f(frame) -> frame`` (``Sharpener.process``); ``sinks`` get every processed frame that
    was not dropped as stale. :meth:`run` blocks until the source ends, ``duration`` passes, :meth:`stop` is
    called, a preview window is closed, or Ctrl-C; it always closes the sinks and returns :class:`LiveStats`.
    An exception in any thread stops the loop and is re-raised by :meth:`run` after the sinks are closed.
    A frame being sent when the loop stops is finished before the sinks close; none is sent after.
    """

    join_timeout = 5.0  # seconds run() waits for each thread after a stop
    close_wait = 30.0  # seconds run() waits for a sink that is still sending before it closes anyway

    def __init__(
        self,
        source: Source,
        process: Callable[[np.ndarray], np.ndarray],
        sinks: list[Any],
        queue_size: int = 1,
    ) -> None:
        if not 1 <= queue_size <= 2:
            raise ValueError(f"queue_size must be 1 or 2 (more only adds latency), got {queue_size}")
        self.source, self.process = source, process
        self.sinks = [s if hasattr(s, "send") else CallableSink(s) for s in sinks]
        self.stats = LiveStats()
        self._captured = LatestQueue(queue_size)
        self._processed = LatestQueue(queue_size)
        self._stop = threading.Event()
        self._source_done = threading.Event()
        self._model_done = threading.Event()
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._sink_lock = threading.Lock()
        self._sinks_closed = False

    def stop(self) -> None:
        self._stop.set()

    def _fail(self, exc: BaseException) -> None:
        self._errors.append(exc)
        self._stop.set()

    def _capture(self) -> None:
        try:
            for index, image in enumerate(self.source.frames(self._stop)):
                if self._stop.is_set():
                    break
                with self._lock:
                    self.stats.captured += 1
                    self.stats.dropped += self._captured.put(Frame(image, index, time.perf_counter()))
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._source_done.set()

    def _model(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._captured.get(0.05)
                if item is None:
                    if self._source_done.is_set() and not len(self._captured):
                        break
                    continue
                item.image = self.process(item.image)
                with self._lock:
                    self.stats.processed += 1
                    self.stats.dropped += self._processed.put(item)
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._model_done.set()

    def _deliver(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._processed.get(0.05)
                if item is None:
                    if self._model_done.is_set() and not len(self._processed):
                        break
                    continue
                with self._sink_lock:
                    if self._sinks_closed:
                        break
                    for sink in self.sinks:
                        if isinstance(sink, RecordSink):
                            sink.send(item.image, item.captured)
                        else:
                            sink.send(item.image)
                latency = time.perf_counter() - item.captured
                with self._lock:
                    self.stats.delivered += 1
                    self.stats.latencies.append(latency)
        except BaseException as exc:
            self._fail(exc)

    def run(
        self,
        duration: float | None = None,
        status: Callable[[LiveStats], None] | None = None,
        status_every: float = 0.5,
    ) -> LiveStats:
        threads = [
            threading.Thread(target=self._capture, name="live-capture", daemon=True),
            threading.Thread(target=self._model, name="live-model", daemon=True),
            threading.Thread(target=self._deliver, name="live-sink", daemon=True),
        ]
        previews = [s for s in self.sinks if isinstance(s, PreviewSink)]
        start = time.perf_counter()
        next_status = start + status_every
        for t in threads:
            t.start()
        try:
            try:
                while threads[2].is_alive():
                    threads[2].join(0.02 if previews else 0.1)
                    now = time.perf_counter()
                    self.stats.seconds = now - start
                    for p in previews:
                        if not p.pump():
                            self.stats.stopped_by = "preview window closed"
                            self._stop.set()
                    if duration is not None and now - start >= duration and not self._stop.is_set():
                        self.stats.stopped_by = f"--duration {duration:g} s"
                        self._stop.set()
                    if status is not None and now >= next_status:
                        status(self.stats)
                        next_status = now + status_every
            except KeyboardInterrupt:
                self.stats.stopped_by = "Ctrl-C"
            self._stop.set()
            for t in threads:
                t.join(timeout=self.join_timeout)
        finally:
            self._stop.set()
            self.stats.seconds = time.perf_counter() - start
            close_errors = self._close_sinks()
            self.source.close()
        if self._errors:
            raise self._errors[0]
        if close_errors:
            raise close_errors[0]
        return self.stats

    def _close_sinks(self) -> list[Exception]:
        """Close every sink once no frame is mid-send; return the errors instead of raising the first."""
        got_lock = self._sink_lock.acquire(timeout=self.close_wait)
        try:
            self._sinks_closed = True
            errors = []
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception as exc:
                    errors.append(exc)
            return errors
        finally:
            if got_lock:
                self._sink_lock.release()


def status_printer(stream: Any = None) -> Callable[[LiveStats], None] | None:
    """A status-line callback that rewrites one line on ``stream`` (stderr), or None when it is not a TTY."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return None
    last: dict[str, float] = {"t": time.perf_counter(), "in": 0, "out": 0}

    def show(stats: LiveStats) -> None:
        now = time.perf_counter()
        dt = max(now - last["t"], 1e-9)
        fin, fout = (stats.captured - last["in"]) / dt, (stats.delivered - last["out"]) / dt
        last.update(t=now, **{"in": stats.captured, "out": stats.delivered})
        recent = list(stats.latencies)[-60:]
        p50, p95 = (np.percentile(recent, [50, 95]) * 1e3) if recent else (math.nan, math.nan)
        stream.write(
            f"\rlive: in {fin:5.1f} fps | out {fout:5.1f} fps | dropped {stats.dropped} | "
            f"latency p50 {p50:4.0f} ms p95 {p95:4.0f} ms\x1b[K"
        )
        stream.flush()

    return show


# ------------------------------------------------------------------------------------------ model fitting
def _size_free(node: Any, graph: Any) -> bool:
    """Whether ``node`` computes the same thing at any frame size: the ops of :data:`_SIZE_FREE_OPS`, a Pad
    by constant amounts (the reflect padding of a full-resolution filter) and a channel Concat."""
    if node.op_type in _SIZE_FREE_OPS:
        return True
    if node.op_type == "Pad":
        constants = {t.name for t in graph.initializer}
        return len(node.input) >= 2 and node.input[1] in constants
    if node.op_type == "Concat":
        return any(a.name == "axis" and a.i == 1 for a in node.attribute)
    return False


def fit_onnx_to_frame(model: str | Path, height: int, width: int, out_dir: str | Path) -> Path | None:
    """A copy of a fixed-size ONNX model re-shaped for ``height x width`` frames, or None when not possible.

    A student exported at 1920x1080 would otherwise be fed 360p camera frames padded to 1080p: 9x the work.
    Only graphs made entirely of size-independent operators (convolutions, element-wise ops) are re-shaped,
    to the frame size rounded up to the model's size multiple, so the network computed is the same one; any
    other graph, or a frame that is not smaller than the model, gives None (the Sharpener pads as usual).
    """
    from trt_engine.meta import ModelMeta, proto_metadata

    path = Path(model)
    if path.suffix.lower() != ".onnx":
        return None
    try:
        import onnx
    except ImportError:  # not in the runtime-only install: the Sharpener pads instead
        return None
    proto = onnx.load(str(path))
    if len(proto.graph.input) != 1 or not all(_size_free(n, proto.graph) for n in proto.graph.node):
        return None
    if any(a.name == "output_shape" for n in proto.graph.node for a in n.attribute):
        return None
    contract = ModelMeta.from_dict(proto_metadata(proto))
    multiple = contract.multiple
    if multiple <= 1 or not contract.io:
        return None  # unknown size multiple: not safe to re-shape
    nhwc = contract.io == "uint8_nhwc"
    hi, wi = (1, 2) if nhwc else (2, 3)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not (dims[hi].dim_value and dims[wi].dim_value):
        return None  # already dynamic: nothing to do
    th, tw = -(-height // multiple) * multiple, -(-width // multiple) * multiple
    if (
        th * tw >= dims[hi].dim_value * dims[wi].dim_value
        or th > dims[hi].dim_value
        or tw > dims[wi].dim_value
    ):
        return None
    for value in list(proto.graph.input) + list(proto.graph.output):
        d = value.type.tensor_type.shape.dim
        if len(d) == 4:
            d[hi].dim_value, d[wi].dim_value = th, tw
    del proto.graph.value_info[:]
    for prop in proto.metadata_props:
        if prop.key == "kd.height":
            prop.value = str(th)
        elif prop.key == "kd.width":
            prop.value = str(tw)
    out = Path(out_dir) / f"{path.stem}_{th}x{tw}.onnx"
    onnx.save(proto, str(out))
    return out


@contextlib.contextmanager
def sharpener_for_frames(
    model: str | Path,
    height: int,
    width: int,
    *,
    device: str | None = None,
    color: str = "bgr",
    model_color: str | None = None,
    pad: bool = False,
    log: Callable[[str], None] | None = None,
) -> Iterator[Any]:
    """A warmed-up :class:`~trt_engine.Sharpener` for ``height x width`` frames (closed on exit).

    A fixed-size convolutional ONNX larger than the frames is re-shaped to them (:func:`fit_onnx_to_frame`,
    into a temporary folder) unless ``pad``; if the re-shaped copy does not load or run, the original is used
    and frames are padded as usual. ``log`` gets one line saying which happened.
    """
    from trt_engine.sharpener import Sharpener

    model = Path(model)
    warm = np.zeros((height, width, 3), np.uint8)
    with contextlib.ExitStack() as stack:
        sharpener = None
        if not pad:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="sharpen-live-"))
            fitted = fit_onnx_to_frame(model, height, width, tmp)
            if fitted is not None:
                try:
                    sharpener = Sharpener(fitted, device=device, color=color, model_color=model_color)
                    sharpener.process(warm)
                except Exception as exc:
                    if sharpener is not None:
                        sharpener.close()
                    sharpener = None
                    if log:
                        log(
                            f"{model.name} could not be re-shaped to {height}x{width} ({exc}); padding frames"
                        )
                else:
                    if log:
                        log(
                            f"{model.name} is fixed at a larger size; running it re-shaped to {height}x{width} "
                            "(a convolutional graph: the same network without the padding work; --pad-to-model "
                            "to opt out)"
                        )
        if sharpener is None:
            sharpener = Sharpener(model, device=device, color=color, model_color=model_color)
            sharpener.process(warm)
        with sharpener:
            yield sharpener

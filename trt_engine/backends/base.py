"""The one small interface every runtime implements, plus shared uint8 <-> float conversions.

A backend runs *model-ready* batches: ``uint8`` arrays shaped ``N x H x W x 3`` whose size the model accepts
(the :class:`~trt_engine.Sharpener` validates, pads, crops and batches frames before calling it). The backend
owns the channel order swap (``swap_rb``), because each runtime can do it for free in a different place
(OpenCV split/merge order on the host, a flip on the GPU). ``run`` returns a *new* array that no later call
overwrites.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

IO_KINDS = ("float32_nchw", "uint8_nhwc")


@dataclass
class BackendInfo:
    """What a loaded model is and how it runs (``Sharpener.info`` exposes it as a dict)."""

    backend: str
    path: str
    device: str
    precision: str
    io: str
    batch: int | None
    height: int | None
    width: int | None
    multiple: int = 1
    color: str = "rgb"
    providers: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    host_memory: str = "host only (no device copies)"  # how host frames reach the model

    @property
    def fixed_size(self) -> bool:
        return self.height is not None and self.width is not None


class Backend(ABC):
    """Runs uint8 NHWC batches through a model. Subclasses: one per runtime."""

    info: BackendInfo
    swap_rb: bool = False

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """``N x H x W x 3`` uint8 in, a new ``N x H x W x 3`` uint8 array out."""

    def stream(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Run many batches in order; GPU backends override this to overlap copies and compute."""
        for batch in batches:
            yield self.run(batch)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release runtime resources; the backend is unusable afterwards."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_threads() -> int:
    """CPU threads for inference: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_LUT = (np.arange(256, dtype=np.float32) / np.float32(255.0)).reshape(1, 256)


class PlaneBuffers:
    """Three reusable uint8 colour planes for the host conversions.

    A 1080p frame passes through several multi-megabyte temporaries; allocated afresh per frame, glibc hands
    them back to the kernel and every frame pays page faults for them again (measured: ~10 ms of a 40 ms frame
    on a 2-core CPU). A backend keeps one of these and passes it to every conversion.
    """

    def __init__(self) -> None:
        self._planes: list[np.ndarray] = []
        self._float: np.ndarray | None = None

    def get(self, height: int, width: int) -> list[np.ndarray]:
        if not self._planes or self._planes[0].shape != (height, width):
            self._planes = [np.empty((height, width), np.uint8) for _ in range(3)]
        return self._planes

    def float_plane(self, height: int, width: int) -> np.ndarray:
        """One reusable float32 plane (scratch for :func:`add_depth_to_space_u8`)."""
        if self._float is None or self._float.shape != (height, width):
            self._float = np.empty((height, width), np.float32)
        return self._float


def nhwc_u8_to_nchw_f32(
    batch: np.ndarray,
    out: np.ndarray | None = None,
    swap_rb: bool = False,
    buffers: PlaneBuffers | None = None,
    pool: Executor | None = None,
    parts: int = 1,
) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW in [0, 1] (exactly ``x / 255``), optionally swapping R and B.

    Uses OpenCV's split + lookup table per plane (about 4x faster than numpy at 1080p). With ``out`` and
    ``buffers`` reused across calls it allocates nothing. With a thread ``pool``, ``parts`` horizontal strips
    are converted concurrently (OpenCV releases the GIL).
    """
    import cv2

    n, h, w, _ = batch.shape
    if out is None or out.shape != (n, 3, h, w) or out.dtype != np.float32:
        out = np.empty((n, 3, h, w), np.float32)
    work = (buffers or PlaneBuffers()).get(h, w)
    for i in range(n):
        frame, planes_out = np.ascontiguousarray(batch[i]), out[i]

        def convert(y0: int, y1: int, frame: np.ndarray = frame, planes_out: np.ndarray = planes_out) -> None:
            planes = cv2.split(frame[y0:y1], [plane[y0:y1] for plane in work])
            for c, plane in enumerate(planes[::-1] if swap_rb else planes):
                cv2.LUT(plane, _LUT, dst=planes_out[c, y0:y1])

        _in_strips(convert, h, pool, parts)
    return out


def _in_strips(work: Callable[[int, int], None], rows: int, pool: Executor | None, parts: int) -> None:
    """``work(y0, y1)`` for ``parts`` horizontal strips that cover ``rows`` rows, concurrently on ``pool``."""
    count = max(1, min(parts, rows))
    strips = list(pairwise(rows * k // count for k in range(count + 1)))
    if pool is None or count == 1:
        for y0, y1 in strips:
            work(y0, y1)
        return
    for done in [pool.submit(work, y0, y1) for y0, y1 in strips]:
        done.result()


def nchw_f32_to_nhwc_u8(
    x: np.ndarray,
    swap_rb: bool = False,
    buffers: PlaneBuffers | None = None,
    overwrite: bool = False,
    pool: Executor | None = None,
    parts: int = 1,
) -> np.ndarray:
    """float NCHW in [0, 1] -> new uint8 NHWC array: clip, x*255, round half to even (like ``torch.round``).

    ``overwrite=True`` lets it clip ``x`` in place (for a scratch output buffer the caller reuses). With a
    thread ``pool``, ``parts`` horizontal strips are converted concurrently.
    """
    import cv2

    n, c, h, w = x.shape
    if c != 3:
        raise ValueError(f"model output has {c} channels, expected 3")
    out = np.empty((n, h, w, 3), np.uint8)
    levels = (buffers or PlaneBuffers()).get(h, w)
    for i in range(n):
        planes = [x[i, ch] for ch in range(3)]
        if not (overwrite and all(p.flags.c_contiguous and p.dtype == np.float32 for p in planes)):
            planes = [np.array(p, dtype=np.float32, order="C") for p in planes]  # private copies to clip
        frame = out[i]

        def convert(y0: int, y1: int, planes: list[np.ndarray] = planes, frame: np.ndarray = frame) -> None:
            strip_levels = [level[y0:y1] for level in levels]
            for plane, level in zip(planes, strip_levels, strict=True):
                _quantize(plane[y0:y1], level)
            cv2.merge(strip_levels[::-1] if swap_rb else strip_levels, dst=frame[y0:y1])

        _in_strips(convert, h, pool, parts)
    return out


def _quantize(plane: np.ndarray, level: np.ndarray) -> None:
    """uint8 ``level`` = round-half-even(clip(``plane``, 0, 1) * 255); ``plane`` (float32, contiguous) is clipped
    in place."""
    import cv2

    # Negative values and NaN -> 0 (cv2.max returns the scalar for NaN; OpenCV 5's threshold keeps NaN, which
    # convertScaleAbs would saturate to 255); convertScaleAbs saturates above 255 and rounds half to even.
    cv2.max(plane, 0.0, dst=plane)
    cv2.convertScaleAbs(plane, dst=level, alpha=255.0)


def add_depth_to_space_u8(
    residual: np.ndarray,
    image: np.ndarray,
    block: int,
    mode: str = "CRD",
    swap_rb: bool = False,
    buffers: PlaneBuffers | None = None,
    pool: Executor | None = None,
    parts: int = 1,
) -> np.ndarray:
    """New uint8 NHWC frames ``image + DepthToSpace(residual)``, quantised like :func:`nchw_f32_to_nhwc_u8`.

    ``residual`` is float32 ``N x 3*block*block x H/block x W/block`` (ONNX ``DepthToSpace`` layout ``mode``:
    ``"CRD"``, channel = colour * block^2 + row * block + column, or ``"DCR"``, channel = (row * block + column)
    * 3 + colour); ``image`` is float32 ``N x 3 x H x W``. The result is bit-identical to running ``Add(image,
    DepthToSpace(residual))`` in the graph and converting its output, but several times cheaper on a CPU:
    onnxruntime's ``DepthToSpace`` is a single-threaded element-by-element transpose (~14 ms for a 1080p frame
    on a 2-core CPU), while here each row phase of each colour is one SIMD ``cv2.merge`` of ``block`` planes
    written straight into its rows of the frame. With a thread ``pool``, ``parts`` horizontal strips run
    concurrently (OpenCV releases the GIL): ~8 ms for all of it at 1080p on 2 cores.
    """
    n, c, h, w = image.shape
    if c != 3 or residual.shape != (n, 3 * block * block, h // block, w // block) or h % block or w % block:
        raise ValueError(
            f"residual {residual.shape} does not fill image {image.shape} with DepthToSpace blocks of {block}"
        )
    if mode not in ("CRD", "DCR"):
        raise ValueError(f"DepthToSpace mode must be 'CRD' or 'DCR', got {mode!r}")
    import cv2

    store = buffers or PlaneBuffers()
    levels, full = store.get(h, w), store.float_plane(h, w)
    out = np.empty((n, h, w, 3), np.uint8)
    low = h // block
    for i in range(n):
        r = np.ascontiguousarray(residual[i], dtype=np.float32)
        cells = r.reshape(3, block, block, low, w // block)
        if mode == "DCR":
            cells = r.reshape(block, block, 3, low, w // block).transpose(2, 0, 1, 3, 4)
        picture, frame = np.ascontiguousarray(image[i], dtype=np.float32), out[i]

        def strip(
            y0: int,
            y1: int,
            cells: np.ndarray = cells,
            picture: np.ndarray = picture,
            frame: np.ndarray = frame,
        ) -> None:
            top, bottom = y0 * block, y1 * block
            scratch = full[top:bottom]
            rows = scratch.reshape(y1 - y0, block, -1, block)  # [low row, row in block, low column, column]
            strip_levels = [level[top:bottom] for level in levels]
            for ch in range(3):
                # one merge interleaves the block's columns into every full-resolution row of phase `row`
                for row in range(block):
                    cv2.merge([cells[ch, row, col, y0:y1] for col in range(block)], dst=rows[:, row])
                cv2.add(scratch, picture[ch, top:bottom], dst=scratch)
                _quantize(scratch, strip_levels[ch])
            cv2.merge(strip_levels[::-1] if swap_rb else strip_levels, dst=frame[top:bottom])

        _in_strips(strip, low, pool, parts)
    return out


def swap_rb_batch(batch: np.ndarray) -> np.ndarray:
    """A new contiguous uint8 NHWC batch with R and B swapped (OpenCV's SIMD colour conversion)."""
    import cv2

    out = np.empty(batch.shape, np.uint8)
    for i in range(batch.shape[0]):
        cv2.cvtColor(np.ascontiguousarray(batch[i]), cv2.COLOR_BGR2RGB, dst=out[i])
    return out

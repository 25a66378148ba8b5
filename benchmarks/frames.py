"""Where benchmark frames come from, and the synthetic camera-motion clip for the video check.

Evaluation frames (1920x1080 RGB uint8), first source that has images wins, and the report says which:
1. an explicit folder (``--frames DIR``): it must contain images, else :class:`BenchInputError`;
2. ``cache_dir()/photos/val/*.png`` (the offline photo pool, see ``kd-data photos``);
3. the bundled ``kd_trainer/assets/samples/sample_1080p.png``;
4. photos from ``skimage.data`` upscaled to 1080p (smooth "ground truth": a weaker test, said in the report).

Tuning frames for the unsharp-mask baseline never overlap the evaluation frames: an explicit folder,
else ``cache_dir()/photos/train``, else ``skimage.data`` photos not used for evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from kd_trainer.io import ImageReadError, list_images, read_image
from kd_trainer.paths import SAMPLES_DIR, cache_dir

FRAME_H, FRAME_W = 1080, 1920

#: skimage.data colour photos used when nothing better exists; evaluation and tuning never share one.
SKIMAGE_EVAL = ("astronaut", "coffee", "chelsea")
SKIMAGE_TUNE = ("rocket", "hubble_deep_field", "immunohistochemistry", "retina")


class BenchInputError(ValueError):
    """Input the benchmark cannot use (missing files, empty folders, wrong models); the message says why."""


@dataclass
class FrameSet:
    """Frames plus a human-readable note on where they came from."""

    frames: list[np.ndarray]
    names: list[str]
    source: str
    kind: str  # "photos", "sample", "skimage-upscaled", "folder"
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, object]:
        return {
            "source": self.source,
            "kind": self.kind,
            "count": len(self.frames),
            "names": self.names,
            "notes": self.notes,
        }


def fit_1080p(img: np.ndarray, height: int = FRAME_H, width: int = FRAME_W) -> np.ndarray:
    """Scale to cover ``width`` x ``height`` (area when shrinking, cubic when enlarging), then centre-crop."""
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return np.ascontiguousarray(img)
    scale = max(height / h, width / w)
    nh, nw = max(height, int(math.ceil(h * scale))), max(width, int(math.ceil(w * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(img, (nw, nh), interpolation=interp)
    y0, x0 = (nh - height) // 2, (nw - width) // 2
    return np.ascontiguousarray(resized[y0 : y0 + height, x0 : x0 + width])


def _read_folder(
    folder: Path, count: int, label: str, spread: bool = False
) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Up to ``count`` readable images of ``folder`` (sorted; ``spread``: evenly spaced over the folder)."""
    try:
        paths = list_images(folder)
    except FileNotFoundError:
        raise BenchInputError(f"{label} folder not found: {folder}") from None
    if not paths:
        raise BenchInputError(f"{label} folder {folder} contains no images (.png/.jpg/...)")
    if spread and len(paths) > count:
        step = len(paths) / count
        picked = [paths[int(i * step)] for i in range(count)]
        paths = picked + [p for p in paths if p not in picked]  # the rest only replaces unreadable ones
    frames, names, notes = [], [], []
    for p in paths:
        if len(frames) >= count:
            break
        try:
            img = read_image(p)
        except ImageReadError as exc:
            notes.append(f"skipped unreadable image: {exc}")
            continue
        if img.shape[:2] != (FRAME_H, FRAME_W):
            notes.append(f"{p.name}: {img.shape[1]}x{img.shape[0]} scaled/cropped to {FRAME_W}x{FRAME_H}")
        frames.append(fit_1080p(img))
        names.append(p.name)
    if not frames:
        raise BenchInputError(f"{label} folder {folder}: none of its {len(paths)} images could be read")
    return frames, names, notes


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def photo_pool_dir(split: str) -> Path:
    return cache_dir() / "photos" / split


def eval_frames(count: int, folder: str | Path | None = None) -> FrameSet:
    """Up to ``count`` 1080p evaluation frames from the first available source (see the module docstring)."""
    if count < 1:
        raise ValueError("count must be >= 1")
    if folder is not None:
        frames, names, notes = _read_folder(Path(folder), count, "evaluation frames")
        return FrameSet(frames, names, str(folder), "folder", notes)
    val = photo_pool_dir("val")
    if val.is_dir() and list_images(val):
        frames, names, notes = _read_folder(val, count, "validation photos")
        return FrameSet(frames, names, str(val), "photos", notes)
    sample = SAMPLES_DIR / "sample_1080p.png"
    if sample.is_file():
        img = read_image(sample)
        notes = [] if img.shape[:2] == (FRAME_H, FRAME_W) else [f"sample scaled to {FRAME_W}x{FRAME_H}"]
        if count > 1:
            notes.append(f"only one bundled sample frame exists; {count} were asked for")
        return FrameSet([fit_1080p(img)], [sample.name], str(sample), "sample", notes)
    names = list(SKIMAGE_EVAL[:count])
    frames = [fit_1080p(_skimage_photo(n)) for n in names]
    note = (
        "no 1080p photos found (no cache photos/val, no bundled sample): skimage.data photos upscaled to 1080p "
        "with bicubic interpolation; their 'ground truth' is smooth, so absolute figures are optimistic"
    )
    return FrameSet(frames, names, "skimage.data", "skimage-upscaled", [note])


def tuning_images(count: int, folder: str | Path | None = None, eval_set: FrameSet | None = None) -> FrameSet:
    """Images for tuning the unsharp mask (and calibrating int8), disjoint from the evaluation frames.

    Returned at native resolution (tuning works on crops); photo-pool images larger than 1080p are scaled
    to fit 1080p so their detail statistics match the evaluation frames.
    """
    eval_names = set(eval_set.names) if eval_set is not None else set()
    if folder is not None:
        frames, names, notes = _read_folder(Path(folder), count, "tuning images")
        if eval_set is not None and eval_set.kind == "folder" and Path(folder) == Path(eval_set.source):
            raise BenchInputError(
                "tuning images must not be the evaluation frames; pass a different --tune-frames"
            )
        return FrameSet(frames, names, str(folder), "folder", notes)
    train = photo_pool_dir("train")
    if train.is_dir() and list_images(train):
        frames, names, notes = _read_folder(train, count, "training photos", spread=True)
        return FrameSet(frames, names, str(train), "photos", notes)
    names = [n for n in SKIMAGE_TUNE if n not in eval_names][:count]
    frames = [_skimage_photo(n) for n in names]
    return FrameSet(frames, names, "skimage.data", "skimage", ["skimage.data photos at native resolution"])


def crops(img: np.ndarray, size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` random ``size`` x ``size`` crops (the whole image, padded by reflection, if it is smaller)."""
    h, w = img.shape[:2]
    if h < size or w < size:
        img = cv2.copyMakeBorder(img, 0, max(0, size - h), 0, max(0, size - w), cv2.BORDER_REFLECT_101)
        h, w = img.shape[:2]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        out.append(np.ascontiguousarray(img[y : y + size, x : x + size]))
    return out


def detail_crop_box(img: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` x ``size`` window with the most gradient energy (for crop grids)."""
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    energy = np.abs(cv2.Laplacian(gray, cv2.CV_32F))
    box = cv2.boxFilter(energy, -1, (size, size), normalize=True, borderType=cv2.BORDER_CONSTANT)
    h, w = gray.shape
    half = size // 2
    valid = box[half : h - size + half + 1, half : w - size + half + 1]
    if valid.size == 0:
        return 0, 0
    y, x = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(y), int(x)


# ----------------------------------------------------------------------------------------- video clip
def synth_clip(
    photo: np.ndarray, frames: int, height: int = FRAME_H, width: int = FRAME_W, seed: int = 0
) -> list[np.ndarray]:
    """A ``frames``-long clip with camera motion over a still photo, like a webcam on a laptop: a slow pan
    (~2.5 px/frame right, ~0.8 px/frame down), a slow zoom-in, a slight roll and handheld jitter (random walk).

    Each frame is an affine warp (Lanczos) of the photo, zoomed >= 1.08x so the window stays inside it.
    """
    if frames < 2:
        raise ValueError("a clip needs at least 2 frames")
    src = fit_1080p(photo, height, width)
    rng = np.random.default_rng(seed)
    jitter = np.cumsum(rng.normal(0.0, 0.35, (frames, 2)), axis=0)
    out = []
    for t in range(frames):
        zoom = min(1.08 + 0.0015 * t, 1.2)
        cx = width / 2 + 2.5 * (t - frames / 2) + jitter[t, 0]
        cy = height / 2 + 0.8 * (t - frames / 2) + jitter[t, 1]
        angle = 0.4 * math.sin(t / 15.0)
        m = cv2.getRotationMatrix2D((cx, cy), angle, zoom)
        m[:, 2] += (width / 2 - cx, height / 2 - cy)
        out.append(
            cv2.warpAffine(
                src, m, (width, height), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT_101
            )
        )
    return out


def read_clip(path: str | Path, max_frames: int) -> tuple[list[np.ndarray], float]:
    """Decode up to ``max_frames`` frames of a video with PyAV using the project's accurate BT.709 conversion.

    Returns RGB uint8 frames fitted to 1080p and the stream's frame rate.
    """
    from kd_trainer.degrade import yuv420_to_rgb

    try:
        import av
    except ImportError as exc:
        raise BenchInputError("reading a video needs PyAV: pip install 'image-sharpening-kd[video]'") from exc
    p = Path(path)
    if not p.is_file():
        raise BenchInputError(f"video not found: {p}")
    out: list[np.ndarray] = []
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise BenchInputError(f"{p} has no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or 30)
            for frame in container.decode(stream):
                if frame.format.name != "yuv420p" or frame.width % 2 or frame.height % 2:
                    rgb = frame.to_ndarray(format="rgb24")
                else:
                    rgb = yuv420_to_rgb(*unpack_yuv420(frame.to_ndarray(), frame.height, frame.width))
                out.append(fit_1080p(rgb))
                if len(out) >= max_frames:
                    break
    except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
        raise BenchInputError(f"cannot decode video {p}: {exc}") from exc
    if len(out) < 2:
        raise BenchInputError(f"video {p} has fewer than 2 decodable frames")
    return out, rate


def unpack_yuv420(arr: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyAV's flat yuv420p array -> (Y, U, V) planes."""
    flat = np.ascontiguousarray(arr).reshape(-1)
    n, c = h * w, (h // 2) * (w // 2)
    return (
        flat[:n].reshape(h, w),
        flat[n : n + c].reshape(h // 2, w // 2),
        flat[n + c : n + 2 * c].reshape(h // 2, w // 2),
    )


def find_sample_clip() -> Path | None:
    """A real clip bundled with the package, if one exists."""
    if not SAMPLES_DIR.is_dir():
        return None
    for suffix in (".mp4", ".mkv", ".mov", ".webm", ".avi"):
        found = sorted(SAMPLES_DIR.glob(f"*{suffix}"))
        if found:
            return found[0]
    return None


def iter_batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]

"""Safe file I/O: atomic writes and image reading with errors that name the file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(ValueError):
    """An image file is missing, empty, corrupt or not a 3-channel picture."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash or kill inside the block leaves any previous file at ``path`` untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; final files get the usual permissions
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as an HxWx3 uint8 RGB array (16-bit is scaled, alpha dropped, grey expanded)."""
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"image not found: {p}")
    if p.stat().st_size == 0:
        raise ImageReadError(f"image file is empty: {p}")
    data = np.fromfile(p, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(f"cannot decode image (corrupt or unsupported format): {p}")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageReadError(f"unsupported image dtype {img.dtype} in {p}; expected 8- or 16-bit")
    img = apply_orientation(img, exif_orientation(data.tobytes()))
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise ImageReadError(f"unsupported channel count {img.shape[2]} in {p}")
    return np.ascontiguousarray(img)


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1-8) of a JPEG's or PNG's bytes; 1 (upright) when absent or unreadable.

    ``cv2.IMREAD_UNCHANGED`` ignores the tag, and phones store portrait photos sideways with it set.
    """
    import struct

    try:
        if data[:2] == b"\xff\xd8":  # JPEG: segments until the scan starts; EXIF lives in APP1
            pos = 2
            while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] != 0xDA:
                size = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
                if data[pos + 1] == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
                    return _tiff_orientation(data[pos + 10 : pos + 2 + size])
                pos += 2 + size
        elif data[:8] == b"\x89PNG\r\n\x1a\n":  # PNG: an eXIf chunk holds the TIFF block directly
            pos = 8
            while pos + 8 <= len(data):
                size, kind = struct.unpack(">I4s", data[pos : pos + 8])
                if kind == b"eXIf":
                    return _tiff_orientation(data[pos + 8 : pos + 8 + size])
                if kind in (b"IDAT", b"IEND"):
                    break
                pos += 12 + size
    except (struct.error, IndexError):
        pass
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    """Tag 0x0112 of the first IFD of a TIFF/EXIF block (1 when absent or malformed)."""
    import struct

    endian = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(endian + "I", tiff[4:8])
    (count,) = struct.unpack(endian + "H", tiff[ifd : ifd + 2])
    for i in range(min(count, 512)):
        entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        tag, kind = struct.unpack(endian + "HH", entry[:4])
        if tag == 0x0112 and kind == 3:
            (value,) = struct.unpack(endian + "H", entry[8:10])
            return int(value) if 1 <= value <= 8 else 1
    return 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn ``img`` upright per an EXIF orientation value (1-8)."""
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: transpose first
        img = cv2.rotate(
            img, cv2.ROTATE_90_CLOCKWISE if orientation in (5, 6) else cv2.ROTATE_90_COUNTERCLOCKWISE
        )
    flip = {2: 1, 3: -1, 4: 0, 5: 1, 7: 1}.get(orientation)
    return cv2.flip(img, flip) if flip is not None else img


def write_image(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    """Write an HxWx3 uint8 RGB array atomically; the format follows the suffix."""
    p = Path(path)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"write_image expects HxWx3 uint8, got shape {rgb.shape} dtype {rgb.dtype}")
    suffix = p.suffix.lower() or ".png"
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode image with suffix {suffix!r}: {p}")
    atomic_write_bytes(p, buf.tobytes())
    return p


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Sorted image files directly inside ``folder``."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"not a directory: {root}")
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

"""Named, seeded degradation pipelines that model a video call over a poor link, and BT.709 yuv420 packing.

Part of the runtime because ``sharpen --demo`` and int8 calibration (``build-engine --calib-preset``) make
model inputs with them; the trainer's training mixture lives in :mod:`kd_trainer.degrade`.

The sender's camera blurs (Gaussian, slight motion) and adds sensor noise, the sender downscales
(540p/360p), a codec quantises (H.264 when PyAV is installed, else JPEG), and the receiver upscales back.
Every preset is a function ``(rgb_uint8, rng) -> (rgb_uint8, params)``; :func:`degrade` runs one by name
with a seed, so the same (image, preset, seed) always gives the same frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

Params = dict[str, Any]
Preset = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, Params]]


# ---------------------------------------------------------------- primitive operations (uint8 RGB in/out)
def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def motion_blur(img: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    """Linear motion blur of ``length`` pixels at ``angle_deg``."""
    if length <= 1:
        return img
    size = length if length % 2 else length + 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, length * 4):
        kernel[int(round(c + t * dy)), int(round(c + t * dx))] += 1.0
    kernel /= kernel.sum()
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def add_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    if sigma <= 0:
        return img
    return _to_u8(img.astype(np.float32) + rng.normal(0.0, sigma, img.shape).astype(np.float32))


def resize_down_up(
    img: np.ndarray, factor: float, up: int = cv2.INTER_LINEAR
) -> tuple[np.ndarray, tuple[int, int]]:
    """Downscale by ``factor`` (area), return it and the small size; see :func:`upscale`."""
    h, w = img.shape[:2]
    sw, sh = max(2, int(round(w / factor))) // 2 * 2, max(2, int(round(h / factor))) // 2 * 2
    return cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA), (w, h)


def upscale(img: np.ndarray, size: tuple[int, int], interp: int = cv2.INTER_LINEAR) -> np.ndarray:
    return cv2.resize(img, size, interpolation=interp)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# BT.709 limited range, with our own exact matrices both ways (ffmpeg's default path is biased).
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB


def rgb_to_yuv420(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 RGB (even H, W) -> limited-range BT.709 planes Y (H,W), U and V (H/2,W/2), uint8."""
    x = img.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = _KR * r + _KG * g + _KB * b
    u = (b - y) / (2 * (1 - _KB))
    v = (r - y) / (2 * (1 - _KR))
    h, w = y.shape
    u = u.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    v = v.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return _to_u8(16 + 219 * y), _to_u8(128 + 224 * u), _to_u8(128 + 224 * v)


def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_yuv420` (chroma upsampled bilinearly)."""
    h, w = y.shape
    yf = (y.astype(np.float32) - 16) / 219
    uf = cv2.resize((u.astype(np.float32) - 128) / 224, (w, h), interpolation=cv2.INTER_LINEAR)
    vf = cv2.resize((v.astype(np.float32) - 128) / 224, (w, h), interpolation=cv2.INTER_LINEAR)
    r = yf + 2 * (1 - _KR) * vf
    b = yf + 2 * (1 - _KB) * uf
    g = (yf - _KR * r - _KB * b) / _KG
    return _to_u8(np.stack([r, g, b], axis=-1) * 255)


def has_h264() -> bool:
    """True when PyAV with an H.264 encoder is importable."""
    try:
        import av

        av.codec.Codec("libx264", "w")
    except Exception:
        return False
    return True


def h264(img: np.ndarray, crf: int) -> np.ndarray:
    """One frame through libx264 (intra, zerolatency) and back, colour handled by our BT.709 matrices."""
    import av

    h, w = img.shape[:2]
    ph, pw = h + (-h) % 16, w + (-w) % 16  # whole macroblocks; planar layout needs H % 4 == 0
    padded = np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge") if (ph, pw) != (h, w) else img
    y, u, v = rgb_to_yuv420(padded)
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = pw, ph, "yuv420p"
    enc.options = {"crf": str(int(crf)), "preset": "veryfast", "tune": "zerolatency"}
    frame = av.VideoFrame.from_ndarray(
        np.concatenate([y, u.reshape(-1, pw), v.reshape(-1, pw)]), format="yuv420p"
    )
    packets = list(enc.encode(frame)) + list(enc.encode(None))
    dec = av.CodecContext.create("h264", "r")
    decoded = [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))
    if not decoded:
        raise RuntimeError("H.264 round trip produced no frame")
    planes = decoded[0].to_ndarray()
    y2 = planes[:ph]
    u2 = planes[ph : ph + ph // 4].reshape(ph // 2, pw // 2)
    v2 = planes[ph + ph // 4 :].reshape(ph // 2, pw // 2)
    return yuv420_to_rgb(y2, u2, v2)[:h, :w]


# ---------------------------------------------------------------- presets
def _fixed(fn: Callable[[np.ndarray], np.ndarray], **params: Any) -> Preset:
    def preset(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
        return fn(img), dict(params)

    return preset


def _down_up(img: np.ndarray, factor: float) -> np.ndarray:
    small, size = resize_down_up(img, factor)
    return upscale(small, size)


def _h264_down_up(img: np.ndarray, factor: float, crf: int) -> np.ndarray:
    small, size = resize_down_up(img, factor)
    return upscale(h264(small, crf), size)


def _noise_preset(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    return add_noise(img, 5.0, rng), {"noise_sigma": 5.0}


def call_preset(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    """A random poor video call: camera blur, motion, noise, downscale, codec, upscale."""
    p: Params = {"sigma": float(rng.uniform(0.5, 1.5))}
    out = gaussian_blur(img, p["sigma"])
    if rng.random() < 0.3:
        p["motion_len"], p["motion_angle"] = int(rng.integers(3, 8)), float(rng.uniform(0, 180))
        out = motion_blur(out, p["motion_len"], p["motion_angle"])
    if rng.random() < 0.5:
        p["noise_sigma"] = float(rng.uniform(1.0, 4.0))
        out = add_noise(out, p["noise_sigma"], rng)
    p["downscale"] = float(rng.uniform(1.5, 3.0))
    small, size = resize_down_up(out, p["downscale"])
    if has_h264() and rng.random() < 0.5:
        p["codec"], p["crf"] = "h264", int(rng.integers(30, 41))
        small = h264(small, p["crf"])
    else:
        p["codec"], p["jpeg_quality"] = "jpeg", int(rng.integers(20, 61))
        small = jpeg(small, p["jpeg_quality"])
    return upscale(small, size), p


def light_preset(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    """Nearly clean frames: the student must leave these (almost) alone."""
    choice = int(rng.integers(0, 3))
    if choice == 0:
        return img.copy(), {"kind": "clean"}
    if choice == 1:
        q = int(rng.integers(80, 96))
        return jpeg(img, q), {"kind": "jpeg", "jpeg_quality": q}
    s = float(rng.uniform(0.2, 0.4))
    return gaussian_blur(img, s), {"kind": "gauss", "sigma": s}


PRESETS: dict[str, Preset] = {
    "clean": _fixed(lambda x: x.copy()),
    "gauss0.5": _fixed(lambda x: gaussian_blur(x, 0.5), sigma=0.5),
    "gauss1.5": _fixed(lambda x: gaussian_blur(x, 1.5), sigma=1.5),
    "downup2": _fixed(lambda x: _down_up(x, 2.0), downscale=2.0),
    "jpeg30": _fixed(lambda x: jpeg(x, 30), jpeg_quality=30),
    "motion9": _fixed(lambda x: motion_blur(x, 9, 0.0), motion_len=9, motion_angle=0.0),
    "noise5": _noise_preset,
    "h264-540p": _fixed(lambda x: _h264_down_up(x, 2.0, 35), downscale=2.0, crf=35),
    "call": call_preset,
    "light": light_preset,
}

#: Presets reported in evaluations, one figure each (never only the average).
EVAL_PRESETS = ("gauss0.5", "gauss1.5", "downup2", "jpeg30", "motion9", "noise5", "h264-540p", "call")


def available_presets() -> list[str]:
    """Preset names usable here (``h264-540p`` needs PyAV with libx264)."""
    return [n for n in PRESETS if n != "h264-540p" or has_h264()]


def degrade_with_params(
    img: np.ndarray, preset: str = "call", seed: int | None = 0
) -> tuple[np.ndarray, Params]:
    """Apply preset ``preset`` with RNG ``seed`` to an HxWx3 uint8 RGB image; return image and parameters."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"degrade expects an HxWx3 uint8 image, got shape {img.shape} dtype {img.dtype}")
    if preset not in PRESETS:
        raise KeyError(f"unknown degradation preset {preset!r}; known: {', '.join(PRESETS)}")
    if preset == "h264-540p" and not has_h264():
        raise RuntimeError(
            "preset 'h264-540p' needs PyAV with libx264: pip install 'image-sharpening-kd[video]'"
        )
    out, params = PRESETS[preset](img, np.random.default_rng(seed))
    return np.ascontiguousarray(out), {"preset": preset, **params}


def degrade(img: np.ndarray, preset: str = "call", seed: int | None = 0) -> np.ndarray:
    """Like :func:`degrade_with_params`, image only."""
    return degrade_with_params(img, preset, seed)[0]

"""Randomised video-call degradation chains, and the held-out test families.

A call degrades a frame in steps, and real pipelines differ in every step: the sender's camera blurs,
shakes, adds noise or over-sharpens; the sender down-scales (1.5-3x) with some scaler; a codec quantises
(H.264 in one of several rate-control modes and presets, VP8, JPEG for stills, or nothing); the receiver
up-scales with its own scaler. :class:`Chain` is one such pipeline with every step's variant spelled out,
:func:`sample_train_chain` draws one for training with every step's variant randomised, and a share of
training chains is *clean* (the target is the input itself), so the student learns to leave good frames alone.

Test families (:data:`TEST_FAMILIES`) use step variants that training never draws, so a score on them says
how the student handles pipelines it never saw:

* scalers: Pillow's antialiased Lanczos-3 down-scale, Pillow's bicubic (Catmull-Rom, a = -0.5) and
  Lanczos-3 up-scales (training uses OpenCV's area/bilinear/bicubic (a = -0.75)/Lanczos-4/nearest, and with
  ``scalers="wide"`` also resampling kernels of our own, :data:`KERNEL_SCALERS`: antialiased Gaussian and
  sharp-cubic down-scales, Mitchell, Hermite, B-spline and sharp-cubic up-scales);
* codecs: x264 in average-bitrate mode with the ``medium`` preset over an 8-frame clip with camera motion
  (training uses constant-rate-factor mode, faster presets and clips of at most 4 frames), and VP8 (libvpx),
  which training never sees;
* noise: luma-heavy sensor noise added in YUV (training adds RGB Gaussian and signal-dependent noise);
* stills: Pillow's JPEG encoder without chroma subsampling (training uses OpenCV's 4:2:0 encoder).

Everything is seeded: the same (image, chain, seed) always gives the same frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import cv2
import numpy as np
from PIL import Image

from kd_trainer.degrade import (
    add_noise,
    gaussian_blur,
    has_h264,
    jpeg,
    motion_blur,
    rgb_to_yuv420,
    yuv420_to_rgb,
)

#: OpenCV scalers used in training (name -> cv2 flag).
CV2_SCALERS = {
    "area": cv2.INTER_AREA,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
    "nearest": cv2.INTER_NEAREST,
}
#: Pillow scalers, kept out of training (name -> PIL filter).
PIL_SCALERS = {
    "pil-bicubic": Image.Resampling.BICUBIC,
    "pil-lanczos": Image.Resampling.LANCZOS,
    "pil-bilinear": Image.Resampling.BILINEAR,
}
TRAIN_DOWN_SCALERS = ("area", "bilinear", "bicubic")
TRAIN_UP_SCALERS = ("bilinear", "bicubic", "lanczos", "area", "nearest")


def _bc_cubic(b: float, c: float) -> Callable[[np.ndarray], np.ndarray]:
    """The Mitchell-Netravali family of cubic kernels (B, C), as a function of the distance |x|."""

    def kernel(x: np.ndarray) -> np.ndarray:
        near = ((12 - 9 * b - 6 * c) * x**3 + (-18 + 12 * b + 6 * c) * x**2 + (6 - 2 * b)) / 6
        far = ((-b - 6 * c) * x**3 + (6 * b + 30 * c) * x**2 + (-12 * b - 48 * c) * x + (8 * b + 24 * c)) / 6
        return np.where(x < 1, near, np.where(x < 2, far, 0.0))

    return kernel


def _gaussian(x: np.ndarray) -> np.ndarray:
    return np.exp(-(x**2) / (2 * 0.5**2))


#: Resampling kernels of our own (name -> (kernel of |x|, support)): scalers that video players, GPU drivers and
#: image tools use besides OpenCV's. Down-scaling with them is antialiased (the kernel is stretched by the
#: factor, as Pillow and most video tools do; OpenCV's bilinear and bicubic sample without a low-pass, so they
#: alias).
KERNEL_SCALERS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    "mitchell": (_bc_cubic(1 / 3, 1 / 3), 2.0),  # Mitchell-Netravali, a common default of image tools
    "hermite": (_bc_cubic(0.0, 0.0), 2.0),  # no overshoot
    "bspline": (_bc_cubic(1.0, 0.0), 2.0),  # the cubic B-spline: soft
    "sharp-cubic": (_bc_cubic(0.0, 1.0), 2.0),  # Keys' cubic with a = -1: sharper than OpenCV's a = -0.75
    "gaussian": (_gaussian, 2.0),
}
#: The training scalers of ``scalers="wide"``: OpenCV's plus kernels above, antialiased down-scales from soft
#: (Gaussian) to sharp (the sharp cubic) and up-scales from soft (B-spline) to sharp. They stay clear of the
#: held-out Pillow scalers in the direction they are drawn for: each resamples a frame at least 0.75x as far
#: from every Pillow scaler as Pillow's bicubic and Lanczos-3 are from each other (tests/test_chain.py).
#: Mitchell and Hermite down-scales (close to Pillow's antialiased triangle at 3x) and Lanczos-2 (close to
#: Catmull-Rom) are left out for that reason.
WIDE_DOWN_SCALERS = (*TRAIN_DOWN_SCALERS, "gaussian", "sharp-cubic")
WIDE_UP_SCALERS = (*TRAIN_UP_SCALERS, "mitchell", "hermite", "bspline", "sharp-cubic")
#: Which scalers training chains draw (config ``scalers``): name -> (down-scalers, up-scalers).
SCALER_SETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "opencv": (TRAIN_DOWN_SCALERS, TRAIN_UP_SCALERS),
    "wide": (WIDE_DOWN_SCALERS, WIDE_UP_SCALERS),
}
TRAIN_H264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster")
#: Codecs that code a clip as one stream (I then P frames); the others code a single still.
VIDEO_CODECS = ("h264", "vp8")
#: Prefix of a validation preset that degrades by a test family (``family:call-540p``; kd_trainer.data).
FAMILY_PRESET = "family:"


def resize(img: np.ndarray, size: tuple[int, int], scaler: str) -> np.ndarray:
    """Resize uint8 RGB ``img`` to ``size`` = (width, height) with a named scaler."""
    if scaler in CV2_SCALERS:
        return cv2.resize(img, size, interpolation=CV2_SCALERS[scaler])
    if scaler in PIL_SCALERS:
        return np.asarray(Image.fromarray(img).resize(size, PIL_SCALERS[scaler]))
    if scaler in KERNEL_SCALERS:
        return kernel_resize(img, size, scaler)
    known = ", ".join([*CV2_SCALERS, *PIL_SCALERS, *KERNEL_SCALERS])
    raise KeyError(f"unknown scaler {scaler!r}; known: {known}")


def _axis_weights(n_in: int, n_out: int, scaler: str) -> np.ndarray:
    """``n_out`` x ``n_in`` resampling weights along one axis (pixel centres aligned, rows summing to 1)."""
    kernel, support = KERNEL_SCALERS[scaler]
    scale = n_in / n_out
    stretch = max(scale, 1.0)  # a down-scale widens the kernel: the low-pass that prevents aliasing
    centres = (np.arange(n_out) + 0.5) * scale
    distance = np.abs((np.arange(n_in) + 0.5)[None, :] - centres[:, None]) / stretch
    weights = np.where(distance < support, kernel(distance), 0.0)
    weights /= weights.sum(axis=1, keepdims=True)  # at the borders: the taps inside the image, renormalised
    return weights.astype(np.float32)


def kernel_resize(img: np.ndarray, size: tuple[int, int], scaler: str) -> np.ndarray:
    """Resize uint8 RGB ``img`` to ``size`` = (width, height) with one of :data:`KERNEL_SCALERS`."""
    if img.dtype != np.uint8 or img.ndim != 3:
        raise ValueError(f"kernel_resize needs uint8 H x W x C, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    rows, cols = _axis_weights(h, size[1], scaler), _axis_weights(w, size[0], scaler)
    out = np.tensordot(rows, img.astype(np.float32), axes=(1, 0))  # out_h x w x c
    out = np.tensordot(cols, out, axes=(1, 1)).transpose(1, 0, 2)  # out_h x out_w x c
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def small_size(width: int, height: int, factor: float) -> tuple[int, int]:
    """The sender's frame size for a down-scale by ``factor`` (even, at least 16 x 16)."""
    return max(16, round(width / factor / 2) * 2), max(16, round(height / factor / 2) * 2)


def unsharp(img: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """A camera's own sharpening: ``img + amount * (img - blur(img))`` with halos and clipping."""
    blurred = gaussian_blur(img, sigma)
    return cv2.addWeighted(img, 1.0 + amount, blurred, -amount, 0.0)


def signal_noise(img: np.ndarray, sigma: float, gain: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose variance grows with brightness (shot noise) plus a floor ``sigma``."""
    x = img.astype(np.float32)
    std = np.sqrt(sigma**2 + gain * x)
    return np.clip(np.rint(x + rng.standard_normal(x.shape).astype(np.float32) * std), 0, 255).astype(
        np.uint8
    )


def yuv_noise(
    img: np.ndarray, luma_sigma: float, chroma_sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """Sensor-like noise added in BT.709 YUV: independent luma noise and coarse (2x2) chroma noise."""
    h, w = img.shape[:2]
    he, we = h + h % 2, w + w % 2
    padded = np.pad(img, ((0, he - h), (0, we - w), (0, 0)), mode="edge")
    y, u, v = (p.astype(np.float32) for p in rgb_to_yuv420(padded))
    y += rng.normal(0, luma_sigma, y.shape).astype(np.float32)
    u += rng.normal(0, chroma_sigma, u.shape).astype(np.float32)
    v += rng.normal(0, chroma_sigma, v.shape).astype(np.float32)
    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, u, v)]
    return yuv420_to_rgb(*planes)[:h, :w]


# ------------------------------------------------------------------------------------------------ codecs
def jpeg444(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG through Pillow without chroma subsampling (training uses OpenCV's 4:2:0 encoder)."""
    import io

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=int(quality), subsampling=0)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _pack(frame: np.ndarray) -> tuple[np.ndarray, int, int]:
    """RGB (any size) -> PyAV's flat yuv420p array of the frame padded to whole 16x16 macroblocks."""
    h, w = frame.shape[:2]
    ph, pw = h + (-h) % 16, w + (-w) % 16
    if (ph, pw) != (h, w):
        frame = np.pad(frame, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    y, u, v = rgb_to_yuv420(frame)
    return np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(ph * 3 // 2, pw), ph, pw


def _unpack(arr: np.ndarray, ph: int, pw: int, h: int, w: int) -> np.ndarray:
    flat = arr.reshape(-1)
    y = flat[: ph * pw].reshape(ph, pw)
    u = flat[ph * pw : ph * pw * 5 // 4].reshape(ph // 2, pw // 2)
    v = flat[ph * pw * 5 // 4 : ph * pw * 3 // 2].reshape(ph // 2, pw // 2)
    return yuv420_to_rgb(y, u, v)[:h, :w]


def video_round_trip(
    frames: Sequence[np.ndarray],
    codec: str = "libx264",
    options: dict[str, str] | None = None,
    bit_rate: int = 0,
    fps: int = 30,
) -> list[np.ndarray]:
    """Encode RGB frames as one stream (I frame then P frames) and decode every frame back.

    ``codec`` is a PyAV encoder (``libx264`` or ``libvpx``); ``bit_rate`` > 0 selects average-bitrate
    rate control (bits per second at ``fps``), else ``options`` should hold the rate control (e.g. ``crf``).
    Colour goes through the project's accurate BT.709 limited-range conversion both ways.
    """
    import av

    h, w = frames[0].shape[:2]
    packed = [_pack(f) for f in frames]
    ph, pw = packed[0][1], packed[0][2]
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = pw, ph, "yuv420p"
    enc.time_base = Fraction(1, fps)
    enc.framerate = Fraction(fps, 1)
    if bit_rate:
        enc.bit_rate = int(bit_rate)
    enc.options = dict(options or {})
    packets = []
    for i, (arr, _, _) in enumerate(packed):
        vf = av.VideoFrame.from_ndarray(arr, format="yuv420p")
        vf.pts = i
        packets.extend(enc.encode(vf))
    packets.extend(enc.encode(None))
    dec = av.CodecContext.create("h264" if codec == "libx264" else "libvpx", "r")
    decoded = [df for p in packets for df in dec.decode(p)] + list(dec.decode(None))
    if len(decoded) != len(frames):
        raise RuntimeError(f"{codec} round trip returned {len(decoded)} frames for {len(frames)}")
    return [_unpack(df.to_ndarray(format="yuv420p"), ph, pw, h, w) for df in decoded]


# ------------------------------------------------------------------------------------------------ chain
@dataclass(frozen=True)
class Chain:
    """One video-call pipeline, every step's variant spelled out (defaults: a step that does nothing)."""

    clean: bool = False  # the frame arrives untouched: the target is the input
    blur_sigma: float = 0.0  # camera softness (Gaussian)
    motion_len: int = 0  # camera shake (linear motion blur, pixels)
    motion_angle: float = 0.0
    oversharpen: float = 0.0  # camera's own unsharp mask amount (halos), radius ``oversharpen_sigma``
    oversharpen_sigma: float = 1.5
    noise: str = "none"  # none | gauss | signal | yuv
    noise_sigma: float = 0.0
    noise_gain: float = 0.0  # signal-dependent noise: variance += gain * level
    down: float = 1.0  # sender down-scale factor
    down_scaler: str = "area"
    codec: str = "none"  # none | jpeg | jpeg444 | h264 | vp8
    quality: int = 0  # JPEG quality, or x264 CRF when bitrate == 0
    bitrate_bpp: float = 0.0  # average-bitrate mode: bits per pixel per frame of the sent frame
    preset: str = "veryfast"  # x264 preset
    clip_frames: int = 1  # frames in the coded clip (the last one is kept); > 1 adds P frames
    pan: float = 0.0  # camera pan in full-resolution pixels per frame across the clip
    up_scaler: str = "bilinear"

    def to_dict(self) -> dict[str, Any]:
        """The non-default fields (what this chain actually does)."""
        default = Chain()
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }

    def describe(self) -> str:
        """One line, for reports."""
        if self.clean:
            return "clean"
        parts = []
        if self.blur_sigma:
            parts.append(f"blur {self.blur_sigma:.2g}")
        if self.motion_len:
            parts.append(f"motion {self.motion_len}px")
        if self.oversharpen:
            parts.append(f"camera sharpening {self.oversharpen:.2g}")
        if self.noise != "none":
            parts.append(f"{self.noise} noise {self.noise_sigma:.2g}")
        if self.down > 1:
            parts.append(f"down {self.down:.2g}x ({self.down_scaler})")
        if self.codec in ("jpeg", "jpeg444"):
            parts.append(f"JPEG q{self.quality}" + (" 4:4:4 (Pillow)" if self.codec == "jpeg444" else ""))
        elif self.codec in VIDEO_CODECS:
            rate = f"{self.bitrate_bpp:.3g} bpp" if self.bitrate_bpp else f"crf {self.quality}"
            preset = f"{self.preset}, " if self.codec == "h264" else ""
            parts.append(f"{self.codec} {rate} ({preset}{self.clip_frames} frames)")
        if self.down > 1:
            parts.append(f"up ({self.up_scaler})")
        return ", ".join(parts) or "none"


def shift_image(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``img`` moved by (dx, dy) pixels (bilinear, mirrored borders), in its own dtype."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    h, w = img.shape[:2]
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _camera(img: np.ndarray, chain: Chain, rng: np.random.Generator) -> np.ndarray:
    """The sender's camera: softness, shake, its own sharpening, sensor noise."""
    out = gaussian_blur(img, chain.blur_sigma)
    if chain.motion_len > 1:
        out = motion_blur(out, chain.motion_len, chain.motion_angle)
    if chain.oversharpen > 0:
        out = unsharp(out, chain.oversharpen, chain.oversharpen_sigma)
    if chain.noise == "gauss":
        out = add_noise(out, chain.noise_sigma, rng)
    elif chain.noise == "signal":
        out = signal_noise(out, chain.noise_sigma, chain.noise_gain, rng)
    elif chain.noise == "yuv":
        out = yuv_noise(out, chain.noise_sigma, chain.noise_sigma * 0.7, rng)
    return out


def _decode_all(frames: list[np.ndarray], chain: Chain) -> list[np.ndarray]:
    """Code the sent frames with the chain's video codec and return every decoded frame."""
    h, w = frames[0].shape[:2]
    if chain.codec == "h264":
        options = {"preset": chain.preset, "tune": "zerolatency", "threads": "1"}
        bit_rate = 0
        if chain.bitrate_bpp:
            bit_rate = int(chain.bitrate_bpp * w * h * 30)
        else:
            options["crf"] = str(int(chain.quality))
        return video_round_trip(frames, "libx264", options, bit_rate)
    if chain.codec == "vp8":
        bit_rate = int(chain.bitrate_bpp * w * h * 30)
        # "good" deadline: libvpx's realtime mode adapts its speed to the clock, so its output would vary
        options = {"deadline": "good", "cpu-used": "5", "lag-in-frames": "0", "threads": "1"}
        return video_round_trip(frames, "libvpx", options, bit_rate)
    raise ValueError(f"unknown video codec {chain.codec!r}")


def _codec(frames: list[np.ndarray], chain: Chain) -> np.ndarray:
    """Code the sent frames and return the last decoded one."""
    if chain.codec == "none":
        return frames[-1]
    if chain.codec == "jpeg":
        return jpeg(frames[-1], chain.quality)
    if chain.codec == "jpeg444":
        return jpeg444(frames[-1], chain.quality)
    if chain.codec in VIDEO_CODECS:
        return _decode_all(frames, chain)[-1]
    raise ValueError(f"unknown codec {chain.codec!r}")


def _check_frame(img: np.ndarray, who: str) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{who} expects an HxWx3 uint8 image, got shape {img.shape} dtype {img.dtype}")


def _sent_clip(
    img: np.ndarray, chain: Chain, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """The sender's frames of the clip (camera, down-scale) and each frame's offset (dx, dy) from ``img``."""
    h, w = img.shape[:2]
    n = max(1, chain.clip_frames)
    angle = rng.uniform(0, 2 * np.pi)
    sent, offsets = [], []
    for i in range(n):
        back = (n - 1 - i) * chain.pan
        dx, dy = back * np.cos(angle), back * np.sin(angle)
        frame = shift_image(img, dx, dy) if back else img
        frame = _camera(frame, chain, rng)
        if chain.down > 1:
            frame = resize(frame, small_size(w, h, chain.down), chain.down_scaler)
        sent.append(frame)
        offsets.append((float(dx), float(dy)) if back else (0.0, 0.0))
    return sent, offsets


def apply_chain(img: np.ndarray, chain: Chain, seed: int = 0) -> np.ndarray:
    """Degrade uint8 RGB ``img`` (the ground truth of the clip's last frame) through ``chain``.

    With ``clip_frames`` > 1 the camera pans towards ``img`` over the clip, so the codec sees real motion
    and the kept (last) frame is a P frame, as in a call.
    """
    _check_frame(img, "apply_chain")
    if chain.clean:
        return img.copy()
    sent, _ = _sent_clip(img, chain, np.random.default_rng(seed))
    received = _codec(sent, chain)
    if chain.down > 1:
        received = resize(received, img.shape[1::-1], chain.up_scaler)
    return np.ascontiguousarray(received)


def received_clip(
    img: np.ndarray, chain: Chain, seed: int = 0
) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """Every frame the receiver gets for ``apply_chain(img, chain, seed)``'s clip, up-scaled, oldest first.

    The last frame is exactly what :func:`apply_chain` returns. Frame ``i`` shows ``img`` moved by
    ``offsets[i]`` (pixels, the camera pan; the last offset is (0, 0)), so a caller can align earlier frames
    with the last. Only video codecs decode a whole clip; other chains give one frame.
    """
    _check_frame(img, "received_clip")
    if chain.clean:
        return [img.copy()], [(0.0, 0.0)]
    sent, offsets = _sent_clip(img, chain, np.random.default_rng(seed))
    if chain.codec in VIDEO_CODECS:
        received = _decode_all(sent, chain)
    else:
        received, offsets = [_codec(sent, chain)], offsets[-1:]
    if chain.down > 1:
        received = [resize(f, img.shape[1::-1], chain.up_scaler) for f in received]
    return [np.ascontiguousarray(f) for f in received], offsets


# ------------------------------------------------------------------------------------------ training chains
#: Share of training chains that are clean (target = input).
CLEAN_SHARE = 0.15


#: Training mixes: ``call`` draws whole call pipelines (plus clean samples); ``balanced`` also draws
#: single-step damage (one step alone: blur, noise, JPEG, shake, camera sharpening, scaling or H.264 at full
#: size) for 30% of samples, so the student meets each kind of damage on its own and learns to tell them apart.
MIXES = ("call", "balanced")
SINGLE_STEP_SHARE = 0.30


def check_single_step_share(share: float) -> None:
    """Raise ValueError unless ``share`` leaves room for the clean share (0 .. 1 - :data:`CLEAN_SHARE`)."""
    if not 0.0 <= share <= 1.0 - CLEAN_SHARE:
        raise ValueError(
            f"single_step_share must be in 0..{1.0 - CLEAN_SHARE:g} (the clean share is {CLEAN_SHARE:g}), got {share}"
        )


def check_scalers(scalers: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (down, up) training scalers of the set ``scalers`` (a key of :data:`SCALER_SETS`)."""
    try:
        return SCALER_SETS[scalers]
    except KeyError:
        raise ValueError(f"unknown scaler set {scalers!r}; known: {', '.join(SCALER_SETS)}") from None


def sample_train_chain(
    rng: np.random.Generator,
    h264: bool | None = None,
    mix: str = "call",
    single_step_share: float = SINGLE_STEP_SHARE,
    scalers: str = "opencv",
) -> Chain:
    """A random call pipeline for training; every step's variant is drawn (see the module docstring).

    With ``mix="balanced"``, ``single_step_share`` of all chains are one kind of damage alone (the rest are
    clean or whole call pipelines); it must leave room for the clean share. ``scalers`` names the set of
    down- and up-scalers drawn from (:data:`SCALER_SETS`); the draws are the same for every set, so two sets
    give the same chains except for the scalers.
    """
    if mix not in MIXES:
        raise ValueError(f"unknown training mix {mix!r}; known: {', '.join(MIXES)}")
    check_single_step_share(single_step_share)
    down_scalers, up_scalers = check_scalers(scalers)
    if h264 is None:
        h264 = has_h264()
    if rng.random() < CLEAN_SHARE:
        return Chain(clean=True)
    if mix == "balanced" and rng.random() < single_step_share / (1 - CLEAN_SHARE):
        return _single_step_chain(rng, h264, down_scalers, up_scalers)
    p: dict[str, Any] = {}
    r = rng.random()
    if r < 0.75:
        p["blur_sigma"] = float(rng.uniform(0.0, 1.5)) if rng.random() < 0.8 else 0.0
    if rng.random() < 0.2:
        p["motion_len"], p["motion_angle"] = int(rng.integers(2, 8)), float(rng.uniform(0, 180))
    if rng.random() < 0.15:
        p["oversharpen"], p["oversharpen_sigma"] = float(rng.uniform(0.3, 1.2)), float(rng.uniform(0.8, 2.0))
    noise = rng.random()
    if noise < 0.2:
        p["noise"], p["noise_sigma"] = "gauss", float(rng.uniform(1.0, 6.0))
    elif noise < 0.35:
        p["noise"], p["noise_sigma"], p["noise_gain"] = (
            "signal",
            float(rng.uniform(0.5, 2.5)),
            float(rng.uniform(0.02, 0.12)),
        )
    if rng.random() < 0.85:
        p["down"] = float(rng.uniform(1.5, 3.0))
        p["down_scaler"] = str(rng.choice(down_scalers))
        p["up_scaler"] = str(rng.choice(up_scalers))
    codec = rng.random()
    if codec < 0.55 and h264:
        p["codec"], p["quality"] = "h264", int(rng.integers(23, 42))
        p["preset"] = str(rng.choice(TRAIN_H264_PRESETS))
        if rng.random() < 0.5:
            p["clip_frames"], p["pan"] = int(rng.integers(2, 5)), float(rng.uniform(0.3, 3.0))
    elif codec < 0.85:
        p["codec"], p["quality"] = "jpeg", int(rng.integers(20, 91))
    return Chain(**p)


def _blur_alone(rng: np.random.Generator) -> Chain:
    return Chain(blur_sigma=float(rng.uniform(0.3, 1.5)))


def _motion_alone(rng: np.random.Generator) -> Chain:
    return Chain(motion_len=int(rng.integers(2, 8)), motion_angle=float(rng.uniform(0, 180)))


#: Of the chains that :func:`with_blur_only` replaces, this share is Gaussian softness, the rest camera shake.
BLUR_ONLY_GAUSSIAN = 0.6


def _chosen_stream(rng: np.random.Generator, share: float) -> np.random.Generator | None:
    """A child of ``rng`` (``rng.spawn``) when this sample falls in ``share``, else None; ``rng``'s own stream
    never moves, so a sample that is not replaced is exactly the one drawn without the option."""
    (child,) = rng.spawn(1)
    return child if child.random() < share else None


def with_blur_only(chain: Chain, rng: np.random.Generator, share: float) -> Chain:
    """``chain``, or for a ``share`` of the damaged chains camera blur alone (Gaussian softness or shake, the
    single-step variants), so that a frame that is only soft is seen more often than the mix draws it.

    The choice is drawn from a child of ``rng`` (``rng.spawn``), which leaves ``rng``'s own stream untouched:
    every sample that is not replaced is exactly the sample drawn without this option (teacher outputs cached
    for it stay valid). Clean chains and chains with sensor noise are never replaced, so the clean and the noisy
    shares stay as the mix draws them.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"blur_only_share must be in 0..1, got {share}")
    if share == 0 or chain.clean or chain.noise != "none":
        return chain
    child = _chosen_stream(rng, share)
    if child is None:
        return chain
    return _blur_alone(child) if child.random() < BLUR_ONLY_GAUSSIAN else _motion_alone(child)


#: Camera over-sharpening that :func:`with_oversharpened` draws: amount and radius (the training ranges).
OVERSHARPEN_AMOUNT, OVERSHARPEN_SIGMA = (0.3, 1.2), (0.8, 2.0)


def with_oversharpened(chain: Chain, rng: np.random.Generator, share: float) -> Chain:
    """``chain``, or for a ``share`` of the damaged chains the same chain from a camera that over-sharpens:
    its softness and shake removed, its own unsharp mask drawn (amount 0.3-1.2, radius 0.8-2.0), the noise,
    scaling and codec steps kept. Frames like these (halos, then down-scaled and compressed) look soft and
    must not be sharpened further, yet the mix draws them rarely.

    As in :func:`with_blur_only`, the choice comes from a child of ``rng``, so every sample that is not
    replaced is exactly the sample drawn without this option. Clean chains are never replaced.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"oversharpen_share must be in 0..1, got {share}")
    if share == 0 or chain.clean:
        return chain
    child = _chosen_stream(rng, share)
    if child is None:
        return chain
    return dataclasses.replace(
        chain,
        blur_sigma=0.0,
        motion_len=0,
        oversharpen=float(child.uniform(*OVERSHARPEN_AMOUNT)),
        oversharpen_sigma=float(child.uniform(*OVERSHARPEN_SIGMA)),
    )


def _single_step_chain(
    rng: np.random.Generator,
    h264: bool,
    down_scalers: Sequence[str] = TRAIN_DOWN_SCALERS,
    up_scalers: Sequence[str] = TRAIN_UP_SCALERS,
) -> Chain:
    """One kind of damage alone, with training variants."""
    kinds = ["blur", "noise", "jpeg", "motion", "oversharpen", "scale"] + (["h264"] if h264 else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "blur":
        return _blur_alone(rng)
    if kind == "noise":
        if rng.random() < 0.5:
            return Chain(noise="gauss", noise_sigma=float(rng.uniform(1.0, 6.0)))
        return Chain(
            noise="signal",
            noise_sigma=float(rng.uniform(0.5, 2.5)),
            noise_gain=float(rng.uniform(0.02, 0.12)),
        )
    if kind == "jpeg":
        return Chain(codec="jpeg", quality=int(rng.integers(20, 91)))
    if kind == "motion":
        return _motion_alone(rng)
    if kind == "oversharpen":
        return Chain(oversharpen=float(rng.uniform(0.3, 1.2)), oversharpen_sigma=float(rng.uniform(0.8, 2.0)))
    if kind == "scale":
        return Chain(
            down=float(rng.uniform(1.5, 3.0)),
            down_scaler=str(rng.choice(down_scalers)),
            up_scaler=str(rng.choice(up_scalers)),
        )
    return Chain(codec="h264", quality=int(rng.integers(23, 42)), preset=str(rng.choice(TRAIN_H264_PRESETS)))


# ------------------------------------------------------------------------------------------ test families
@dataclass(frozen=True)
class Family:
    """A named kind of damage for evaluation: a chain factory drawing small per-frame variations."""

    name: str
    description: str
    make: Callable[[np.random.Generator], Chain]
    realistic_call: bool = False  # a family the >= +1 dB call target applies to


def _call(
    rng: np.random.Generator, down: float, down_scaler: str, codec: str, bpp: tuple[float, float], up: str
) -> Chain:
    """A soft camera, a held-out down-scaler, an 8-frame panning clip at an average bitrate, an up-scaler."""
    return Chain(
        blur_sigma=float(rng.uniform(0.3, 0.8)),
        down=down,
        down_scaler=down_scaler,
        codec=codec,
        bitrate_bpp=float(rng.uniform(*bpp)),
        preset="medium" if codec == "h264" else Chain.preset,
        clip_frames=8,
        pan=float(rng.uniform(0.5, 2.0)),
        up_scaler=up,
    )


def _call_540p(rng: np.random.Generator) -> Chain:
    # ~300-470 kbit/s at 960x540, 30 fps
    return _call(rng, 2.0, "pil-lanczos", "h264", (0.018, 0.03), "pil-bicubic")


def _call_360p(rng: np.random.Generator) -> Chain:
    # ~200-350 kbit/s at 640x360, 30 fps
    return _call(rng, 3.0, "pil-bilinear", "h264", (0.03, 0.05), "pil-lanczos")


def _vp8_call(rng: np.random.Generator) -> Chain:
    return _call(rng, 2.0, "pil-lanczos", "vp8", (0.03, 0.05), "pil-bicubic")


def _mixed(rng: np.random.Generator) -> Chain:
    return Chain(
        blur_sigma=float(rng.uniform(0.8, 1.2)),
        motion_len=int(rng.integers(2, 4)),
        motion_angle=float(rng.uniform(0, 180)),
        noise="yuv",
        noise_sigma=float(rng.uniform(2.0, 3.5)),
        down=float(rng.uniform(1.6, 2.4)),
        down_scaler="pil-lanczos",
        codec="h264",
        bitrate_bpp=float(rng.uniform(0.04, 0.07)),
        preset="medium",
        clip_frames=8,
        pan=float(rng.uniform(0.5, 2.0)),
        up_scaler="pil-bicubic",
    )


TEST_FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "call-540p",
            "camera softness, Lanczos down to 540p, x264 ~400 kbit/s (8-frame clip), bicubic up",
            _call_540p,
            realistic_call=True,
        ),
        Family(
            "call-360p",
            "camera softness, bilinear down to 360p, x264 ~270 kbit/s (8-frame clip), Lanczos up",
            _call_360p,
            realistic_call=True,
        ),
        Family(
            "vp8-call",
            "camera softness, down to 540p, VP8 (a codec training never saw), bicubic up",
            _vp8_call,
        ),
        Family(
            "mixed",
            "blur + shake + YUV sensor noise + down 1.6-2.4x + x264 + bicubic up",
            _mixed,
            realistic_call=True,
        ),
        Family(
            "soft-camera",
            "Gaussian camera softness sigma 0.6-1.2, nothing else",
            lambda r: Chain(blur_sigma=float(r.uniform(0.6, 1.2))),
        ),
        Family(
            "upscale",
            "clean 2x down (Pillow Lanczos) and up (Pillow bicubic), no codec",
            lambda r: Chain(down=2.0, down_scaler="pil-lanczos", up_scaler="pil-bicubic"),
        ),
        Family(
            "jpeg",
            "JPEG quality 25-40 at full size, Pillow's 4:4:4 encoder",
            lambda r: Chain(codec="jpeg444", quality=int(r.integers(25, 41))),
        ),
        Family(
            "noise",
            "YUV sensor noise, luma sigma 2-4",
            lambda r: Chain(noise="yuv", noise_sigma=float(r.uniform(2.0, 4.0))),
        ),
        Family(
            "motion",
            "camera shake: motion blur 3-6 px at any angle",
            lambda r: Chain(motion_len=int(r.integers(3, 7)), motion_angle=float(r.uniform(0, 180))),
        ),
        Family(
            "oversharpened",
            "a camera that over-sharpens, then 2x down, x264 crf 30, up (Pillow bicubic)",
            lambda r: Chain(
                oversharpen=float(r.uniform(0.6, 1.0)),
                oversharpen_sigma=1.5,
                down=2.0,
                down_scaler="pil-lanczos",
                codec="h264",
                quality=30,
                preset="medium",
                up_scaler="pil-bicubic",
            ),
        ),
        Family("clean", "untouched frames: the student must leave them alone", lambda r: Chain(clean=True)),
    )
}


def family_chain(name: str, frame_index: int) -> Chain:
    """The chain of family ``name`` for the ``frame_index``-th test frame (deterministic)."""
    try:
        family = TEST_FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown test family {name!r}; known: {', '.join(TEST_FAMILIES)}") from None
    return family.make(np.random.default_rng([frame_index, sum(name.encode())]))


def degrade_family(img: np.ndarray, name: str, frame_index: int) -> tuple[np.ndarray, Chain]:
    """Degrade a test frame by family ``name``; returns the frame and the chain that made it."""
    chain = family_chain(name, frame_index)
    return apply_chain(img, chain, seed=frame_index), chain

"""Image quality metrics on uint8 frames: the project's one PSNR and SSIM (numpy + OpenCV only).

Both match scikit-image's ``peak_signal_noise_ratio`` / ``structural_similarity`` with default arguments
(data range 255; SSIM with a 7x7 uniform window, sample covariance, K1=0.01, K2=0.03, the 3-pixel border
dropped, averaged over channels) to floating-point precision, without needing scikit-image at run time.
"""

from __future__ import annotations

import cv2
import numpy as np

_WIN = 7


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"metrics expect uint8 images, got {a.dtype} and {b.dtype}")


def psnr(ref: np.ndarray, img: np.ndarray) -> float:
    """PSNR in dB of ``img`` against ``ref`` (uint8, data range 255); identical images give inf."""
    _check_pair(ref, img)
    diff = ref.astype(np.float64) - img.astype(np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(255.0**2 / mse))


def _ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    n = _WIN * _WIN
    cov_norm = n / (n - 1.0)

    def mean(a: np.ndarray) -> np.ndarray:
        return cv2.blur(a, (_WIN, _WIN), borderType=cv2.BORDER_REFLECT)

    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (_WIN - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean(dtype=np.float64))


def ssim(ref: np.ndarray, img: np.ndarray) -> float:
    """SSIM of ``img`` against ``ref`` over its channels (HxW or HxWxC uint8, at least 7x7)."""
    _check_pair(ref, img)
    if min(ref.shape[:2]) < _WIN:
        raise ValueError(f"SSIM needs images of at least {_WIN}x{_WIN}, got {ref.shape[:2]}")
    a, b = ref.astype(np.float64), img.astype(np.float64)
    if a.ndim == 2:
        return _ssim_plane(a, b)
    return float(np.mean([_ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[-1])]))

"""Image quality metrics on uint8 RGB frames (scikit-image PSNR/SSIM)."""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"metrics expect uint8 images, got {a.dtype} and {b.dtype}")


def psnr(ref: np.ndarray, img: np.ndarray) -> float:
    """PSNR in dB of ``img`` against ``ref`` (uint8, data range 255); identical images give inf."""
    _check_pair(ref, img)
    if np.array_equal(ref, img):
        return float("inf")
    return float(peak_signal_noise_ratio(ref, img, data_range=255))


def ssim(ref: np.ndarray, img: np.ndarray) -> float:
    """SSIM of ``img`` against ``ref`` over RGB channels (scikit-image defaults, data range 255)."""
    _check_pair(ref, img)
    return float(structural_similarity(ref, img, channel_axis=-1, data_range=255))

"""Classical baselines: identity and an unsharp mask tuned by grid search.

``unsharp_mask`` is the whole baseline a video-call app could ship instead of a network: one Gaussian blur
and two saturating uint8 operations per frame (OpenCV), so its speed is an honest "what does a filter cost"
reference. ``tune_unsharp`` picks (amount, sigma, threshold) by exhaustive grid search on (degraded, ground
truth) pairs, maximising mean PSNR; the grid contains ``amount=0`` (identity), so on the tuning pairs the tuned
filter is never worse than doing nothing. Tune on images that are *not* the evaluation frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np

#: Default search grid (72 combinations); ``amount=0`` is the identity.
AMOUNTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
SIGMAS: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0)
THRESHOLDS: tuple[int, ...] = (0, 2, 5)


@dataclass(frozen=True)
class UnsharpParams:
    """Parameters of :func:`unsharp_mask`, with the tuning objective when they came from a search."""

    amount: float = 1.0
    sigma: float = 1.0
    threshold: int = 0
    psnr: float | None = None  # mean PSNR on the tuning pairs (dB)
    identity_psnr: float | None = None  # mean PSNR of the unprocessed inputs on the same pairs
    pairs: int = 0

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)

    @property
    def args(self) -> tuple[float, float, int]:
        return self.amount, self.sigma, self.threshold


def _check(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"shape {getattr(rgb, 'shape', None)} dtype {getattr(rgb, 'dtype', type(rgb).__name__)}"
        raise ValueError(f"unsharp_mask expects an HxWx3 uint8 image, got {got}")


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def _apply(img: np.ndarray, blurred: np.ndarray, amount: float, threshold: int) -> np.ndarray:
    """``img + amount * (img - blurred)``, rounded and saturated; pixels whose |img - blurred| is at most
    ``threshold`` (per channel) are left untouched (the classic unsharp-mask threshold)."""
    if amount == 0:
        return img.copy()
    sharp = cv2.addWeighted(img, 1.0 + amount, blurred, -amount, 0.0)
    if threshold > 0:
        keep = cv2.absdiff(img, blurred) <= threshold
        np.copyto(sharp, img, where=keep)
    return sharp


def unsharp_mask(rgb: np.ndarray, amount: float = 1.0, sigma: float = 1.0, threshold: int = 0) -> np.ndarray:
    """Sharpen an HxWx3 uint8 image (any channel order): ``x + amount * (x - gaussian(x, sigma))``.

    ``threshold`` (levels, 0-255) skips low-contrast detail (noise) where ``|x - blur| <= threshold``.
    Works per channel, so BGR and RGB frames give the same result channel by channel.
    """
    _check(rgb)
    if amount < 0 or sigma <= 0 or threshold < 0:
        raise ValueError(f"need amount >= 0, sigma > 0, threshold >= 0; got {amount}, {sigma}, {threshold}")
    if amount == 0:
        return rgb.copy()
    return _apply(np.ascontiguousarray(rgb), _blur(rgb, sigma), float(amount), int(threshold))


def _psnr(ref: np.ndarray, img: np.ndarray) -> float:
    """PSNR in dB (data range 255), capped at 100 dB for identical images so means stay finite."""
    mse = float(np.mean((ref.astype(np.float32) - img.astype(np.float32)) ** 2))
    return 100.0 if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def tune_unsharp(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    amounts: Sequence[float] = AMOUNTS,
    sigmas: Sequence[float] = SIGMAS,
    thresholds: Sequence[int] = THRESHOLDS,
) -> UnsharpParams:
    """Grid-search (amount, sigma, threshold) maximising mean PSNR over ``(degraded, ground_truth)`` pairs.

    Every pair is an HxWx3 uint8 image and its reference of the same shape. Ties go to the first
    combination in grid order (smaller amount first), so an all-clean tuning set returns the identity.
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("tune_unsharp needs at least one (degraded, ground_truth) pair")
    for deg, gt in pairs:
        _check(deg)
        _check(gt)
        if deg.shape != gt.shape:
            raise ValueError(f"pair shapes differ: {deg.shape} vs {gt.shape}")
    if not amounts or not sigmas or not thresholds:
        raise ValueError("the search grid must not be empty")
    identity = float(np.mean([_psnr(gt, deg) for deg, gt in pairs]))
    best: tuple[float, float, float, int] | None = None  # (psnr, amount, sigma, threshold)
    for sigma in sigmas:
        blurred = [_blur(deg, sigma) for deg, _ in pairs]
        for amount in amounts:
            for threshold in thresholds if amount > 0 else thresholds[:1]:
                score = float(
                    np.mean(
                        [
                            _psnr(gt, _apply(deg, b, amount, threshold))
                            for (deg, gt), b in zip(pairs, blurred, strict=True)
                        ]
                    )
                )
                if best is None or score > best[0] + 1e-9:
                    best = (score, float(amount), float(sigma), int(threshold))
    assert best is not None
    score, amount, sigma, threshold = best
    if amount == 0:
        sigma, threshold = float(sigmas[0]), 0
    return UnsharpParams(amount, sigma, threshold, psnr=score, identity_psnr=identity, pairs=len(pairs))

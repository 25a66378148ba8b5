"""The unsharp-mask baseline and its grid-search tuning."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from benchmarks.baselines import UnsharpParams, tune_unsharp, unsharp_mask
from kd_trainer.metrics import psnr


def _scene(seed: int, size: int = 160) -> np.ndarray:
    """A sharp synthetic image: shapes, lines and text on a gradient."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = np.linspace(40, 200, size, dtype=np.uint8)[None, :, None]
    for _ in range(12):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        x1, y1 = (int(v) for v in rng.integers(0, size, 2))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x0, y0), (x1, y1), color, -1)
        else:
            cv2.line(img, (x0, y0), (x1, y1), color, 2)
    cv2.putText(img, "kd", (20, size // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
    return img


def _blur(img: np.ndarray, sigma: float = 1.2) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma)


def test_tuned_unsharp_beats_identity_on_unseen_blurred_image() -> None:
    pairs = [(_blur(_scene(s)), _scene(s)) for s in range(3)]
    params = tune_unsharp(pairs)
    assert params.amount > 0
    assert params.psnr > params.identity_psnr
    # generalises to an image that was not in the tuning set
    gt = _scene(99)
    blurred = _blur(gt)
    assert psnr(gt, unsharp_mask(blurred, *params.args)) > psnr(gt, blurred) + 0.5


def test_tuning_on_clean_pairs_gives_identity() -> None:
    img = _scene(1)
    params = tune_unsharp([(img, img.copy())])
    assert params.amount == 0.0
    assert np.array_equal(unsharp_mask(img, *params.args), img)


def test_amount_zero_is_identity_and_output_is_a_copy() -> None:
    img = _scene(2)
    out = unsharp_mask(img, 0.0, 1.0, 0)
    assert np.array_equal(out, img) and out is not img


def test_unsharp_works_per_channel() -> None:
    rgb = _blur(_scene(3))
    bgr = rgb[..., ::-1].copy()
    assert np.array_equal(unsharp_mask(rgb, 1.0, 1.0, 2)[..., ::-1], unsharp_mask(bgr, 1.0, 1.0, 2))


def test_threshold_leaves_low_contrast_detail_alone() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((64, 64, 3), 128, np.uint8)
    noisy = (flat.astype(np.int16) + rng.integers(-1, 2, flat.shape)).astype(np.uint8)  # +-1 level noise
    assert not np.array_equal(unsharp_mask(noisy, 2.0, 1.0, 0), noisy)  # amplified without a threshold
    assert np.array_equal(unsharp_mask(noisy, 2.0, 1.0, 3), noisy)  # untouched with one


def test_unsharp_increases_edge_contrast() -> None:
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, 16:] = 200
    soft = _blur(img, 1.5)
    sharp = unsharp_mask(soft, 1.5, 1.5, 0)
    assert int(sharp[:, 17:].max()) > int(soft[:, 17:].max())  # overshoot on the bright side
    assert int(sharp[:, :15].min()) <= int(soft[:, :15].min())


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8), np.uint8),
        np.zeros((8, 8, 4), np.uint8),
        np.zeros((8, 8, 3), np.float32),
        "not an image",
    ],
)
def test_bad_images_are_refused(bad) -> None:  # noqa: ANN001
    with pytest.raises(ValueError):
        unsharp_mask(bad)


def test_bad_parameters_and_pairs_are_refused() -> None:
    img = _scene(4)
    with pytest.raises(ValueError):
        unsharp_mask(img, -1.0, 1.0, 0)
    with pytest.raises(ValueError):
        unsharp_mask(img, 1.0, 0.0, 0)
    with pytest.raises(ValueError):
        tune_unsharp([])
    with pytest.raises(ValueError):
        tune_unsharp([(img, img[:10])])


def test_params_round_trip() -> None:
    p = UnsharpParams(1.5, 2.0, 3, psnr=30.0, identity_psnr=29.0, pairs=4)
    assert p.args == (1.5, 2.0, 3)
    assert p.to_dict()["pairs"] == 4

"""benchmarks.linear_bound: the oracle linear filter that bounds unsharp masks on the call families."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import linear_bound as lb
from benchmarks import test_split as ts
from benchmarks.frames import BenchInputError
from kd_trainer.io import write_image
from tests.helpers import make_pool, soft_frame


def _texture(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(30, 226, (h, w, 3)).astype(np.uint8)


def test_a_shift_is_undone_by_a_shift_kernel() -> None:
    """The fit is a correlation in row-major window order: a frame moved one pixel right is restored by the
    weight one pixel right of the centre, and the output equals the ground truth away from the border."""
    gt = _texture()
    moved = np.roll(gt, 1, axis=1)  # wraps at the border; the fit only uses windows inside the frame
    weights = lb.fit_linear_filter(moved, gt, size=3)
    assert weights.shape == (3, 10)
    expected = np.zeros(10)
    expected[5] = 1.0  # window row 1 (centre), column 2 (right of centre)
    np.testing.assert_allclose(weights, np.tile(expected, (3, 1)), atol=1e-3)
    out = lb.apply_linear_filter(moved, weights)
    np.testing.assert_array_equal(out[:, 1:-1], gt[:, 1:-1])


def test_an_affine_damage_is_undone_and_a_clean_frame_left_alone() -> None:
    gt = _texture()
    dulled = np.clip(np.rint(gt * 0.7 + 30), 0, 255).astype(np.uint8)
    assert lb.oracle_gain(dulled, gt, size=5) > 30  # exact up to rounding
    assert lb.oracle_gain(gt, gt, size=5) == pytest.approx(0.0, abs=1e-9)  # the identity, capped PSNR both


def test_blur_gains_less_than_a_perfect_inverse_but_gains() -> None:
    import cv2

    gt = cv2.GaussianBlur(_texture(96, 96), (0, 0), 1.0)  # some correlation, as in photos
    soft = cv2.GaussianBlur(gt, (0, 0), 1.2)
    gain = lb.oracle_gain(soft, gt, size=7)
    assert 1.0 < gain < 60


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(BenchInputError, match="HxWx3"):
        lb.fit_linear_filter(_texture(), _texture(64, 64))
    with pytest.raises(BenchInputError, match="odd"):
        lb.fit_linear_filter(_texture(), _texture(), size=4)
    with pytest.raises(BenchInputError, match="too small"):
        lb.fit_linear_filter(_texture(4, 4), _texture(4, 4), size=5)


def test_cli_reports_val_families(tmp_path: Path, capsys) -> None:
    make_pool([(64, 64)], 96)
    out = tmp_path / "bound.json"
    assert (
        lb.main(["--families", "soft-camera,clean", "--size", "3", "--json", str(out), "--no-progress"]) == 0
    )
    assert capsys.readouterr().out.startswith("soft-camera: oracle 3x3 linear filter")
    result = json.loads(out.read_text())
    assert list(result) == ["soft-camera"]  # clean has nothing to bound
    frames = ts.load_val_frames(None, None)
    assert len(result["soft-camera"]["frames"]) == len(frames)
    assert result["soft-camera"]["mean_gain"] > 0  # the oracle never loses to the input on average
    assert lb.main(["--families", "nope", "--no-progress"]) == 2
    assert "unknown test families" in capsys.readouterr().err


def test_leave_one_out_learns_a_shared_damage_from_the_other_frames() -> None:
    """Frames that share one affine damage: the filter fitted on the others undoes it on each held-out frame."""
    gts = [_texture(seed=s) for s in range(3)]
    pairs = [(np.clip(np.rint(g * 0.7 + 30), 0, 255).astype(np.uint8), g) for g in gts]
    gains = lb.leave_one_out_gains(pairs, size=3, samples=2000)
    assert len(gains) == 3 and min(gains) > 30


def test_leave_one_out_never_sees_the_held_out_frame() -> None:
    """A frame whose damage differs from the rest gets the rest's filter, so it gains less than its own oracle."""
    import cv2

    gts = [cv2.GaussianBlur(_texture(96, 96, seed=s), (0, 0), 1.0) for s in range(4)]
    pairs = [(cv2.GaussianBlur(g, (0, 0), 1.2), g) for g in gts[:3]]
    pairs.append(
        (np.clip(np.rint(gts[3] * 0.7 + 30), 0, 255).astype(np.uint8), gts[3])
    )  # dulled, not blurred
    gains = lb.leave_one_out_gains(pairs, size=5, samples=5000)
    assert min(gains[:3]) > 1.0  # the blurred frames learn from each other
    assert gains[3] < lb.oracle_gain(*pairs[3], size=5) - 10  # the odd one out gets a blur filter


def test_leave_one_out_needs_two_frames() -> None:
    with pytest.raises(BenchInputError, match="at least two"):
        lb.leave_one_out_gains([(_texture(), _texture())], size=3)


def test_cli_leave_one_out(tmp_path: Path, capsys) -> None:
    root = make_pool([(64, 64)], 96)
    assert lb.main(["--families", "soft-camera", "--leave-one-out", "--no-progress"]) == 2  # one val frame
    assert "at least two" in capsys.readouterr().err
    write_image(root / "val" / "v1.png", soft_frame(8, 96, 96))
    out = tmp_path / "loo.json"
    argv = [
        "--families",
        "soft-camera",
        "--size",
        "3",
        "--leave-one-out",
        "--json",
        str(out),
        "--no-progress",
    ]
    assert lb.main(argv) == 0
    assert capsys.readouterr().out.startswith("soft-camera: leave-one-out family 3x3 linear filter")
    result = json.loads(out.read_text())["soft-camera"]
    assert result["mode"] == "leave-one-out"
    assert len(result["frames"]) == len(ts.load_val_frames(None, None))
    assert 0 <= result["made_worse"] <= len(result["frames"])

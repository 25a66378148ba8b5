"""kd_trainer.strength: the closed-form gain, the fit of a per-frame residual scale, the fitted head, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from kd_trainer import strength as st
from kd_trainer.data import to_tensor
from kd_trainer.io import write_image
from kd_trainer.models.student import build_student, load_student, save_checkpoint, with_strength_head


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (0, 0), 1.2)


def _psnr(truth: np.ndarray, img: np.ndarray) -> float:
    """PSNR of float images in [0, 1] (peak 1)."""
    return float(10 * np.log10(1.0 / np.mean((truth - img) ** 2)))


def _fast_student(tmp_path: Path) -> Path:
    """A runet-fh (the shipped fast's shape) whose residual is not zero."""
    torch.manual_seed(0)
    model = build_student("runet-fh")
    with torch.no_grad():
        model.tail.weight[:16].normal_(0.0, 0.05)
        model.bands.gain.bias.fill_(0.5)
    return save_checkpoint(tmp_path / "fast.pt", model, name="runet-fh")


def _frames(features: np.ndarray, best: np.ndarray) -> st.FitFrames:
    """Frames whose best scale is ``best`` (``s* = cross / energy``; the input's error exceeds what s* removes)."""
    n, energy = len(best), 1e-3
    return st.FitFrames(features, np.full(n, energy), energy * best, np.full(n, 5e-3), np.arange(n) // 4)


def test_best_scale_recovers_the_scale_that_made_the_truth() -> None:
    rng = np.random.default_rng(0)
    degraded = rng.integers(60, 190, (20, 24, 3)).astype(np.uint8)
    residual = rng.normal(0, 0.05, degraded.shape)
    truth = np.round(degraded + 255.0 * 0.7 * residual).astype(np.uint8)
    assert st.best_scale(residual, degraded, truth) == pytest.approx(0.7, abs=0.02)
    assert st.best_scale(np.zeros(degraded.shape), degraded, truth) == 0.0
    with pytest.raises(ValueError, match="one shape"):  # a CHW residual must not be read as HWC
        st.best_scale(residual.transpose(2, 0, 1), degraded, truth)


def test_centre_crop_keeps_small_frames_and_cuts_large_ones() -> None:
    assert st.centre_crop(np.zeros((40, 50, 3), np.uint8)).shape == (40, 50, 3)
    img = np.arange(30 * 40).reshape(30, 40)
    out = st.centre_crop(img, (20, 10))
    assert out.shape == (10, 20) and out[0, 0] == img[10, 10]


def test_the_closed_form_gain_is_the_psnr_gain_of_the_scaled_residual() -> None:
    rng = np.random.default_rng(3)
    truth = rng.uniform(0.2, 0.8, (16, 20, 3))
    degraded = truth + rng.normal(0, 0.03, truth.shape)
    residual = 0.6 * (truth - degraded) + rng.normal(0, 0.01, truth.shape)
    r, d = residual, truth - degraded
    frames = st.FitFrames(
        np.zeros((1, 1)),
        np.array([(r * r).mean()]),
        np.array([(r * d).mean()]),
        np.array([(d * d).mean()]),
        np.zeros(1),
    )
    for s in (0.0, 0.5, 1.0, 1.7):
        direct = _psnr(truth, degraded + s * residual) - _psnr(truth, degraded)
        assert frames.gains(np.array([s]))[0] == pytest.approx(direct, abs=1e-6)


def test_the_fit_reads_the_best_scale_from_features_and_cross_validation_tells_signal_from_noise() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(200, 3))
    best = np.clip(1.0 + 0.5 * features[:, 0] - 0.3 * features[:, 2], 0.0, 2.0)
    frames = _frames(features, best)
    fit = st.fit_linear_scale(frames, alpha=0.01)
    oracle = st.gain_and_harm(frames.gains(best))
    fitted = st.gain_and_harm(frames.gains(fit(features)))
    as_is = st.gain_and_harm(frames.gains(np.ones(200)))
    assert fitted["gain_minus_harm"] > as_is["gain_minus_harm"] + 0.5 * (oracle["gain"] - as_is["gain"])
    assert np.corrcoef(fit(features), best)[0, 1] > 0.95
    assert st.cross_validate(frames, alpha=0.01)["gain_minus_harm"] > as_is["gain_minus_harm"]
    unrelated = _frames(rng.normal(size=(200, 3)), best)  # features that say nothing about the scale
    held_out = st.cross_validate(unrelated, alpha=0.01)
    assert held_out["gain_minus_harm"] < as_is["gain_minus_harm"] + 0.2 * (oracle["gain"] - as_is["gain"])
    with pytest.raises(ValueError, match="two folds"):
        st.cross_validate(st.FitFrames(features, np.ones(200), best, np.full(200, 4e-3), np.zeros(200, int)))
    with pytest.raises(ValueError, match="alpha"):
        st.fit_linear_scale(frames, alpha=-1.0)


def test_the_fit_maximises_gain_minus_harm_so_losses_hold_it_back() -> None:
    """Half the frames want scale 0 (the residual hurts them), half want 2, and no feature tells them apart: the
    fitted constant is the best scale for gain minus harm, below the best scale for the mean gain alone."""
    best = np.repeat([0.0, 2.0], 50)
    frames = _frames(np.zeros((100, 1)), best)
    scale = float(st.fit_linear_scale(frames, alpha=1.0)(np.zeros((1, 1)))[0])
    grid = np.linspace(0.0, 2.0, 401)
    criterion = [st.gain_and_harm(frames.gains(np.full(100, s)))["gain_minus_harm"] for s in grid]
    mean_gain = [frames.gains(np.full(100, s)).mean() for s in grid]
    assert scale == pytest.approx(grid[int(np.argmax(criterion))], abs=0.01)
    assert scale < grid[int(np.argmax(mean_gain))] - 0.1


def test_a_fitted_head_scales_each_frame_like_the_fit_and_keeps_the_student(tmp_path: Path) -> None:
    model, _ = load_student(_fast_student(tmp_path))
    photos = [(f"p{i}.png", _photo(48 + 8 * i, 64, i)) for i in range(4)]
    headed, report = st.fit_strength_head(model, photos, chains=3, alpha=1.0, progress=False)
    assert headed.config.strength and not model.config.strength  # the student itself is unchanged
    assert report["photos"] == 4 and 0 < report["frames"] <= 12
    assert set(report["cross_validated"]) == {"gain", "harm", "gain_minus_harm"}
    assert report["fitted"]["gain_minus_harm"] >= report["as_is"]["gain_minus_harm"] - 1e-9
    weights = headed.strength.linear.weight[0].detach().double().numpy()
    bias = float(headed.strength.linear.bias.detach()[0])
    for seed in (7, 8):
        frame = _photo(36, 52, seed)  # not a multiple of 4: padded like forward()
        residual, stats = st.residual_and_statistics(model, frame)
        expected = float(np.clip(stats @ weights + bias, 0.0, st.MAX_SCALE))
        x = to_tensor(frame)[None]
        with torch.no_grad():
            out = (headed(x) - x)[0].permute(1, 2, 0).numpy()
        assert np.allclose(out, expected * residual, atol=1e-5)
    with pytest.raises(ValueError, match="already has a strength head"):
        st.collect_frames(with_strength_head(model), photos, 1, progress=False)
    with pytest.raises(ValueError, match="chains"):
        st.collect_frames(model, photos, 0, progress=False)


def test_cli_writes_the_headed_student_and_refuses_bad_input(tmp_path: Path, capsys) -> None:
    student = _fast_student(tmp_path)
    train = tmp_path / "train"
    for i in range(3):
        write_image(train / f"p{i}.png", _photo(64, 80, 20 + i))
    out = tmp_path / "headed.pt"
    argv = [str(student), "-o", str(out), "--chains", "2", "--train-dir", str(train), "--no-progress"]
    assert st.main(argv) == 0
    printed = capsys.readouterr().out
    assert "cross-validated" in printed and f"wrote {out}" in printed
    headed, ckpt = load_student(out)
    assert headed.config.strength and ckpt["strength_fit"]["chains"] == 2
    assert json.loads(json.dumps(ckpt["strength_fit"]))["photos"] == 3
    assert (
        st.main([str(out), "-o", str(tmp_path / "again.pt"), "--train-dir", str(train), "--no-progress"]) == 2
    )
    assert "already has a strength head" in capsys.readouterr().err
    assert st.main([str(student), "-o", str(student), "--train-dir", str(train)]) == 2  # never overwrites
    assert (
        st.main([str(student), "-o", str(out), "--train-dir", str(tmp_path / "none"), "--no-progress"]) == 2
    )
    assert "kd-data photos" in capsys.readouterr().err
    assert st.main([str(tmp_path / "missing.pt"), "-o", str(out), "--train-dir", str(train)]) == 2

"""benchmarks.strength_probe: the best scale per frame, the features it reads out, the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from benchmarks import strength_probe as sp
from benchmarks.frames import BenchInputError
from kd_trainer.data import to_tensor
from kd_trainer.io import write_image
from kd_trainer.models.student import build_student, load_student, save_checkpoint
from tests.helpers import make_pool


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (0, 0), 1.2)


def _student(tmp_path: Path) -> Path:
    """A runet-m3 whose tail is not zero, so its residual is not."""
    torch.manual_seed(0)
    model = build_student("runet-m3")
    with torch.no_grad():
        model.tail.weight.normal_(0.0, 0.02)
    return save_checkpoint(tmp_path / "s.pt", model, name="runet-m3")


def test_best_scale_recovers_the_scale_that_made_the_truth() -> None:
    rng = np.random.default_rng(0)
    degraded = rng.integers(60, 190, (20, 24, 3)).astype(np.uint8)
    residual = rng.normal(0, 0.05, degraded.shape)
    truth = np.round(degraded + 255.0 * 0.7 * residual).astype(np.uint8)
    assert sp.best_scale(residual, degraded, truth) == pytest.approx(0.7, abs=0.02)
    assert sp.best_scale(np.zeros(degraded.shape), degraded, truth) == 0.0
    with pytest.raises(ValueError, match="one shape"):  # a CHW residual must not be read as HWC
        sp.best_scale(residual.transpose(2, 0, 1), degraded, truth)


def test_ridge_recovers_a_linear_target_and_cross_validation_tells_signal_from_noise() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    signal = 2.0 * x[:, 0] - x[:, 3] + 0.5
    ridge = sp.fit_ridge(x, signal, alpha=1e-6)
    assert np.allclose(ridge.predict(x), signal, atol=1e-4)
    weights, bias = ridge.raw()  # the same map on unstandardised features, as a strength head holds it
    assert np.allclose(x @ weights + bias, ridge.predict(x), atol=1e-9)
    groups = np.arange(200) // 10
    noise = rng.normal(size=200)
    assert sp.group_cv_rmse(x, signal, groups, alpha=1.0) < 0.1 * signal.std()
    assert sp.group_cv_rmse(x, noise, groups, alpha=1.0) > 0.9 * noise.std()
    with pytest.raises(BenchInputError, match="two folds"):
        sp.group_cv_rmse(x, signal, np.zeros(200, dtype=int), alpha=1.0)


def test_the_tap_returns_the_students_own_residual_and_fixed_size_features(tmp_path: Path) -> None:
    from kd_trainer.data import to_tensor
    from kd_trainer.models.student import load_student

    model, _ = load_student(_student(tmp_path))
    tap = sp.FeatureTap(model)
    frame = _photo(50, 70, 2)  # not a multiple of 8: padded and cropped back like forward()
    features, residual = tap(frame)
    x = to_tensor(frame)[None]
    with torch.no_grad():
        expected = (model(x) - x)[0].permute(1, 2, 0).numpy()
    assert residual.shape == (50, 70, 3)
    assert np.abs(residual).max() > 1e-4
    assert np.allclose(residual, expected, atol=1e-5)
    assert features.shape == (3 * 16 + 96 + 4,) and np.isfinite(features).all()  # head, deepest level, frame
    assert tap.head_features == 3 * 16
    assert tap(_photo(64, 64, 3))[0].shape == features.shape
    truth = np.clip(np.round(frame + 255.0 * 0.5 * residual), 0, 255).astype(np.uint8)
    assert sp.best_scale(residual, frame, truth) == pytest.approx(0.5, abs=0.05)


def test_centre_crop_keeps_small_frames_and_cuts_large_ones() -> None:
    assert sp.centre_crop(np.zeros((40, 50, 3), np.uint8)).shape == (40, 50, 3)
    img = np.arange(30 * 40).reshape(30, 40)
    out = sp.centre_crop(img, (20, 10))
    assert out.shape == (10, 20) and out[0, 0] == img[10, 10]


def test_cli_fits_the_read_out_and_scores_every_choice(tmp_path: Path, capsys) -> None:
    make_pool([(64, 64)], 96)
    train = tmp_path / "train"
    for i in range(3):
        write_image(train / f"p{i}.png", _photo(96, 112, 10 + i))
    student = _student(tmp_path)
    out = tmp_path / "probe.json"
    argv = ["--student", str(student), "--chains", "2", "--families", "soft-camera,noise"]
    argv += ["--scales", "0,0.5,1,1.5", "--train-dir", str(train), "--json", str(out), "--no-progress"]
    assert sp.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("read-out on 6 train frames")
    assert [line.split(":")[0] for line in lines[1:]] == [
        "as is",
        "read-out",
        "oracle per family",
        "oracle per frame",
    ]
    result = json.loads(out.read_text())
    gains = result["gains"]
    for choice in gains.values():
        assert set(choice) == {"soft-camera", "noise", "mean"}
    for family in ("soft-camera", "noise"):  # an oracle is never below the student as it is
        assert gains["oracle per frame"][family] >= gains["oracle per family"][family] - 1e-9
        assert gains["oracle per family"][family] >= gains["as is"][family] - 1e-9
    assert len(result["frames"]) == 2 and set(result["family_best_scale"]) == {"soft-camera", "noise"}
    headed = tmp_path / "headed.pt"
    assert sp.main([*argv, "--features", "head", "--write-head", str(headed)]) == 0
    narrow = json.loads(out.read_text())
    assert narrow["setup"]["features"] == "head" and result["setup"]["features"] == "all"
    assert narrow["gains"]["as is"] == result["gains"]["as is"]
    model, ckpt = load_student(headed)  # the fitted read-out is the student's own head now
    assert model.config.strength and ckpt["strength_fit"]["train_frames"] == 6
    assert float(model.strength.max_scale) == 1.5
    frame = _photo(64, 64, 20)  # the head reads the very statistics the read-out was fitted on
    features, _ = sp.FeatureTap(load_student(student)[0])(frame)
    weights, bias = (
        model.strength.linear.weight[0].detach().numpy(),
        float(model.strength.linear.bias.detach()[0]),
    )
    expected = float(np.clip(features[: 3 * 16] @ weights + bias, 0, 1.5))
    with torch.no_grad():
        head_scale = float(model.strength(model.body(model.stem(to_tensor(frame)[None]))[0]))
    assert head_scale == pytest.approx(expected, abs=1e-4)
    assert sp.main([*argv, "--write-head", str(headed)]) == 2  # the head reads only its own statistics
    assert sp.main(["--student", str(student), "--scales", "0,0.5", "--no-progress"]) == 2
    assert sp.main(["--student", str(tmp_path / "missing.pt"), "--no-progress"]) == 2
    assert sp.main(["--student", str(student), "--scales", "a,b", "--no-progress"]) == 2
    assert "include 1" in capsys.readouterr().err

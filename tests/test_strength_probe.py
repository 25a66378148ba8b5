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
from kd_trainer.models.student import build_student, save_checkpoint
from kd_trainer.strength import best_scale
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


def test_ridge_recovers_a_linear_target_and_cross_validation_tells_signal_from_noise() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    signal = 2.0 * x[:, 0] - x[:, 3] + 0.5
    ridge = sp.fit_ridge(x, signal, alpha=1e-6)
    assert np.allclose(ridge.predict(x), signal, atol=1e-4)
    groups = np.arange(200) // 10
    noise = rng.normal(size=200)
    assert sp.group_cv_rmse(x, signal, groups, alpha=1.0) < 0.1 * signal.std()
    assert sp.group_cv_rmse(x, noise, groups, alpha=1.0) > 0.9 * noise.std()
    with pytest.raises(BenchInputError, match="two folds"):
        sp.group_cv_rmse(x, signal, np.zeros(200, dtype=int), alpha=1.0)


def test_the_tap_returns_the_students_own_residual_and_fixed_size_features(tmp_path: Path) -> None:
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
    assert best_scale(residual, frame, truth) == pytest.approx(0.5, abs=0.05)


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
    assert sp.main([*argv, "--features", "head"]) == 0
    narrow = json.loads(out.read_text())
    assert narrow["setup"]["features"] == "head" and result["setup"]["features"] == "all"
    assert narrow["gains"]["as is"] == result["gains"]["as is"]
    assert sp.main(["--student", str(student), "--scales", "0,0.5", "--no-progress"]) == 2
    assert sp.main(["--student", str(tmp_path / "missing.pt"), "--no-progress"]) == 2
    assert sp.main(["--student", str(student), "--scales", "a,b", "--no-progress"]) == 2
    assert "include 1" in capsys.readouterr().err

"""Shared fixtures: tiny real photos (scikit-image samples) laid out as the trainer expects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

# Stable timings on a shared 2-core machine; tests never need more.
torch.set_num_threads(1)


def _photo(name: str, size: tuple[int, int]) -> np.ndarray:
    import cv2
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return cv2.resize(img[..., :3], size, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="session")
def photo_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(train_dir, val_dir) with small real photographs."""
    from kd_trainer.io import write_image

    root = tmp_path_factory.mktemp("photos")
    train, val = root / "train", root / "val"
    write_image(train / "astronaut.png", _photo("astronaut", (160, 160)))
    write_image(train / "coffee.png", _photo("coffee", (192, 128)))
    write_image(val / "chelsea.png", _photo("chelsea", (160, 96)))
    return train, val


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path / "cache"))

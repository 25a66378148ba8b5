"""Helpers shared by tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from kd_trainer.models.student import StudentConfig


def perturbed_student(name: str | StudentConfig = "runet-n", seed: int = 0):
    """A registry student (or one built from a config) whose zero-initialised tail is randomised, so it is not
    the identity."""
    from kd_trainer.models.student import build_student

    torch.manual_seed(seed)
    model = build_student(name)
    torch.nn.init.normal_(model.tail.weight, std=0.02)
    return model.eval()


def soft_frame(seed: int, h: int, w: int):
    """A smooth random RGB frame with a brightness step (texture for the test-split scorer)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)).astype(np.float32), (0, 0), 1.5)
    img[:, w // 2 :] += 30
    return np.clip(img, 0, 255).astype(np.uint8)


def make_pool(test_sizes, val_size: int):
    """A tiny photo pool (test/ and val/ plus a manifest) in the cache directory (KD_CACHE_DIR); its root."""
    import json

    from benchmarks import test_split as ts
    from kd_trainer.io import write_image

    root = ts.pool_split_dir("test").parent
    files = []
    for i, (h, w) in enumerate(test_sizes):
        write_image(root / "test" / f"t{i}.png", soft_frame(i, h, w))
        files.append({"path": f"test/t{i}.png", "split": "test", "source": {"package": f"pkg{i}"}})
    write_image(root / "val" / "v0.png", soft_frame(9, val_size, val_size))
    (root / "manifest.json").write_text(json.dumps({"files": files}))
    return root

"""Synthetic screen content for the photo pool."""

import numpy as np

from kd_trainer.screens import LAYOUTS, render_screen


def test_screens_are_deterministic_rgb_frames_of_the_requested_size():
    a = render_screen(0, size=(640, 360))
    assert a.shape == (360, 640, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_screen(0, size=(640, 360)))
    assert not np.array_equal(a, render_screen(len(LAYOUTS), size=(640, 360)))  # same layout, other seed


def test_every_layout_draws_sharp_detail():
    for seed in range(len(LAYOUTS)):
        img = render_screen(seed, size=(960, 540)).astype(np.float32)
        grad = np.abs(np.diff(img, axis=1)).max(axis=2)
        assert (grad > 64).mean() > 0.002, f"layout {LAYOUTS[seed]} drew almost nothing"
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # anti-aliased, not two flat colours

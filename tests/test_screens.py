"""Synthetic screen content for the photo pool."""

import numpy as np

from kd_trainer.screens import LAYOUTS, render_scan, render_screen


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


def test_scanned_pages_are_black_ink_on_exactly_white_paper():
    bilevel, grey = render_scan(0, size=(540, 720)), render_scan(1, size=(540, 720))
    assert bilevel.shape == (720, 540, 3) and bilevel.dtype == np.uint8
    assert np.array_equal(bilevel, render_scan(0, size=(540, 720)))  # deterministic
    assert set(np.unique(bilevel)) == {0, 255}  # even seeds: thresholded
    assert len(np.unique(grey)) > 2 and (grey == 0).any()  # odd seeds keep anti-aliased edges
    for page in (bilevel, grey):
        assert (page == 255).mean() > 0.8  # mostly paper, exactly white
        assert np.array_equal(page[..., 0], page[..., 2])  # grey, stored as RGB

"""Quality helpers: frame sources, the synthetic clip, the video degradation and flicker figures."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.frames import (
    BenchInputError,
    crops,
    detail_crop_box,
    eval_frames,
    fit_1080p,
    synth_clip,
    tuning_images,
)
from benchmarks.quality import degrade_clip, h264_sequence, temporal_stats, tuning_pairs, usable_presets
from kd_trainer.degrade import has_h264
from kd_trainer.io import write_image
from kd_trainer.metrics import psnr


def test_temporal_stats_on_known_sequences() -> None:
    gt = [np.full((8, 8, 3), v, np.uint8) for v in (10, 20, 30)]
    same = temporal_stats(gt, gt)
    assert same["mean_abs_change"] == pytest.approx(10.0) and same["change_ratio"] == pytest.approx(1.0)
    assert same["temporal_error"] == 0.0
    static = temporal_stats([gt[0]] * 3, gt)  # frozen output: no change where the truth changes
    assert static["mean_abs_change"] == 0.0 and static["change_ratio"] == 0.0
    assert static["temporal_error"] == pytest.approx(10.0)
    rng = np.random.default_rng(0)
    flicker = [np.clip(g.astype(int) + rng.integers(-6, 7, g.shape), 0, 255).astype(np.uint8) for g in gt]
    assert temporal_stats(flicker, gt)["temporal_error"] > 2.0
    with pytest.raises(ValueError):
        temporal_stats(gt[:1], gt[:1])
    with pytest.raises(ValueError):
        temporal_stats(gt, gt[:2])


def test_synth_clip_moves_smoothly() -> None:
    photo = np.random.default_rng(0).integers(0, 256, (270, 480, 3), dtype=np.uint8)
    photo = np.ascontiguousarray(np.repeat(np.repeat(photo, 4, 0), 4, 1))  # 1080x1920 with blocky detail
    clip = synth_clip(photo, 4)
    assert len(clip) == 4 and all(f.shape == (1080, 1920, 3) and f.dtype == np.uint8 for f in clip)
    assert not np.array_equal(clip[0], clip[1])  # the camera moves
    assert psnr(clip[0], clip[1]) > 8.0  # ... but only a little per frame
    with pytest.raises(ValueError):
        synth_clip(photo, 1)


@pytest.mark.skipif(not has_h264(), reason="needs PyAV with libx264")
def test_h264_sequence_round_trip_keeps_frames() -> None:
    rng = np.random.default_rng(0)
    base = np.repeat(np.repeat(rng.integers(0, 256, (18, 32, 3), dtype=np.uint8), 8, 0), 8, 1)
    base = cv2.GaussianBlur(base, (0, 0), 3)  # natural-image-like: little chroma detail at pixel scale
    frames = [np.roll(base, 2 * t, axis=1) for t in range(5)]  # 144 x 256: H % 4 == 0
    out = h264_sequence(frames, crf=18)
    assert len(out) == 5 and out[0].shape == base.shape
    assert all(psnr(f, o) > 32 for f, o in zip(frames, out, strict=True))
    odd = [f[:138] for f in frames]  # H % 4 == 2 must work too
    assert [o.shape for o in h264_sequence(odd, crf=18)] == [(138, 256, 3)] * 5


def test_degrade_clip_keeps_call_parameters_for_the_clip() -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (144, 256, 3), dtype=np.uint8) for _ in range(3)]
    out, params = degrade_clip(frames, seed=0)
    assert len(out) == 3 and out[0].shape == frames[0].shape
    assert params["preset"] == "call" and 1.5 <= params["downscale"] <= 3.0 and 0.5 <= params["sigma"] <= 1.5
    assert all(psnr(f, o) < 40 for f, o in zip(frames, out, strict=True))  # really degraded


def test_eval_frames_from_a_folder_are_fitted_to_1080p(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    write_image(tmp_path / "a.png", img)
    (tmp_path / "notes.txt").write_text("not an image")
    fs = eval_frames(3, tmp_path)
    assert fs.kind == "folder" and fs.names == ["a.png"]
    assert fs.frames[0].shape == (1080, 1920, 3)
    assert any("scaled" in n for n in fs.notes)


def test_empty_or_missing_frame_folders_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchInputError, match="contains no images"):
        eval_frames(1, tmp_path)
    with pytest.raises(BenchInputError, match="not found"):
        eval_frames(1, tmp_path / "missing")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(BenchInputError, match="could be read"):
        eval_frames(1, tmp_path)


def test_default_frames_and_tuning_images_never_overlap() -> None:
    fs = eval_frames(2)  # the test cache is empty: bundled sample or skimage photos
    assert fs.frames and all(f.shape == (1080, 1920, 3) for f in fs.frames)
    ts = tuning_images(4, eval_set=fs)
    assert ts.frames and not set(ts.names) & set(fs.names)


def test_photo_pool_val_split_is_preferred(tmp_path: Path) -> None:
    from kd_trainer.paths import cache_dir

    val = cache_dir() / "photos" / "val"
    write_image(val / "v.png", np.zeros((1080, 1920, 3), np.uint8))
    fs = eval_frames(1)
    assert fs.kind == "photos" and fs.names == ["v.png"] and not fs.notes


def test_fit_crops_and_detail_box() -> None:
    img = np.zeros((200, 300, 3), np.uint8)
    img[150:180, 250:290] = 255  # the only detail
    y, x = detail_crop_box(img, 64)
    assert 150 - 64 < y <= 150 + 30 and 250 - 64 < x <= 250 + 40
    assert fit_1080p(img).shape == (1080, 1920, 3)
    cs = crops(img, 64, 3)
    assert len(cs) == 3 and all(c.shape == (64, 64, 3) for c in cs)
    assert crops(img[:32, :32], 64, 1)[0].shape == (64, 64, 3)  # small images are padded


def test_tuning_pairs_and_presets() -> None:
    img = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    pairs = tuning_pairs([img], ["gauss1.5", "jpeg30"], 64, 2)
    assert set(pairs) == {"gauss1.5", "jpeg30"} and len(pairs["gauss1.5"]) == 2
    deg, gt = pairs["gauss1.5"][0]
    assert deg.shape == gt.shape == (64, 64, 3) and not np.array_equal(deg, gt)
    ok, notes = usable_presets(["gauss1.5", "no-such-preset"])
    assert ok == ["gauss1.5"] and "no-such-preset" in notes[0]

"""benchmarks.temporal_bound and kd_trainer.chain.received_clip: what a call's earlier frames could add."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import temporal_bound as tb
from benchmarks import test_split as ts
from benchmarks.frames import BenchInputError
from kd_trainer.chain import Chain, degrade_family, family_chain, received_clip
from tests.helpers import make_pool

pytest.importorskip("av")


def _photo(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (0, 0), 1.5)


def test_the_last_received_frame_is_what_apply_chain_gives() -> None:
    img = _photo()
    for family in ("call-540p", "vp8-call", "jpeg", "clean"):
        chain = family_chain(family, 2)
        frames, offsets = received_clip(img, chain, seed=2)
        np.testing.assert_array_equal(frames[-1], degrade_family(img, family, 2)[0])
        assert len(frames) == len(offsets) == (8 if family in ("call-540p", "vp8-call") else 1)
        assert offsets[-1] == (0.0, 0.0)
        assert all(f.shape == img.shape and f.dtype == np.uint8 for f in frames)


def test_alignment_undoes_the_pan() -> None:
    """Earlier frames of a near-lossless panning clip line up with the last only when moved the right way."""
    img = _photo()
    chain = Chain(codec="h264", quality=1, preset="ultrafast", clip_frames=4, pan=2.0)
    frames, offsets = received_clip(img, chain, seed=5)
    assert max(abs(dx) + abs(dy) for dx, dy in offsets) > 3  # the first frame really is moved
    aligned = tb.align_to_last(frames, offsets)
    inner = (slice(12, -12), slice(12, -12))
    last = frames[-1][inner]
    moved_back = np.clip(np.rint(aligned[0][inner]), 0, 255).astype(np.uint8)
    assert ts.capped_psnr(last, moved_back) > ts.capped_psnr(last, frames[0][inner]) + 8
    assert ts.capped_psnr(last, moved_back) > 30


def test_averaging_a_noisy_static_clip_gains_what_averaging_noise_gains() -> None:
    """Independent noise in four nearly losslessly coded frames: the mean of four gains close to 10*log10(4) dB."""
    img = _photo()
    chain = Chain(noise="gauss", noise_sigma=12.0, codec="h264", quality=1, preset="ultrafast", clip_frames=4)
    frames, offsets = received_clip(img, chain, seed=1)
    gains = tb.fusion_gains(frames, offsets, img, windows=(1, 2, 4))
    assert gains[1] == pytest.approx(0.0, abs=1e-9)
    assert 1.5 < gains[2] < gains[4] < 6.5
    assert gains[4] > 4.0
    with pytest.raises(BenchInputError, match=">= 1 frame"):
        tb.fusion_gains(frames, offsets, img, windows=(0,))
    with pytest.raises(BenchInputError, match="one offset per frame"):
        tb.align_to_last(frames, offsets[:-1])


def test_clip_families_are_the_video_call_families() -> None:
    assert tb.clip_families() == ["call-540p", "call-360p", "vp8-call", "mixed"]


def test_cli_reports_each_window(tmp_path: Path, capsys) -> None:
    make_pool([(64, 64)], 96)
    out = tmp_path / "bound.json"
    assert tb.main(["--families", "call-540p", "--windows", "1,2", "--json", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith(
        "call-540p: mean gain of the aligned average over the last frame"
    )
    result = json.loads(out.read_text())
    assert list(result) == ["call-540p"] and list(result["call-540p"]) == ["1", "2"]
    assert len(result["call-540p"]["2"]["frames"]) == len(ts.load_val_frames(None, None))
    assert result["call-540p"]["1"]["mean_gain"] == pytest.approx(0.0, abs=1e-9)
    assert result["call-540p"]["2"]["by_content"] == {"photo": result["call-540p"]["2"]["mean_gain"]}
    assert tb.main(["--families", "jpeg", "--no-progress"]) == 2
    assert "single frame" in capsys.readouterr().err

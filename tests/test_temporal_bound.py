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
from kd_trainer.chain import Chain, degrade_family, family_chain, received_clip, shift_image
from kd_trainer.evaluate import torch_restorer
from kd_trainer.models.student import save_checkpoint
from tests.helpers import make_pool, perturbed_student

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


def test_estimated_motion_finds_the_pan() -> None:
    """Phase correlation and ECC recover a sub-pixel pan from the decoded frames alone, sign included."""
    img = _photo(128, 160, seed=3)
    chain = Chain(codec="h264", quality=10, preset="ultrafast", clip_frames=4, pan=1.7)
    frames, offsets = received_clip(img, chain, seed=4)
    estimated = tb.estimate_offsets(frames)
    assert estimated[-1] == (0.0, 0.0) and len(estimated) == len(offsets)
    errors = [np.hypot(e[0] - o[0], e[1] - o[1]) for e, o in zip(estimated, offsets, strict=True)]
    assert max(errors) < 0.25, errors
    assert max(abs(dx) + abs(dy) for dx, dy in offsets) > 3  # far from a trivial zero estimate
    with pytest.raises(BenchInputError, match="no frames"):
        tb.estimate_offsets([])


def test_robust_fusion_keeps_the_last_frame_where_an_earlier_one_disagrees() -> None:
    img = _photo(64, 64, seed=6)
    moved = img.copy()
    moved[20:40, 20:40] = 0  # something dark passed there in the earlier frame
    aligned = [moved.astype(np.float32), img.astype(np.float32)]
    plain, robust = tb.fuse(aligned, 2), tb.fuse(aligned, 2, robust=4.0)
    patch = (slice(24, 36), slice(24, 36))
    assert np.abs(plain[patch].astype(int) - img[patch]).mean() > 30  # the plain mean mixes the change in
    assert np.abs(robust[patch].astype(int) - img[patch]).max() <= 1
    np.testing.assert_array_equal(robust[50:, 50:], img[50:, 50:])  # where they agree, both are the image
    with pytest.raises(BenchInputError, match=">= 0 levels"):
        tb.fuse(aligned, 2, robust=-1.0)


def test_a_restorer_runs_on_every_average_and_on_the_last_frame() -> None:
    img = _photo()
    chain = Chain(noise="gauss", noise_sigma=12.0, codec="h264", quality=1, preset="ultrafast", clip_frames=4)
    frames, offsets = received_clip(img, chain, seed=1)
    perfect = tb.fusion_gains(frames, offsets, img, windows=(1, 4), restorer=lambda _frame: img)
    alone = ts.capped_psnr(img[2:-2, 2:-2], frames[-1][2:-2, 2:-2])
    assert perfect[1] == pytest.approx(ts.PSNR_CAP - alone) and perfect[4] == perfect[1]
    plain = tb.fusion_gains(frames, offsets, img, windows=(1, 4))
    same = tb.fusion_gains(frames, offsets, img, windows=(1, 4), restorer=lambda frame: frame)
    assert same == plain


def test_shifted_frames_align_by_estimated_motion_as_well_as_by_the_known_pan() -> None:
    """Frames that are the image moved by known amounts: estimated and known motion give the same gains."""
    img = _photo(120, 120, seed=8)
    offsets = [(-2.5, 1.0), (-1.25, 0.5), (0.0, 0.0)]
    frames = [shift_image(img, dx, dy) if dx or dy else img for dx, dy in offsets]
    known = tb.fusion_gains(frames, offsets, img, windows=(3,))
    estimated = tb.fusion_gains(frames, offsets, img, windows=(3,), motion=tb.estimate_offsets(frames))
    assert estimated[3] == pytest.approx(known[3], abs=0.3)


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


def test_cli_scores_a_student_on_estimated_robust_averages(tmp_path: Path, capsys) -> None:
    make_pool([(64, 64)], 96)
    ckpt = save_checkpoint(tmp_path / "s.pt", perturbed_student("runet-p"), name="runet-p")
    out = tmp_path / "bound.json"
    argv = ["--families", "vp8-call", "--windows", "1,4", "--motion", "estimated", "--robust", "4"]
    assert tb.main([*argv, "--student", f"s={ckpt}", "--json", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("vp8-call: mean gain of s on the aligned average over the last")
    result = json.loads(out.read_text())["vp8-call"]
    ((_name, gt),) = ts.load_val_frames(None, None)
    clip, offsets = received_clip(gt, family_chain("vp8-call", 0), seed=0)
    student = torch_restorer(perturbed_student("runet-p"))
    margin = int(np.ceil(max(max(abs(dx), abs(dy)) for dx, dy in offsets))) + 2
    inner = (slice(margin, -margin), slice(margin, -margin))
    own = ts.capped_psnr(gt[inner], student(clip[-1])[inner]) - ts.capped_psnr(gt[inner], clip[-1][inner])
    assert result["1"]["mean_gain"] == pytest.approx(own, abs=1e-6)  # k = 1 is the student on the last frame
    assert (
        tb.main(["--families", "vp8-call", "--student", f"x={tmp_path / 'missing.pt'}", "--no-progress"]) == 2
    )
    assert "missing.pt" in capsys.readouterr().err

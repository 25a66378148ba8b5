"""benchmarks.stream_probe: a learned student with and without the stream, trained and scored the same way."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from benchmarks import stream_probe as sp
from benchmarks.frames import BenchInputError
from kd_trainer.chain import Chain, received_clip
from kd_trainer.io import write_image
from tests.helpers import make_pool

pytest.importorskip("av")


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (0, 0), 1.2)


def test_stream_inputs_hold_the_last_frame_and_two_means() -> None:
    img = _photo(64, 80, 1)
    chain = Chain(noise="gauss", noise_sigma=10.0, codec="h264", quality=1, preset="ultrafast", clip_frames=4)
    frames, offsets = received_clip(img, chain, seed=2)
    x = sp.stream_inputs(frames, offsets)
    assert x.shape == (64, 80, 9) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[..., :3], frames[-1])
    err = [np.abs(x[..., c : c + 3].astype(float) - img).mean() for c in (0, 3, 6)]
    assert err[2] < err[0] - 1  # averaging independent noise brings the plain mean nearer the truth


def test_training_clips_are_call_clips_of_the_crop_size() -> None:
    inputs, truths = sp.training_clips([_photo(120, 140, 3)], count=3, crop=64)
    assert inputs.shape == (3, 64, 64, 9) and truths.shape == (3, 64, 64, 3)
    assert not np.array_equal(inputs[0, ..., :3], truths[0])  # damaged by the chain
    with pytest.raises(BenchInputError, match="at least 200x200"):
        sp.training_clips([_photo(64, 64, 0)], count=1, crop=200)


def test_a_fresh_probe_is_the_identity_and_training_lowers_its_error() -> None:
    net = sp.ProbeNet(9)
    x = torch.rand(1, 9, 31, 33)
    assert torch.equal(net(x), x[:, :3])  # zero-initialised tail, odd sizes padded and cropped back
    inputs, truths = sp.training_clips([_photo(120, 140, 4)], count=4, crop=64)
    before = np.abs(inputs[..., :3].astype(float) - truths).mean()
    trained = sp.train_probe(inputs, truths, channels=3, steps=60, progress=False)
    after = np.mean(
        [np.abs(sp.restore(trained, i).astype(float) - t).mean() for i, t in zip(inputs, truths, strict=True)]
    )
    assert after < before


def test_cli_trains_both_probes_and_scores_the_val_clips(tmp_path: Path, capsys) -> None:
    make_pool([(64, 64)], 96)
    train = tmp_path / "train"
    write_image(train / "p.png", _photo(176, 192, 5))
    out = tmp_path / "probe.json"
    argv = ["--steps", "3", "--clips", "2", "--families", "call-540p", "--train-dir", str(train)]
    assert sp.main([*argv, "--json", str(out), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["single call-540p", "stream call-540p"]
    result = json.loads(out.read_text())
    assert result["setup"] == {"steps": 3, "clips": 2, "train_photos": 1, "seed": 0}
    assert len(result["stream"]["call-540p"]["frames"]) == 1
    assert sp.main(["--steps", "0", "--no-progress"]) == 2
    assert sp.main(["--families", "jpeg", "--train-dir", str(train), "--no-progress"]) == 2
    assert "single frame" in capsys.readouterr().err

"""Does a *learned* student gain from the stream? A probe for the clip-level design, on the **val** split.

:mod:`benchmarks.temporal_bound` measures fixed rules for fusing a call's earlier frames. This probe trains the
same small network twice, on the same training clips for the same number of steps: once on the clip's last
frame alone, once on the last frame plus two averages of the aligned clip (the robust and the plain mean of
:func:`benchmarks.temporal_bound.fuse`). Both then restore the val frames of the clip families, aligned by
motion *estimated* from the decoded frames (as a product would have to), and the difference between the two
says what the stream is worth to a learned student of that size.

Training clips are crops of the train photos through training call chains with H.264 (8 frames, a pan of
0.3-2 px per frame; aligned by the known pan plus 0.3 px of noise, the size of the estimator's errors). The
network is a probe, not a product: one level at half resolution, a few residual blocks, trained only on call
chains, so it says nothing about clean, noisy or single-step frames, which it never saw.

    python -m benchmarks.stream_probe --json runs/stream-probe.json        # ~20 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from benchmarks import temporal_bound as tb
from benchmarks import test_split as ts
from benchmarks.frames import BenchInputError
from kd_trainer.chain import family_chain, received_clip, sample_train_chain
from kd_trainer.models.student import ResBlock
from kd_trainer.sources import frame_kind

#: The probe's two inputs: the last frame alone (3 channels) or with the robust and plain means (9).
INPUTS = {"single": 3, "stream": 9}
ROBUST_LEVELS = 4.0


def stream_inputs(frames: Sequence[np.ndarray], motion: Sequence[tuple[float, float]]) -> np.ndarray:
    """HxWx9 uint8: the last frame, the robust mean and the plain mean of the clip aligned by ``motion``."""
    aligned = tb.align_to_last(frames, motion)
    k = len(frames)
    return np.concatenate([frames[-1], tb.fuse(aligned, k, ROBUST_LEVELS), tb.fuse(aligned, k)], axis=2)


def training_clips(
    photos: Sequence[np.ndarray], count: int, crop: int = 160, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` training clips: (N x crop x crop x 9 stream inputs, N x crop x crop x 3 ground truths), uint8.

    Each clip is a random crop of a random photo through a training call chain with H.264 and a down-scale,
    coded as an 8-frame panning clip."""
    usable = [p for p in photos if min(p.shape[:2]) >= crop]
    if not usable:
        raise BenchInputError(f"no training photo is at least {crop}x{crop} pixels")
    inputs, truths = [], []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        photo = usable[int(rng.integers(len(usable)))]
        y = int(rng.integers(0, photo.shape[0] - crop + 1))
        x = int(rng.integers(0, photo.shape[1] - crop + 1))
        gt = np.ascontiguousarray(photo[y : y + crop, x : x + crop])
        chain = sample_train_chain(rng, h264=True)
        while chain.codec != "h264" or chain.down <= 1:
            chain = sample_train_chain(rng, h264=True)
        chain = dataclasses.replace(chain, clip_frames=8, pan=float(rng.uniform(0.3, 2.0)))
        frames, offsets = received_clip(gt, chain, seed=i)
        jittered = [
            (dx + rng.normal(0, 0.3), dy + rng.normal(0, 0.3)) if dx or dy else (0.0, 0.0)
            for dx, dy in offsets
        ]
        inputs.append(stream_inputs(frames, jittered))
        truths.append(gt)
    return np.stack(inputs), np.stack(truths)


class ProbeNet(nn.Module):
    """The last frame plus a residual computed at half resolution from ``channels`` input channels."""

    def __init__(self, channels: int, width: int = 32, blocks: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(channels, width, 2, stride=2)
        self.body = nn.Sequential(*[ResBlock(width) for _ in range(blocks)])
        self.tail = nn.Conv2d(width, 12, 1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        padded = F.pad(x, (0, w % 2, 0, h % 2), mode="reflect") if h % 2 or w % 2 else x
        out = padded[:, :3] + F.pixel_shuffle(self.tail(self.body(self.stem(padded))), 2)
        return out[:, :, :h, :w]


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


def train_probe(
    inputs: np.ndarray, truths: np.ndarray, channels: int, steps: int, seed: int = 0, progress: bool = True
) -> ProbeNet:
    """A :class:`ProbeNet` on the first ``channels`` input channels: L1, Adam at 1e-3, batches of 8 random 96x96
    windows, ``steps`` steps."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = _tensor(inputs[..., :channels]), _tensor(truths)
    net = ProbeNet(channels)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    size = min(96, x.shape[2], x.shape[3])
    for _ in tqdm(range(steps), desc=f"training ({channels} channels)", unit="step", disable=not progress):
        idx = torch.from_numpy(rng.integers(0, len(x), 8))
        i, j = (int(v) for v in rng.integers(0, np.array(x.shape[2:]) - size + 1))
        loss = F.l1_loss(net(x[idx, :, i : i + size, j : j + size]), y[idx, :, i : i + size, j : j + size])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def restore(net: ProbeNet, inputs: np.ndarray) -> np.ndarray:
    """``net`` on one HxWxC uint8 input -> HxWx3 uint8."""
    with torch.no_grad():
        out = net(_tensor(inputs[None, ..., : net.stem.in_channels]))[0]
    return (out.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def stream_probe(
    steps: int = 10_000,
    clips: int = 700,
    families: list[str] | None = None,
    train_dir: str | Path | None = None,
    val_dir: str | Path | None = None,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Train both probes and score them on the val clips: ``{"single"|"stream": {family: summary}}``.

    ``seed`` draws the training clips and the probes' initial weights and batches (one seed is one run; the
    probe is small enough for runs to differ by a tenth of a dB per family)."""
    if steps < 1 or clips < 1:
        raise BenchInputError(f"need at least one step and one clip, got steps={steps}, clips={clips}")
    names = tb.clip_family_names(families)
    photos = [img for _, img in ts.load_train_frames(train_dir)]
    inputs, truths = training_clips(photos, clips, seed=seed)
    nets = {kind: train_probe(inputs, truths, ch, steps, seed, progress) for kind, ch in INPUTS.items()}
    frames = sorted(ts.load_val_frames(val_dir, None), key=lambda f: f[0])
    gains: dict[str, dict[str, dict[str, float]]] = {kind: {} for kind in nets}
    bar = tqdm(total=len(names) * len(frames), desc="scoring val clips", unit="clip", disable=not progress)
    for family in names:
        for index, (name, gt) in enumerate(frames):
            clip, offsets = received_clip(gt, family_chain(family, index), seed=index)
            probe_input = stream_inputs(clip, tb.estimate_offsets(clip))
            inner = tb.pan_interior(offsets, gt.shape)
            alone = ts.capped_psnr(gt[inner], clip[-1][inner])
            for kind, net in nets.items():
                out = restore(net, probe_input)
                gains[kind].setdefault(family, {})[name] = ts.capped_psnr(gt[inner], out[inner]) - alone
            bar.update()
    bar.close()
    kinds = {name: frame_kind(name) for name, _ in frames}
    return {
        kind: {family: tb.gain_summary(per, kinds) for family, per in by_family.items()}
        for kind, by_family in gains.items()
    } | {"setup": {"steps": steps, "clips": clips, "train_photos": len(photos), "seed": seed}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.stream_probe", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--steps", type=int, default=10_000, help="training steps per probe (default 10000)")
    ap.add_argument("--clips", type=int, default=700, help="training clips (default 700)")
    ap.add_argument("--families", default="", help="comma-separated clip families (default: all of them)")
    ap.add_argument(
        "--train-dir", default=None, help="training photos (default: the photo pool's train/ split)"
    )
    ap.add_argument("--val-dir", default=None, help="val frames (default: the photo pool's val/ split)")
    ap.add_argument(
        "--seed", type=int, default=0, help="training clips, initial weights and batches (default 0)"
    )
    ap.add_argument("--json", default="", help="also write the per-frame gains here")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        families = [f for f in args.families.split(",") if f] or None
        result = stream_probe(
            args.steps, args.clips, families, args.train_dir, args.val_dir, not args.no_progress, args.seed
        )
    except (BenchInputError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for kind in INPUTS:
        for family, r in result[kind].items():
            content = ", ".join(f"{c} {g:+.3f}" for c, g in r["by_content"].items())
            print(
                f"{kind} {family}: mean gain {r['mean_gain']:+.3f} dB ({content}), worst {r['worst_gain']:+.2f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

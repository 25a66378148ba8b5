"""What could the earlier frames of a call add? An oracle bound for the call targets, on the **val** split.

The H.264 and VP8 test families code an 8-frame clip in which the camera pans, and a student sees only the
clip's last frame. Here every decoded frame of that clip is aligned with the last one by the *known* pan (an
oracle: a product would have to estimate the motion, and would do worse) and the last ``k`` aligned frames are
averaged. The PSNR gain of that average over the last frame alone says how much plain temporal fusion of the
stream could add to a single-frame sharpener. Gains are measured on the frame's interior, away from the
borders that the pan moves out of view. Each family's gains are also given by content kind (people, photo,
text: :func:`kd_trainer.sources.frame_kind`).

    python -m benchmarks.temporal_bound --families call-540p,call-360p,mixed --json runs/temporal-bound.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from benchmarks import test_split as ts
from benchmarks.frames import BenchInputError
from kd_trainer.chain import TEST_FAMILIES, VIDEO_CODECS, family_chain, received_clip, shift_image
from kd_trainer.sources import CONTENT_KINDS, frame_kind

DEFAULT_WINDOWS = (1, 2, 4, 8)


def clip_families() -> list[str]:
    """Test families whose chain codes a clip of several frames (the ones temporal fusion could help)."""
    probe = np.random.default_rng(0)
    return [
        name
        for name, family in TEST_FAMILIES.items()
        if (chain := family.make(probe)).clip_frames > 1 and chain.codec in VIDEO_CODECS
    ]


def align_to_last(frames: Sequence[np.ndarray], offsets: Sequence[tuple[float, float]]) -> list[np.ndarray]:
    """Move each frame by minus its pan offset, so that every frame lines up with the last (float32, HxWx3)."""
    if len(frames) != len(offsets) or not frames:
        raise BenchInputError(
            f"need one offset per frame, got {len(frames)} frames and {len(offsets)} offsets"
        )
    return [
        shift_image(frame.astype(np.float32), -dx, -dy) if dx or dy else frame.astype(np.float32)
        for frame, (dx, dy) in zip(frames, offsets, strict=True)
    ]


def fusion_gains(
    frames: Sequence[np.ndarray],
    offsets: Sequence[tuple[float, float]],
    gt: np.ndarray,
    windows: Sequence[int] = DEFAULT_WINDOWS,
) -> dict[int, float]:
    """PSNR gain (dB) of the mean of the last ``k`` aligned frames over the last frame, per ``k`` in ``windows``,
    on the interior that every frame of the clip still shows."""
    if any(k < 1 for k in windows):
        raise BenchInputError(f"fusion windows must be >= 1 frame, got {list(windows)}")
    aligned = align_to_last(frames, offsets)
    margin = math.ceil(max(max(abs(dx), abs(dy)) for dx, dy in offsets)) + 2
    h, w = gt.shape[:2]
    if h <= 2 * margin or w <= 2 * margin:
        raise BenchInputError(f"a {w}x{h} frame has no interior left after a pan of {margin - 2} pixels")
    inner = (slice(margin, h - margin), slice(margin, w - margin))
    ref = gt[inner]
    alone = ts.capped_psnr(ref, frames[-1][inner])
    gains = {}
    for k in windows:
        fused = np.mean(aligned[-k:], axis=0)[inner]
        gains[k] = ts.capped_psnr(ref, np.clip(np.rint(fused), 0, 255).astype(np.uint8)) - alone
    return gains


def temporal_bound(
    families: list[str] | None = None,
    val_dir: str | Path | None = None,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Per family and window: mean, worst and best fusion gain over the val frames, and the per-frame gains.

    Frames are indexed by name as in :func:`benchmarks.test_split.degraded_set`, so each clip's last frame is
    exactly the frame the students are scored on."""
    clips = clip_families()
    names, _skipped = ts.available_families(families or clips)
    single = [n for n in names if n not in clips]
    if single:
        raise BenchInputError(f"{', '.join(single)} code a single frame: nothing to fuse (use {clips})")
    frames = sorted(ts.load_val_frames(val_dir, None), key=lambda f: f[0])
    per_frame: dict[str, dict[str, dict[int, float]]] = {}
    bar = tqdm(total=len(names) * len(frames), desc="coding clips", unit="clip", disable=not progress)
    for family in names:
        for index, (name, gt) in enumerate(frames):
            clip, offsets = received_clip(gt, family_chain(family, index), seed=index)
            per_frame.setdefault(family, {})[name] = fusion_gains(clip, offsets, gt, windows)
            bar.update()
    bar.close()
    kinds = {name: frame_kind(name) for name, _ in frames}
    result: dict[str, dict[str, Any]] = {}
    for family, gains in per_frame.items():
        result[family] = {
            str(k): {
                "mean_gain": float(np.mean([g[k] for g in gains.values()])),
                "worst_gain": float(min(g[k] for g in gains.values())),
                "best_gain": float(max(g[k] for g in gains.values())),
                "by_content": {
                    kind: float(np.mean(kind_gains))
                    for kind in CONTENT_KINDS
                    if (kind_gains := [g[k] for name, g in gains.items() if kinds[name] == kind])
                },
                "frames": {name: g[k] for name, g in gains.items()},
            }
            for k in windows
        }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.temporal_bound", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--families", default="", help="comma-separated clip families (default: all of them)")
    ap.add_argument("--val-dir", default=None, help="val frames (default: the photo pool's val/ split)")
    ap.add_argument(
        "--windows", default="1,2,4,8", help="how many of the last frames to average, e.g. 1,2,4,8"
    )
    ap.add_argument("--json", default="", help="also write the per-frame gains here")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        families = [f for f in args.families.split(",") if f] or None
        windows = [int(k) for k in args.windows.split(",") if k]
        result = temporal_bound(families, args.val_dir, windows, progress=not args.no_progress)
    except (BenchInputError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for family, by_window in result.items():
        cells = ", ".join(f"{k} frames {r['mean_gain']:+.3f}" for k, r in by_window.items())
        count = len(next(iter(by_window.values()))["frames"])
        print(
            f"{family}: mean gain of the aligned average over the last frame: {cells} dB ({count} val frames)"
        )
        for kind in CONTENT_KINDS:
            if kind in next(iter(by_window.values()))["by_content"]:
                cells = ", ".join(f"{k} frames {r['by_content'][kind]:+.3f}" for k, r in by_window.items())
                print(f"  {kind}: {cells} dB")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How far can a linear filter go? An oracle bound for the call targets, on the **val** split.

For every frame and test family, the best ``size`` x ``size`` linear filter (per colour channel, plus an offset)
is fitted by least squares *on that frame's own ground truth* and scored like a student: PSNR of its output
minus the degraded input's. No product could ship it (it knows the answer, per frame), so it bounds every fixed
or per-frame linear filter of that size, unsharp masks of a small radius included. A family where even this oracle gains little is one where a
sharpener has to rebuild detail the codec threw away, not amplify what is left.

    python -m benchmarks.linear_bound --families call-540p,call-360p,mixed --json runs/linear-bound.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm.auto import tqdm

from benchmarks import test_split as ts
from benchmarks.frames import BenchInputError


def fit_linear_filter(
    degraded: np.ndarray, target: np.ndarray, size: int = 9, samples: int = 200_000, seed: int = 0
) -> np.ndarray:
    """Least-squares ``size`` x ``size`` filter plus offset mapping each channel of ``degraded`` onto
    ``target`` (both HxWx3 uint8), fitted on ``samples`` random pixels whose window lies inside the frame.
    Returns ``(3, size*size + 1)``: per channel, the correlation weights in row-major window order, then the
    offset."""
    if degraded.shape != target.shape or degraded.ndim != 3 or degraded.shape[2] != 3:
        raise BenchInputError(f"need two HxWx3 frames of one shape, got {degraded.shape} and {target.shape}")
    if size < 1 or size % 2 == 0:
        raise BenchInputError(f"filter size must be odd and positive, got {size}")
    r = size // 2
    h, w = degraded.shape[0] - 2 * r, degraded.shape[1] - 2 * r  # windows inside the frame (no padding)
    if h < 1 or w < 1:
        raise BenchInputError(
            f"a {degraded.shape[1]}x{degraded.shape[0]} frame is too small for a {size}x{size} filter"
        )
    rng = np.random.default_rng(seed)
    idx = rng.choice(h * w, size=min(samples, h * w), replace=False)
    ys, xs = np.divmod(idx, w)
    weights = np.empty((3, size * size + 1))
    for c in range(3):
        channel = degraded[..., c].astype(np.float64)
        windows = sliding_window_view(channel, (size, size))[ys, xs].reshape(len(idx), -1)
        design = np.hstack([windows, np.ones((len(idx), 1))])
        weights[c], *_ = np.linalg.lstsq(design, target[ys + r, xs + r, c].astype(np.float64), rcond=None)
    return weights


def apply_linear_filter(degraded: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``degraded`` (HxWx3 uint8) through :func:`fit_linear_filter`'s weights, rounded to uint8."""
    import cv2

    size = int(round(np.sqrt(weights.shape[1] - 1)))
    out = np.empty(degraded.shape, np.float64)
    for c in range(3):
        kernel = weights[c, :-1].reshape(size, size)
        channel = degraded[..., c].astype(np.float64)
        out[..., c] = cv2.filter2D(channel, -1, kernel, borderType=cv2.BORDER_REFLECT_101) + weights[c, -1]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def oracle_gain(degraded: np.ndarray, gt: np.ndarray, size: int = 9, samples: int = 200_000) -> float:
    """PSNR gain (dB) of the best per-frame linear filter over the degraded frame itself."""
    restored = apply_linear_filter(degraded, fit_linear_filter(degraded, gt, size, samples))
    return ts.capped_psnr(gt, restored) - ts.capped_psnr(gt, degraded)


def linear_bound(
    families: list[str] | None = None,
    val_dir: str | Path | None = None,
    size: int = 9,
    samples: int = 200_000,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Per family: mean, worst and best oracle gain over the val frames, and the per-frame gains."""
    names, _skipped = ts.available_families(families)
    names = [n for n in names if n != "clean"]  # the clean frame is its own ground truth: nothing to bound
    frames = ts.load_val_frames(val_dir, None)
    dset = ts.degraded_set(frames, names, progress=progress, desc="degrading val frames")
    per_family: dict[str, dict[str, float]] = {}
    for item in tqdm(dset, desc=f"fitting {size}x{size} filters", unit="frame", disable=not progress):
        per_family.setdefault(item.family, {})[item.name] = oracle_gain(item.degraded, item.gt, size, samples)
    return {
        family: {
            "mean_gain": float(np.mean(list(gains.values()))),
            "worst_gain": float(min(gains.values())),
            "best_gain": float(max(gains.values())),
            "frames": gains,
            "filter_size": size,
        }
        for family, gains in per_family.items()
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.linear_bound", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--families", default="call-540p,call-360p,mixed", help="comma-separated test families")
    ap.add_argument("--val-dir", default=None, help="val frames (default: the photo pool's val/ split)")
    ap.add_argument("--size", type=int, default=9, help="filter size in pixels (odd)")
    ap.add_argument("--samples", type=int, default=200_000, help="pixels per frame and channel to fit on")
    ap.add_argument("--json", default="", help="also write the per-frame gains here")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        families = [f for f in args.families.split(",") if f] or None
        result = linear_bound(families, args.val_dir, args.size, args.samples, progress=not args.no_progress)
    except (BenchInputError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for family, r in result.items():
        print(
            f"{family}: oracle {args.size}x{args.size} linear filter, mean gain {r['mean_gain']:+.3f} dB "
            f"(worst {r['worst_gain']:+.3f}, best {r['best_gain']:+.3f}, {len(r['frames'])} val frames)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

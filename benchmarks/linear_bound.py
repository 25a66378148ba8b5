"""How far can a linear filter go? An oracle bound for the call targets, on the **val** split.

For every frame and test family, the best ``size`` x ``size`` linear filter (per colour channel, plus an offset)
is fitted by least squares *on that frame's own ground truth* and scored like a student: PSNR of its output
minus the degraded input's. No product could ship it (it knows the answer, per frame), so it bounds every fixed
or per-frame linear filter of that size, unsharp masks of a small radius included. A family where even this oracle gains little is one where a
sharpener has to rebuild detail the codec threw away, not amplify what is left.

    python -m benchmarks.linear_bound --families call-540p,call-360p,mixed --json runs/linear-bound.json

``--leave-one-out`` scores a filter that knows the damage family but not the frame instead: one filter per family,
fitted on the family's other val frames and applied to the held-out one. No oracle, so it can lose to the input; it
shows how much a sharpener would gain from knowing which damage a frame has.
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


def _sampled_windows(
    degraded: np.ndarray, target: np.ndarray, size: int, samples: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per channel, the design matrix (``size*size`` window values plus a 1 for the offset) and the target values
    of ``samples`` random pixels whose window lies inside the frame."""
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
    rows = []
    for c in range(3):
        channel = degraded[..., c].astype(np.float64)
        windows = sliding_window_view(channel, (size, size))[ys, xs].reshape(len(idx), -1)
        design = np.hstack([windows, np.ones((len(idx), 1))])
        rows.append((design, target[ys + r, xs + r, c].astype(np.float64)))
    return rows


def fit_linear_filter(
    degraded: np.ndarray, target: np.ndarray, size: int = 9, samples: int = 200_000, seed: int = 0
) -> np.ndarray:
    """Least-squares ``size`` x ``size`` filter plus offset mapping each channel of ``degraded`` onto
    ``target`` (both HxWx3 uint8), fitted on ``samples`` random pixels whose window lies inside the frame.
    Returns ``(3, size*size + 1)``: per channel, the correlation weights in row-major window order, then the
    offset."""
    weights = np.empty((3, size * size + 1))
    for c, (design, values) in enumerate(_sampled_windows(degraded, target, size, samples, seed)):
        weights[c], *_ = np.linalg.lstsq(design, values, rcond=None)
    return weights


def leave_one_out_gains(
    pairs: list[tuple[np.ndarray, np.ndarray]], size: int = 9, samples: int = 100_000
) -> list[float]:
    """For each ``(degraded, ground truth)`` pair, the PSNR gain of one filter fitted by least squares on all the
    *other* pairs together (a filter that knows the damage family, not the frame): a non-oracle counterpart of
    :func:`oracle_gain`. Needs at least two pairs."""
    if len(pairs) < 2:
        raise BenchInputError(f"leave-one-out needs at least two frames, got {len(pairs)}")
    n = size * size + 1
    normal = np.zeros((len(pairs), 3, n, n))
    moment = np.zeros((len(pairs), 3, n))
    for i, (degraded, target) in enumerate(pairs):
        for c, (design, values) in enumerate(_sampled_windows(degraded, target, size, samples, seed=i)):
            normal[i, c], moment[i, c] = design.T @ design, design.T @ values
    total_normal, total_moment = normal.sum(0), moment.sum(0)
    ridge = 1e-6 * np.eye(n)  # keeps a flat frame's singular system solvable
    gains = []
    for i, (degraded, target) in enumerate(pairs):
        weights = np.stack(
            [
                np.linalg.solve(total_normal[c] - normal[i, c] + ridge, total_moment[c] - moment[i, c])
                for c in range(3)
            ]
        )
        restored = apply_linear_filter(degraded, weights)
        gains.append(ts.capped_psnr(target, restored) - ts.capped_psnr(target, degraded))
    return gains


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
    leave_one_out: bool = False,
) -> dict[str, dict[str, Any]]:
    """Per family: mean, worst and best gain over the val frames, and the per-frame gains: of the per-frame oracle
    filter, or with ``leave_one_out`` of the family filter fitted on the family's other frames."""
    names, _skipped = ts.available_families(families)
    names = [n for n in names if n != "clean"]  # the clean frame is its own ground truth: nothing to bound
    frames = ts.load_val_frames(val_dir, None)
    dset = ts.degraded_set(frames, names, progress=progress, desc="degrading val frames")
    per_family: dict[str, dict[str, float]] = {}
    if leave_one_out:
        by_family: dict[str, list[Any]] = {}
        for item in dset:
            by_family.setdefault(item.family, []).append(item)
        for family, items in tqdm(by_family.items(), desc="leave-one-out filters", disable=not progress):
            gains = leave_one_out_gains([(it.degraded, it.gt) for it in items], size, samples)
            per_family[family] = {it.name: g for it, g in zip(items, gains, strict=True)}
    else:
        for item in tqdm(dset, desc=f"fitting {size}x{size} filters", unit="frame", disable=not progress):
            per_family.setdefault(item.family, {})[item.name] = oracle_gain(
                item.degraded, item.gt, size, samples
            )
    return {
        family: {
            "mean_gain": float(np.mean(list(gains.values()))),
            "worst_gain": float(min(gains.values())),
            "best_gain": float(max(gains.values())),
            "frames": gains,
            "filter_size": size,
            "mode": "leave-one-out" if leave_one_out else "oracle",
            "made_worse": sum(g < 0 for g in gains.values()),
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
    ap.add_argument(
        "--leave-one-out",
        action="store_true",
        help="instead of the per-frame oracle: one filter per family, fitted on the family's other frames",
    )
    ap.add_argument("--json", default="", help="also write the per-frame gains here")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        families = [f for f in args.families.split(",") if f] or None
        result = linear_bound(
            families,
            args.val_dir,
            args.size,
            args.samples,
            progress=not args.no_progress,
            leave_one_out=args.leave_one_out,
        )
    except (BenchInputError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    what = "leave-one-out family" if args.leave_one_out else "oracle"
    for family, r in result.items():
        print(
            f"{family}: {what} {args.size}x{args.size} linear filter, mean gain {r['mean_gain']:+.3f} dB "
            f"(worst {r['worst_gain']:+.3f}, best {r['best_gain']:+.3f}, "
            f"made worse {r['made_worse']}/{len(r['frames'])} val frames)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What could the earlier frames of a call add? A bound for the call targets, on the **val** split.

The H.264 and VP8 test families code an 8-frame clip in which the camera pans, and a student sees only the
clip's last frame. Here every decoded frame of that clip is aligned with the last (bicubic warp) and the last
``k`` aligned frames are averaged. The PSNR gain of that average over the last frame alone says how much
temporal fusion of the stream could add to a single-frame sharpener. The motion is either the *known* pan (an
oracle) or ``--motion estimated``: measured from the decoded frames themselves (phase correlation refined by
ECC, :func:`estimate_offsets`), as a product would have to. ``--robust H`` weighs each earlier frame per pixel
by ``exp(-(d / H)^2)``, ``d`` the local mean absolute luma difference to the last frame (levels), so that
pixels where the frames disagree (motion the warp missed, edges the codec kept) stay the last frame's.
``--student NAME=CKPT`` runs a student on every average (and on the last frame, ``k = 1``), so the gains say
what fusion adds *with* that student. Gains are measured on the frame's interior, away from the borders that
the pan moves out of view. Each family's gains are also given by content kind (people, photo, text:
:func:`kd_trainer.sources.frame_kind`).

    python -m benchmarks.temporal_bound --families call-540p,call-360p,mixed --json runs/temporal-bound.json
    python -m benchmarks.temporal_bound --motion estimated --robust 4 --student quality=kd_trainer/assets/students/quality.pt
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from benchmarks import test_split as ts
from benchmarks.frames import BenchInputError
from benchmarks.val_families import parse_spec
from kd_trainer.chain import TEST_FAMILIES, VIDEO_CODECS, family_chain, received_clip
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


def clip_family_names(families: Sequence[str] | None = None) -> list[str]:
    """The ``families`` this machine can make (default: every clip family); a single-frame family is an error."""
    clips = clip_families()
    names, _skipped = ts.available_families(families or clips)
    single = [n for n in names if n not in clips]
    if single:
        raise BenchInputError(f"{', '.join(single)} code a single frame: nothing to fuse (use {clips})")
    return names


def pan_interior(offsets: Sequence[tuple[float, float]], shape: Sequence[int]) -> tuple[slice, slice]:
    """The part of a frame of ``shape`` that every frame of a clip panned by ``offsets`` still shows."""
    margin = math.ceil(max(max(abs(dx), abs(dy)) for dx, dy in offsets)) + 2
    h, w = shape[:2]
    if h <= 2 * margin or w <= 2 * margin:
        raise BenchInputError(f"a {w}x{h} frame has no interior left after a pan of {margin - 2} pixels")
    return slice(margin, h - margin), slice(margin, w - margin)


def gain_summary(gains: dict[str, float], kinds: dict[str, str]) -> dict[str, Any]:
    """Mean, worst and best of per-frame ``gains`` (by frame name), and the mean per content kind of ``kinds``."""
    return {
        "mean_gain": float(np.mean(list(gains.values()))),
        "worst_gain": float(min(gains.values())),
        "best_gain": float(max(gains.values())),
        "by_content": {
            kind: float(np.mean(kind_gains))
            for kind in CONTENT_KINDS
            if (kind_gains := [g for name, g in gains.items() if kinds[name] == kind])
        },
        "frames": gains,
    }


def _warp(frame: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``frame`` moved by (dx, dy) pixels: bicubic, mirrored borders, float32."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    h, w = frame.shape[:2]
    return cv2.warpAffine(
        frame.astype(np.float32), m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101
    )


def align_to_last(frames: Sequence[np.ndarray], offsets: Sequence[tuple[float, float]]) -> list[np.ndarray]:
    """Move each frame by minus its pan offset, so that every frame lines up with the last (float32, HxWx3)."""
    if len(frames) != len(offsets) or not frames:
        raise BenchInputError(
            f"need one offset per frame, got {len(frames)} frames and {len(offsets)} offsets"
        )
    return [
        _warp(frame, -dx, -dy) if dx or dy else frame.astype(np.float32)
        for frame, (dx, dy) in zip(frames, offsets, strict=True)
    ]


def _luma(frame: np.ndarray) -> np.ndarray:
    rgb = np.clip(frame, 0, 255).astype(np.float32)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def estimate_offsets(frames: Sequence[np.ndarray]) -> list[tuple[float, float]]:
    """Each frame's offset from the last, (dx, dy) in pixels as :func:`received_clip` gives them, measured from
    the frames alone: phase correlation of the lumas, refined by ECC (translation only; the phase estimate
    stands where ECC does not converge)."""
    if not frames:
        raise BenchInputError("no frames to estimate motion from")
    last = _luma(frames[-1])
    window = cv2.createHanningWindow(last.shape[::-1], cv2.CV_32F)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
    offsets = []
    for frame in frames[:-1]:
        luma = _luma(frame)
        (dx, dy), _response = cv2.phaseCorrelate(last, luma, window)
        warp = np.float32([[1, 0, dx], [0, 1, dy]])
        try:
            _, warp = cv2.findTransformECC(last, luma, warp, cv2.MOTION_TRANSLATION, criteria, None, 5)
        except cv2.error:
            pass  # flat or featureless frames: keep the phase-correlation estimate
        offsets.append((float(warp[0, 2]), float(warp[1, 2])))
    return [*offsets, (0.0, 0.0)]


def fuse(aligned: Sequence[np.ndarray], k: int, robust: float = 0.0) -> np.ndarray:
    """The mean of the last ``k`` aligned frames (uint8). With ``robust`` > 0 each earlier frame counts per pixel
    by ``exp(-(d / robust)^2)``, ``d`` its 5x5 mean absolute luma difference to the last frame (levels)."""
    if k < 1:
        raise BenchInputError(f"fusion windows must be >= 1 frame, got {k}")
    if robust < 0:
        raise BenchInputError(f"the robust weight's scale must be >= 0 levels, got {robust}")
    last = aligned[-1]
    total = last.astype(np.float32).copy()
    weights = np.ones(last.shape[:2], np.float32)
    last_luma = _luma(last)
    for frame in aligned[-k:-1]:
        if robust > 0:
            diff = cv2.blur(np.abs(_luma(frame) - last_luma), (5, 5))
            weight = np.exp(-((diff / robust) ** 2))
        else:
            weight = np.ones_like(weights)
        total += frame * weight[..., None]
        weights += weight
    return np.clip(np.rint(total / weights[..., None]), 0, 255).astype(np.uint8)


def fusion_gains(
    frames: Sequence[np.ndarray],
    offsets: Sequence[tuple[float, float]],
    gt: np.ndarray,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    robust: float = 0.0,
    motion: Sequence[tuple[float, float]] | None = None,
    restorer: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[int, float]:
    """PSNR gain (dB) over the last frame of the (robust) mean of the last ``k`` aligned frames, per ``k`` in
    ``windows``, on the interior that every frame of the clip still shows (by the true ``offsets``).

    Frames are aligned by ``motion`` (default: the true offsets). With ``restorer`` each mean (and the last
    frame itself for ``k = 1``) goes through it before scoring; the gains stay over the untouched last frame.
    """
    if any(k < 1 for k in windows):
        raise BenchInputError(f"fusion windows must be >= 1 frame, got {list(windows)}")
    aligned = align_to_last(frames, offsets if motion is None else motion)
    inner = pan_interior(offsets, gt.shape)
    ref = gt[inner]
    alone = ts.capped_psnr(ref, frames[-1][inner])
    gains = {}
    for k in windows:
        fused = fuse(aligned, k, robust)
        if restorer is not None:
            fused = restorer(fused)
        gains[k] = ts.capped_psnr(ref, fused[inner]) - alone
    return gains


def temporal_bound(
    families: list[str] | None = None,
    val_dir: str | Path | None = None,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    progress: bool = True,
    robust: float = 0.0,
    estimated: bool = False,
    restorer: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per family and window: mean, worst and best fusion gain over the val frames, and the per-frame gains.

    ``estimated`` aligns by :func:`estimate_offsets` instead of the known pan; ``robust`` and ``restorer`` are
    those of :func:`fusion_gains`. Frames are indexed by name as in :func:`benchmarks.test_split.degraded_set`,
    so each clip's last frame is exactly the frame the students are scored on."""
    names = clip_family_names(families)
    frames = sorted(ts.load_val_frames(val_dir, None), key=lambda f: f[0])
    per_frame: dict[str, dict[str, dict[int, float]]] = {}
    bar = tqdm(total=len(names) * len(frames), desc="coding clips", unit="clip", disable=not progress)
    for family in names:
        for index, (name, gt) in enumerate(frames):
            clip, offsets = received_clip(gt, family_chain(family, index), seed=index)
            motion = estimate_offsets(clip) if estimated else None
            per_frame.setdefault(family, {})[name] = fusion_gains(
                clip, offsets, gt, windows, robust, motion, restorer
            )
            bar.update()
    bar.close()
    kinds = {name: frame_kind(name) for name, _ in frames}
    return {
        family: {str(k): gain_summary({name: g[k] for name, g in gains.items()}, kinds) for k in windows}
        for family, gains in per_frame.items()
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.temporal_bound", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--families", default="", help="comma-separated clip families (default: all of them)")
    ap.add_argument("--val-dir", default=None, help="val frames (default: the photo pool's val/ split)")
    ap.add_argument(
        "--windows", default="1,2,4,8", help="how many of the last frames to average, e.g. 1,2,4,8"
    )
    ap.add_argument(
        "--motion",
        choices=("known", "estimated"),
        default="known",
        help="align by the known pan (an oracle) or by motion estimated from the decoded frames",
    )
    ap.add_argument(
        "--robust",
        type=float,
        default=0.0,
        help="per-pixel weights exp(-(d/H)^2) on earlier frames, d their local luma difference (levels); 0: plain mean",
    )
    ap.add_argument(
        "--student",
        default="",
        metavar="NAME=CHECKPOINT",
        help="run this student on every average (and on the last frame, k = 1)",
    )
    ap.add_argument("--json", default="", help="also write the per-frame gains here")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    what = "the aligned average"
    try:
        families = [f for f in args.families.split(",") if f] or None
        windows = [int(k) for k in args.windows.split(",") if k]
        restorer = None
        if args.student:
            from kd_trainer.evaluate import torch_restorer
            from kd_trainer.models.student import load_student

            name, checkpoint = parse_spec(args.student)
            restorer = torch_restorer(load_student(checkpoint)[0].eval())
            what = f"{name} on the aligned average"
        result = temporal_bound(
            families,
            args.val_dir,
            windows,
            progress=not args.no_progress,
            robust=args.robust,
            estimated=args.motion == "estimated",
            restorer=restorer,
        )
    except (BenchInputError, ValueError, KeyError) as exc:  # a bad checkpoint is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for family, by_window in result.items():
        cells = ", ".join(f"{k} frames {r['mean_gain']:+.3f}" for k, r in by_window.items())
        count = len(next(iter(by_window.values()))["frames"])
        print(f"{family}: mean gain of {what} over the last frame: {cells} dB ({count} val frames)")
        for kind in CONTENT_KINDS:
            if kind in next(iter(by_window.values()))["by_content"]:
                cells = ", ".join(f"{k} frames {r['by_content'][kind]:+.3f}" for k, r in by_window.items())
                print(f"  {kind}: {cells} dB")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

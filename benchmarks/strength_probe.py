"""How strong should a student's residual be, frame by frame? A probe on the **val** split.

For one frame ``x`` with ground truth ``y`` and a student's residual ``r``, the scale ``s`` that minimises the
squared error of ``x + s * r`` has a closed form, ``s* = <r, y - x> / <r, r>`` (:func:`best_scale`). This probe
scores the val families at a grid of scales and reports three things next to the student as it is:

* the **oracle per frame**: each frame at its best grid scale (it knows ``y``, so no product can ship it; it bounds
  what restraint decided per frame could be worth),
* the **oracle per family**: one best scale per family (it knows the family),
* a **read-out**: ridge regression from the student's own pooled features (three statistics per level-0 channel,
  what a :class:`~kd_trainer.models.student.StrengthHead` reads; the deepest level's mean activations; the
  residual's energy and its correlation with the frame's high-pass) to ``s*``, fitted on train photos through training chains (centre crops of up to 1280x720), checked
  by cross-validation grouped by photo and then used to pick each val frame's scale.

If the read-out gets near the per-frame oracle, a strength head on the student is worth having; if it does not
beat the fixed scale, the frame does not show how much sharpening it can take, at least not linearly.
``--features head`` fits the read-out on the head's statistics alone. A student's own head is fitted by
:mod:`kd_trainer.strength` (to the gain criterion itself rather than to ``s*``; ``kd-train`` with ``strength_chains``).

    python -m benchmarks.strength_probe --json runs/strength-probe.json    # ~15 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from benchmarks import test_split as ts
from benchmarks.frames import BenchInputError
from benchmarks.val_families import parse_scales
from kd_trainer.data import to_tensor
from kd_trainer.models.student import ResidualUNet, StrengthHead, load_student
from kd_trainer.paths import SHIPPED_STUDENTS_DIR
from kd_trainer.strength import best_scale, frame_residual, training_chains

#: Scales scored per val frame, relative to the checkpoint's residual (1 = the student as it is).
DEFAULT_SCALES = tuple(round(0.125 * i, 3) for i in range(17))  # 0 .. 2
#: Frame statistics at the end of every feature vector (residual energy, high-pass energy, their correlation and the
#: high-pass's peakiness). ``features="network"`` drops them; ``"head"`` keeps only what a strength head inside the
#: student reads (:class:`kd_trainer.models.student.StrengthHead`: three statistics per level-0 channel).
FRAME_STATS = 4
FEATURE_SETS = ("all", "network", "head")


class FeatureTap:
    """A student's residual plus the features the read-out pools, from one forward pass."""

    def __init__(self, model: ResidualUNet) -> None:
        self.model = model.eval()

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(features, residual)`` for a uint8 RGB frame; the residual is HxWx3 float32 at the frame's size."""
        residual, level0, deep = frame_residual(self.model, rgb)
        luma = to_tensor(rgb).numpy().mean(0)
        high = luma - cv2.GaussianBlur(luma, (0, 0), 1.0)
        r_luma = residual.mean(2)
        r_energy, h_energy = float((residual**2).mean()), float((high**2).mean())
        stats = [
            np.log(1e-8 + r_energy),
            np.log(1e-8 + h_energy),
            float((r_luma * high).mean()) / np.sqrt(1e-12 + float((r_luma**2).mean()) * h_energy),
            np.log(1e-8 + float(np.abs(high).mean()))
            - 0.5 * np.log(1e-8 + h_energy),  # high-pass kurtosis-like
        ]
        parts = [StrengthHead.pooled(level0)[0].numpy()]  # first: what a strength head reads
        if len(self.model.encoders) > 1:  # a student with levels: its deepest one too
            parts.append(deep[0].clamp(min=0).mean((1, 2)).numpy())
        features = np.concatenate([*parts, np.asarray(stats, dtype=np.float32)])
        return features.astype(np.float32), residual

    @property
    def head_features(self) -> int:
        """How many of the leading features a :class:`StrengthHead` reads (three per level-0 channel)."""
        return 3 * self.model.config.widths[0]


@dataclass(frozen=True)
class Ridge:
    """A ridge regression on standardised features."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # last entry: the intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale
        return z @ self.weights[:-1] + self.weights[-1]


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> Ridge:
    """Least squares with an L2 penalty ``alpha`` on the standardised weights (not on the intercept)."""
    mean, scale = x.mean(0), x.std(0) + 1e-6
    a = np.c_[(x - mean) / scale, np.ones(len(x))]
    penalty = alpha * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0
    return Ridge(mean, scale, np.linalg.solve(a.T @ a + penalty, a.T @ y))


def group_cv_rmse(x: np.ndarray, y: np.ndarray, groups: np.ndarray, alpha: float, folds: int = 5) -> float:
    """Root-mean-square error of :func:`fit_ridge` on held-out groups (fold ``k``: groups with ``g % folds == k``)."""
    errors = []
    for k in range(folds):
        held = groups % folds == k
        if held.any() and (~held).any():
            errors.append(fit_ridge(x[~held], y[~held], alpha).predict(x[held]) - y[held])
    if not errors:
        raise BenchInputError("cross-validation needs photos in at least two folds (more train photos)")
    return float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))


def training_set(
    tap: FeatureTap,
    frames: Sequence[tuple[str, np.ndarray]],
    chains: int,
    seed: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(features, s*, photo index)`` for ``chains`` balanced training chains on each photo (centre-cropped)."""
    rows, targets, groups = [], [], []
    bar = tqdm(total=len(frames) * chains, desc="train frames", unit="frame", disable=not progress)
    for i, truth, degraded in training_chains(frames, chains, seed):
        features, residual = tap(degraded)
        rows.append(features)
        targets.append(best_scale(residual, degraded, truth))
        groups.append(i)
        bar.update()
    bar.close()
    return np.stack(rows), np.asarray(targets), np.asarray(groups)


def val_rows(
    tap: FeatureTap, dset: Sequence[ts.Degraded], scales: Sequence[float], progress: bool = True
) -> list[dict[str, Any]]:
    """Per degraded val frame: family, frame, features, ``s*`` and the PSNR gain at each of ``scales``."""
    rows = []
    for item in tqdm(dset, desc="val frames", unit="frame", disable=not progress):
        features, residual = tap(item.degraded)
        x = item.degraded.astype(np.float32) / 255.0
        base = ts.capped_psnr(item.gt, item.degraded)
        gains = {}
        for s in scales:
            out = np.clip(np.round((x + s * residual) * 255.0), 0, 255).astype(np.uint8)
            gains[f"{s:g}"] = ts.capped_psnr(item.gt, out) - base
        rows.append(
            {
                "family": item.family,
                "frame": item.name,
                "features": features,
                "best_scale": best_scale(residual, item.degraded, item.gt),
                "gains": gains,
            }
        )
    return rows


def nearest(scales: Sequence[float], value: float) -> str:
    """The key of the scale in ``scales`` closest to ``value``."""
    return f"{min(scales, key=lambda s: abs(s - value)):g}"


def family_means(
    rows: Sequence[dict[str, Any]], pick: Callable[[int, dict[str, Any]], str]
) -> dict[str, float]:
    """Mean gain per family when row ``i`` is scored at scale ``pick(i, row)``; ``mean``: over the degraded families."""
    per: dict[str, list[float]] = {}
    for i, row in enumerate(rows):
        per.setdefault(row["family"], []).append(row["gains"][pick(i, row)])
    out = {family: float(np.mean(g)) for family, g in per.items()}
    degraded = [g for family, g in out.items() if family != "clean"]
    out["mean"] = float(np.mean(degraded)) if degraded else float("nan")
    return out


def strength_probe(
    student: str | Path,
    chains: int = 10,
    alpha: float = 100.0,
    scales: Sequence[float] = DEFAULT_SCALES,
    train_dir: str | Path | None = None,
    val_dir: str | Path | None = None,
    families: list[str] | None = None,
    progress: bool = True,
    seed: int = 0,
    features: str = "all",
) -> dict[str, Any]:
    """Fit the read-out on train photos, score the val families; see the module docstring."""
    if features not in FEATURE_SETS:
        raise BenchInputError(f"features must be one of {', '.join(FEATURE_SETS)}, got {features!r}")
    if chains < 1:
        raise BenchInputError(f"--chains must be >= 1, got {chains}")
    if not scales or min(scales) < 0 or 1.0 not in scales:
        raise BenchInputError(f"scales must be >= 0 and include 1 (the student as it is), got {list(scales)}")
    model, ckpt = load_student(student)
    if model.config.strength:
        raise BenchInputError(f"{student} already has a strength head; probe the student without it")
    tap = FeatureTap(model)
    train = ts.load_train_frames(train_dir)
    if not train:
        raise BenchInputError("no train photos: run `kd-data photos` or pass --train-dir")
    x, s, groups = training_set(tap, train, chains, seed, progress)
    keep = {
        "all": slice(None),
        "network": slice(0, x.shape[1] - FRAME_STATS),
        "head": slice(0, tap.head_features),
    }[features]
    x = x[:, keep]
    target = np.clip(s, 0.0, max(scales))
    cv_rmse = group_cv_rmse(x, target, groups, alpha)
    readout = fit_ridge(x, target, alpha)
    names, _skipped = ts.available_families(families)
    dset = ts.degraded_set(ts.load_val_frames(val_dir, None), names, progress=progress, desc="degrading val")
    rows = val_rows(tap, dset, scales, progress)
    predicted = readout.predict(np.stack([r["features"][keep] for r in rows]))
    family_best = {
        family: max(
            (f"{sc:g}" for sc in scales),
            key=lambda k, fam=family: np.mean([r["gains"][k] for r in rows if r["family"] == fam]),
        )
        for family in dict.fromkeys(r["family"] for r in rows)
    }
    return {
        "setup": {
            "student": str(student),
            "train_photos": len(train),
            "chains": chains,
            "alpha": alpha,
            "scales": list(scales),
            "seed": seed,
            "features": features,
        },
        "train": {
            "frames": len(s),
            "best_scale_quantiles": np.quantile(s, [0.1, 0.25, 0.5, 0.75, 0.9]).round(3).tolist(),
            "target_std": float(target.std()),
            "cv_rmse": cv_rmse,
        },
        "gains": {
            "as is": family_means(rows, lambda _i, _r: "1"),
            "read-out": family_means(rows, lambda i, _r: nearest(scales, float(predicted[i]))),
            "oracle per family": family_means(rows, lambda _i, r: family_best[r["family"]]),
            "oracle per frame": family_means(rows, lambda _i, r: max(r["gains"], key=r["gains"].get)),
        },
        "family_best_scale": family_best,
        "frames": [
            {k: v for k, v in r.items() if k != "features"} | {"predicted_scale": float(p)}
            for r, p in zip(rows, predicted, strict=True)
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.strength_probe", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "--student",
        default=str(SHIPPED_STUDENTS_DIR / "quality.pt"),
        help="student checkpoint (default: the shipped quality)",
    )
    ap.add_argument("--chains", type=int, default=10, help="training chains per train photo (default 10)")
    ap.add_argument("--alpha", type=float, default=100.0, help="ridge penalty (default 100)")
    ap.add_argument("--scales", default="", help="comma-separated scales to score (default 0 to 2 by 0.125)")
    ap.add_argument("--families", default="", help="comma-separated test families (default: all)")
    ap.add_argument(
        "--train-dir", default=None, help="training photos (default: the photo pool's train/ split)"
    )
    ap.add_argument("--val-dir", default=None, help="val frames (default: the photo pool's val/ split)")
    ap.add_argument("--seed", type=int, default=0, help="training chains (default 0)")
    ap.add_argument(
        "--features",
        choices=FEATURE_SETS,
        default="all",
        help="what the read-out sees: all (default), network (no full-resolution frame statistics) or head "
        "(only what a strength head inside the student reads)",
    )
    ap.add_argument("--json", default="", help="also write the per-frame gains here")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        scales = parse_scales(args.scales) if args.scales else list(DEFAULT_SCALES)
        families = [f for f in args.families.split(",") if f] or None
        result = strength_probe(
            args.student,
            args.chains,
            args.alpha,
            scales,
            args.train_dir,
            args.val_dir,
            families,
            not args.no_progress,
            args.seed,
            args.features,
        )
    except (BenchInputError, ValueError, KeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    train = result["train"]
    print(
        f"read-out on {train['frames']} train frames: cross-validated RMSE {train['cv_rmse']:.3f} "
        f"(spread of the target {train['target_std']:.3f})"
    )
    for name, gains in result["gains"].items():
        families_text = ", ".join(f"{f} {g:+.3f}" for f, g in gains.items() if f != "mean")
        print(f"{name}: mean {gains['mean']:+.3f} | {families_text}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

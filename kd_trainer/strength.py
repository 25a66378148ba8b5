"""Fit a student's :class:`~kd_trainer.models.student.StrengthHead`: a per-frame scale of its residual.

For a frame ``x`` with ground truth ``y`` and the student's residual ``r``, the error of ``x + s * r`` is a parabola
in ``s``; its minimum is ``s* = <r, y - x> / <r, r>`` (:func:`best_scale`), and its PSNR gain over ``x`` is known
in closed form for every ``s`` from three numbers per frame (``<r, r>``, ``<r, y - x>``, ``<y - x, y - x>``). The head
maps three statistics per level-0 channel, pooled over the frame, linearly to ``s`` (clamped to ``0..max_scale``).

Its weights are *fitted* after training, not trained: training photos go through randomised training chains
(:func:`kd_trainer.chain.sample_train_chain`), and L-BFGS maximises the project's safe-gain criterion on those
frames, the mean PSNR gain minus the mean harm (a dB lost counts twice, as in
:func:`kd_trainer.evaluate.safe_gain`), with an L2 penalty on the standardised weights. Frames whose input is
(nearly) the truth are left out (:data:`CLEAN_PSNR_DB`). Cross-validation
grouped by photo reports what the fit is worth on photos it has not seen.

``kd-train`` fits the head after training when the recipe sets ``strength_chains``; on an existing checkpoint:

    python -m kd_trainer.strength runs/fast/student.pt -o runs/fast-headed.pt   # ~1-2 min for runet-fh on 2 cores
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from kd_trainer.chain import apply_chain, sample_train_chain
from kd_trainer.data import DataError, find_photos, to_tensor
from kd_trainer.io import ImageReadError, read_image
from kd_trainer.models.student import (
    CheckpointError,
    ResidualUNet,
    StrengthHead,
    load_student,
    save_checkpoint,
    with_strength_head,
)
from kd_trainer.paths import cache_dir

#: Training frames are centre crops of at most this size (width, height).
MAX_TRAIN_SIZE = (1280, 720)
#: Share of single-step chains in the fitting mix (the ``chains-balanced`` training mix).
SINGLE_STEP_SHARE = 0.3
#: The head's scales are clamped to ``0..MAX_SCALE``.
MAX_SCALE = 2.0
#: Frames whose input is this close to the truth (PSNR, dB) count as clean and are left out of the fit: their
#: gain can only be negative and, in a log ratio of tiny errors, would outweigh every damaged frame.
CLEAN_PSNR_DB = 60.0
#: Default L2 penalty (chosen by 5-fold cross-validation grouped by photo on the train split for ``fast``).
DEFAULT_ALPHA = 1.0
DEFAULT_CHAINS = 10


def best_scale(residual: np.ndarray, degraded: np.ndarray, truth: np.ndarray) -> float:
    """``<r, y - x> / <r, r>``: the residual scale with the least squared error (0 for a zero residual).

    ``residual`` is HxWx3 float in [0, 1] units, ``degraded`` and ``truth`` HxWx3 uint8 images.
    """
    if not residual.shape == degraded.shape == truth.shape:
        raise ValueError(
            f"residual {residual.shape}, degraded {degraded.shape} and truth {truth.shape} must have one shape"
        )
    r = residual.astype(np.float64).ravel()
    d = (truth.astype(np.float64) - degraded.astype(np.float64)).ravel() / 255.0
    energy = float(r @ r)
    return float(r @ d) / energy if energy > 0 else 0.0


def centre_crop(img: np.ndarray, size: tuple[int, int] = MAX_TRAIN_SIZE) -> np.ndarray:
    """The centre of ``img``, at most ``size`` (width, height)."""
    h, w = img.shape[:2]
    cw, ch = min(w, size[0]), min(h, size[1])
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(img[y0 : y0 + ch, x0 : x0 + cw])


def training_chains(
    photos: Sequence[tuple[str, np.ndarray]], chains: int, seed: int = 0
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(photo index, truth, degraded)`` for ``chains`` balanced training chains on each photo, in name order.

    The truth is the photo's centre crop (:data:`MAX_TRAIN_SIZE`); photo ``i``'s chains draw from seed ``[seed, i]``.
    """
    for i, (_name, img) in enumerate(sorted(photos, key=lambda p: p[0])):
        truth = centre_crop(img)
        rng = np.random.default_rng([seed, i])
        for _ in range(chains):
            chain = sample_train_chain(rng, mix="balanced", single_step_share=SINGLE_STEP_SHARE)
            yield i, truth, apply_chain(truth, chain, seed=int(rng.integers(2**31)))


def frame_residual(model: ResidualUNet, rgb: np.ndarray) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """``(residual HxWx3 float32, level-0 features, deepest features)`` of a uint8 RGB frame, one forward pass.

    The frame is padded like ``forward`` pads it and the residual cropped back to the frame's size.
    """
    x = to_tensor(rgb)[None]
    height, width = x.shape[2:]
    with torch.no_grad():
        padded, level0, deep = model.residual_and_features(model.pad_to_multiple(x))
    return padded[0, :, :height, :width].permute(1, 2, 0).numpy(), level0, deep


def residual_and_statistics(model: ResidualUNet, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(residual HxWx3 float32, the head's pooled statistics (3C,))`` of a uint8 RGB frame, one forward pass.

    ``model`` must not have a head yet (the residual is the one the head will scale).
    """
    residual, level0, _deep = frame_residual(model, rgb)
    return residual, StrengthHead.pooled(level0)[0].numpy()


@dataclass(frozen=True)
class FitFrames:
    """Per training frame: the head's statistics and the three inner products that give its gain at any scale."""

    features: np.ndarray  # (n, 3C)
    energy: np.ndarray  # mean r^2
    cross: np.ndarray  # mean r * (y - x)
    error: np.ndarray  # mean (y - x)^2, the input's MSE
    photo: np.ndarray  # photo index, for grouped cross-validation

    def gains(self, scales: np.ndarray) -> np.ndarray:
        """PSNR gain over the input (dB) of every frame at its scale in ``scales``."""
        mse = self.error - 2 * scales * self.cross + scales * scales * self.energy
        return 10 * np.log10(self.error / np.maximum(mse, 1e-12))

    def subset(self, keep: np.ndarray) -> FitFrames:
        return FitFrames(*(a[keep] for a in (self.features, self.energy, self.cross, self.error, self.photo)))


def collect_frames(
    model: ResidualUNet,
    photos: Sequence[tuple[str, np.ndarray]],
    chains: int = DEFAULT_CHAINS,
    seed: int = 0,
    progress: bool = True,
) -> FitFrames:
    """Run ``model`` on ``chains`` training chains of every photo; clean frames (:data:`CLEAN_PSNR_DB`) are dropped."""
    if chains < 1:
        raise ValueError(f"chains must be >= 1, got {chains}")
    if model.config.strength:
        raise ValueError("the student already has a strength head; fit it on the student without one")
    model.eval()
    rows: list[tuple[np.ndarray, float, float, float, int]] = []
    bar = tqdm(total=len(photos) * chains, desc="strength frames", unit="frame", disable=not progress)
    for i, truth, degraded in training_chains(photos, chains, seed):
        residual, stats = residual_and_statistics(model, degraded)
        r = residual.astype(np.float64)
        d = (truth.astype(np.float64) - degraded.astype(np.float64)) / 255.0
        rows.append((stats, float((r * r).mean()), float((r * d).mean()), float((d * d).mean()), i))
        bar.update()
    bar.close()
    frames = FitFrames(
        np.stack([r[0] for r in rows]).astype(np.float64),
        *(np.asarray([r[k] for r in rows], dtype=np.float64) for k in (1, 2, 3)),
        np.asarray([r[4] for r in rows]),
    )
    damaged = frames.subset(frames.error >= 10 ** (-CLEAN_PSNR_DB / 10))
    if len(damaged.error) < 2:
        raise ValueError("fewer than two training frames with damage; give more photos or chains")
    return damaged


@dataclass(frozen=True)
class LinearScale:
    """``clamp(features @ weights + bias, 0, max_scale)``: a fitted head on unstandardised statistics."""

    weights: np.ndarray
    bias: float
    max_scale: float = MAX_SCALE

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return np.clip(features @ self.weights + self.bias, 0.0, self.max_scale)


def fit_linear_scale(
    frames: FitFrames, alpha: float = DEFAULT_ALPHA, max_scale: float = MAX_SCALE
) -> LinearScale:
    """Maximise mean gain minus mean harm over ``frames`` (L-BFGS from the identity head, float64)."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    mean, spread = frames.features.mean(0), frames.features.std(0) + 1e-6
    z = torch.from_numpy((frames.features - mean) / spread)
    energy, cross, error = (torch.from_numpy(a) for a in (frames.energy, frames.cross, frames.error))
    weights = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.ones(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        s = (z @ weights + bias).clamp(0.0, max_scale)
        mse = (error - 2 * s * cross + s * s * energy).clamp(min=1e-12)
        gain = 10 * torch.log10(error / mse)
        loss = -torch.minimum(gain, 2 * gain).mean() + alpha * (weights * weights).sum() / len(gain)
        loss.backward()
        return loss

    optimiser.step(closure)
    raw = weights.detach().numpy() / spread
    return LinearScale(raw, float(bias.detach()[0]) - float(raw @ mean), max_scale)


def gain_and_harm(gains: np.ndarray) -> dict[str, float]:
    """Mean gain, mean harm (``max(0, -gain)``) and their difference (the criterion the fit maximises)."""
    harm = float(np.maximum(0.0, -gains).mean())
    return {"gain": float(gains.mean()), "harm": harm, "gain_minus_harm": float(gains.mean()) - harm}


def cross_validate(frames: FitFrames, alpha: float = DEFAULT_ALPHA, folds: int = 5) -> dict[str, float]:
    """:func:`gain_and_harm` of heads fitted without the photos they are scored on (fold ``k``: photo % folds == k)."""
    scales = np.full(len(frames.error), np.nan)
    for k in range(folds):
        held = frames.photo % folds == k
        if held.any() and (~held).any():
            scales[held] = fit_linear_scale(frames.subset(~held), alpha)(frames.features[held])
    if np.isnan(scales).any():
        raise ValueError("cross-validation needs photos in at least two folds (more photos)")
    return gain_and_harm(frames.gains(scales))


def load_photos(folder: str | Path | None = None) -> list[tuple[str, np.ndarray]]:
    """The training photos as ``(file name, RGB)`` (default: the photo pool's train split)."""
    root = Path(folder) if folder else cache_dir() / "photos" / "train"
    photos = []
    for path in find_photos(root):
        try:
            photos.append((path.name, read_image(path)))
        except ImageReadError as exc:
            raise DataError(f"cannot read training photo {path}: {exc}") from None
    return photos


def fit_strength_head(
    model: ResidualUNet,
    photos: Sequence[tuple[str, np.ndarray]],
    chains: int = DEFAULT_CHAINS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    progress: bool = True,
) -> tuple[ResidualUNet, dict[str, Any]]:
    """``model`` with a fitted :class:`StrengthHead` (a new module; ``model`` is unchanged), and a report of the fit.

    The report holds the frame count, the train gain/harm of the student as it is and with the head, and the same
    from cross-validation grouped by photo.
    """
    frames = collect_frames(model, photos, chains, seed, progress)
    fit = fit_linear_scale(frames, alpha)
    headed = with_strength_head(model)
    headed.strength.set_linear(torch.from_numpy(fit.weights).float(), fit.bias, fit.max_scale)
    scales = fit(frames.features)
    report = {
        "frames": len(frames.error),
        "photos": len(photos),
        "chains": chains,
        "alpha": alpha,
        "seed": seed,
        "as_is": gain_and_harm(frames.gains(np.ones_like(frames.error))),
        "fitted": gain_and_harm(frames.gains(scales)),
        "cross_validated": cross_validate(frames, alpha),
        "scale_quantiles": np.quantile(scales, [0.1, 0.5, 0.9]).round(3).tolist(),
    }
    return headed.eval(), report


def describe(report: dict[str, Any]) -> str:
    """One line per row of a fit report."""
    rows = [("student as is", report["as_is"]), ("with the head", report["fitted"])]
    rows.append(("cross-validated", report["cross_validated"]))
    lines = [
        f"strength head fitted on {report['frames']} frames ({report['photos']} photos x {report['chains']} chains)"
    ]
    for name, m in rows:
        lines.append(
            f"  {name:<16} gain {m['gain']:+.4f} dB, harm {m['harm']:.4f} dB, gain-harm {m['gain_minus_harm']:+.4f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kd_trainer.strength", description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="student .pt without a strength head")
    ap.add_argument("-o", "--output", required=True, help="where to save the student with its fitted head")
    ap.add_argument(
        "--chains", type=int, default=DEFAULT_CHAINS, help=f"chains per photo (default {DEFAULT_CHAINS})"
    )
    ap.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help=f"L2 penalty (default {DEFAULT_ALPHA:g})"
    )
    ap.add_argument(
        "--train-dir", default=None, help="training photos (default: the photo pool's train split)"
    )
    ap.add_argument("--seed", type=int, default=0, help="training chains (default 0)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if Path(args.output).resolve() == Path(args.checkpoint).resolve():
        print("error: --output must differ from the checkpoint (it is kept as it is)", file=sys.stderr)
        return 2
    try:
        model, ckpt = load_student(args.checkpoint)
        photos = load_photos(args.train_dir)
        headed, report = fit_strength_head(
            model, photos, args.chains, args.alpha, args.seed, not args.no_progress
        )
    except (CheckpointError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kept = {k: v for k, v in ckpt.items() if k in ("train_config", "train", "residual_scale")}
    save_checkpoint(args.output, headed, name=ckpt.get("name", ""), **kept, strength_fit=report)
    print(describe(report))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

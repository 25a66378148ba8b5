"""Validation: PSNR/SSIM per degradation preset for a student against identity."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch

from kd_trainer.data import ValFrame, to_tensor, to_uint8
from kd_trainer.metrics import psnr, ssim

Restorer = Callable[[np.ndarray], np.ndarray]


def torch_restorer(model: torch.nn.Module, device: str | torch.device = "cpu") -> Restorer:
    """Wrap a float NCHW student as ``uint8 RGB -> uint8 RGB``."""

    def run(rgb: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return to_uint8(model(to_tensor(rgb)[None].to(device))[0])

    return run


def evaluate(restorer: Restorer, frames: list[ValFrame]) -> dict[str, dict[str, float]]:
    """Mean PSNR/SSIM of input and output vs ground truth, per preset; plus a ``score`` entry.

    ``psnr_gain`` per preset is the mean over its frames of PSNR(output) - PSNR(input), leaving out frames whose
    input *is* the ground truth (infinite PSNR: ``clean``, or a ``chain`` that drew the clean pipeline).
    ``psnr_harm`` is the mean over the same frames of the loss, ``max(0, -gain)``: what the frames made worse lost.
    ``score.psnr_gain`` and ``score.psnr_harm`` are the means of those over all presets except ``clean``;
    ``clean.psnr_out`` shows how much a student harms an already perfect frame.
    """
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for f in frames:
        out = restorer(f.inp)
        m = acc[f.preset]
        p_in, p_out = psnr(f.gt, f.inp), psnr(f.gt, out)
        m["psnr_in"].append(p_in)
        m["psnr_out"].append(p_out)
        m["ssim_in"].append(ssim(f.gt, f.inp))
        m["ssim_out"].append(ssim(f.gt, out))
        if math.isfinite(p_in):
            m["psnr_gain"].append(p_out - p_in)
            m["psnr_harm"].append(max(0.0, p_in - p_out))
    result = {p: {k: float(np.mean(v)) for k, v in m.items()} for p, m in acc.items()}
    degraded = [r for p, r in result.items() if p != "clean" and "psnr_gain" in r]
    result["score"] = {
        key: float(np.mean([r[key] for r in degraded])) if degraded else 0.0
        for key in ("psnr_gain", "psnr_harm")
    }
    return result


def safe_gain(metrics: dict[str, dict[str, float]]) -> float:
    """Mean PSNR gain minus mean harm on the degraded presets: every dB lost on a frame counts twice."""
    return metrics["score"]["psnr_gain"] - metrics["score"].get("psnr_harm", 0.0)


def choose_residual_scale(
    model: torch.nn.Module,
    frames: list[ValFrame],
    scales: list[float],
    device: str | torch.device = "cpu",
) -> tuple[float, dict[float, dict[str, dict[str, float]]]]:
    """The scale of ``scales`` whose residual-scaled student has the best :func:`safe_gain` on ``frames``.

    Returns ``(scale, {scale: metrics})``; ties go to the scale closest to 1 (the residual as trained).
    """
    from kd_trainer.models.student import scale_residual

    if not scales:
        raise ValueError("choose_residual_scale needs at least one scale")
    results = {}
    for scale in scales:
        scaled = scale_residual(model, scale).eval()
        results[scale] = evaluate(torch_restorer(scaled, device), frames)
    best = max(scales, key=lambda s: (round(safe_gain(results[s]), 6), -abs(s - 1.0)))
    return best, results


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """A plain-text table of :func:`evaluate`'s result."""
    lines = [f"{'preset':<10} {'PSNR in':>8} {'PSNR out':>9} {'gain':>6} {'SSIM in':>8} {'SSIM out':>9}"]
    for preset, r in metrics.items():
        if preset == "score":
            continue
        gain = r.get("psnr_gain", math.nan)
        gain_text = f"{gain:>+6.2f}" if math.isfinite(gain) else f"{'-':>6}"
        lines.append(
            f"{preset:<10} {r['psnr_in']:>8.2f} {r['psnr_out']:>9.2f} {gain_text} {r['ssim_in']:>8.4f} {r['ssim_out']:>9.4f}"
        )
    score = metrics["score"]
    harm = f", mean harm {score['psnr_harm']:.3f} dB" if "psnr_harm" in score else ""
    lines.append(f"mean PSNR gain (degraded presets): {score['psnr_gain']:+.3f} dB{harm}")
    return "\n".join(lines)

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
    ``score.psnr_gain`` is the mean of those gains over all presets except ``clean``;
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
    result = {p: {k: float(np.mean(v)) for k, v in m.items()} for p, m in acc.items()}
    gains = [r["psnr_gain"] for p, r in result.items() if p != "clean" and "psnr_gain" in r]
    result["score"] = {"psnr_gain": float(np.mean(gains)) if gains else 0.0}
    return result


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
    lines.append(f"mean PSNR gain (degraded presets): {metrics['score']['psnr_gain']:+.3f} dB")
    return "\n".join(lines)

"""Degradations for training: the runtime's named call presets (:mod:`trt_engine.degrade`) plus the training mix.

The presets, primitives and yuv420 packing live in the runtime (``sharpen --demo`` and int8 calibration use
them); this module re-exports them for the trainer and adds :data:`TRAIN_MIX` / :func:`sample_train_preset`.
"""

from __future__ import annotations

import numpy as np

from trt_engine.degrade import (
    EVAL_PRESETS,
    PRESETS,
    Params,
    Preset,
    add_noise,
    available_presets,
    call_preset,
    degrade,
    degrade_with_params,
    gaussian_blur,
    h264,
    has_h264,
    jpeg,
    light_preset,
    motion_blur,
    resize_down_up,
    rgb_to_yuv420,
    upscale,
    yuv420_to_rgb,
)

__all__ = [
    "EVAL_PRESETS",
    "PRESETS",
    "TRAIN_MIX",
    "Params",
    "Preset",
    "add_noise",
    "available_presets",
    "call_preset",
    "degrade",
    "degrade_with_params",
    "gaussian_blur",
    "h264",
    "has_h264",
    "jpeg",
    "light_preset",
    "motion_blur",
    "resize_down_up",
    "rgb_to_yuv420",
    "sample_train_preset",
    "upscale",
    "yuv420_to_rgb",
]

#: Training mixture: (preset, weight). Clean/light samples teach the student to leave good frames alone.
TRAIN_MIX: tuple[tuple[str, float], ...] = (
    ("call", 0.55),
    ("gauss1.5", 0.05),
    ("downup2", 0.05),
    ("jpeg30", 0.05),
    ("motion9", 0.05),
    ("noise5", 0.05),
    ("gauss0.5", 0.05),
    ("light", 0.15),
)


def sample_train_preset(rng: np.random.Generator) -> str:
    """Draw a preset name from :data:`TRAIN_MIX`."""
    names = [n for n, _ in TRAIN_MIX]
    weights = np.array([w for _, w in TRAIN_MIX], dtype=np.float64)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]

"""Helpers shared by tests."""

from __future__ import annotations

import torch


def perturbed_student(name: str = "runet-n", seed: int = 0):
    """A registry student whose zero-initialised tail is randomised, so it is not the identity."""
    from kd_trainer.models.student import build_student

    torch.manual_seed(seed)
    model = build_student(name)
    torch.nn.init.normal_(model.tail.weight, std=0.02)
    return model.eval()

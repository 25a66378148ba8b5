"""Distillation loss: alpha*L1(S, GT) + beta*L1(S, T) plus optional terms, each reported separately."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fft_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between the 2-D real FFTs (real and imaginary parts) of two image batches."""
    fa, fb = torch.fft.rfft2(a.float(), norm="ortho"), torch.fft.rfft2(b.float(), norm="ortho")
    return (torch.view_as_real(fa) - torch.view_as_real(fb)).abs().mean()


def edge_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences (edge fidelity)."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return F.l1_loss(dx(a), dx(b)) + F.l1_loss(dy(a), dy(b))


class DistillLoss(nn.Module):
    """``alpha*L1(S,GT) + beta*L1(S,T) + fft_weight*FFT-L1(S,GT) + edge_weight*Edge-L1(S,GT)``."""

    def __init__(
        self, alpha: float = 0.8, beta: float = 0.2, fft_weight: float = 0.0, edge_weight: float = 0.0
    ):
        super().__init__()
        self.alpha, self.beta, self.fft_weight, self.edge_weight = alpha, beta, fft_weight, edge_weight

    def forward(
        self,
        student: torch.Tensor,
        gt: torch.Tensor,
        teacher: torch.Tensor | None = None,
        teacher_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its terms; ``teacher_mask`` (B,) selects the samples that have a teacher output."""
        terms: dict[str, torch.Tensor] = {"l1_gt": F.l1_loss(student, gt)}
        total = self.alpha * terms["l1_gt"]
        if self.beta > 0:
            if teacher is None:
                raise ValueError("beta > 0 but no teacher output was given")
            if teacher.shape != student.shape:
                raise ValueError(
                    f"teacher output shape {tuple(teacher.shape)} != student {tuple(student.shape)}"
                )
            if teacher_mask is None:
                terms["l1_teacher"] = F.l1_loss(student, teacher)
            else:
                per_sample = (student - teacher).abs().flatten(1).mean(1)
                terms["l1_teacher"] = (per_sample * teacher_mask).sum() / teacher_mask.sum().clamp(min=1.0)
            total = total + self.beta * terms["l1_teacher"]
        if self.fft_weight > 0:
            terms["fft"] = fft_l1(student, gt)
            total = total + self.fft_weight * terms["fft"]
        if self.edge_weight > 0:
            terms["edge"] = edge_l1(student, gt)
            total = total + self.edge_weight * terms["edge"]
        return total, {"loss": float(total.detach()), **{k: float(v.detach()) for k, v in terms.items()}}

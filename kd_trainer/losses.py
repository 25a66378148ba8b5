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


def _soft_error_db(a: torch.Tensor, b: torch.Tensor, cap_db: float) -> torch.Tensor:
    """Per crop, ``10*log10(MSE + 10^(-cap/10))``: ``-PSNR`` in dB, flattening into MSE above ``cap_db``."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(mse + 10.0 ** (-cap_db / 10.0))


def neg_psnr(a: torch.Tensor, b: torch.Tensor, cap_db: float = 40.0) -> torch.Tensor:
    """Mean over the batch of a soft ``-PSNR`` per crop (dB, images in [0,1]): ``10*log10(MSE + 10^(-cap/10))``.

    Unlike L1, which lets a few heavily degraded crops dominate, every crop's *relative* error counts: halving
    the error of an almost clean crop gains as many dB as halving that of a blurry one. Above ``cap_db`` the
    term flattens into plain MSE, so crops that are already near-perfect cannot pin the student to the
    identity (exact copies would otherwise be worth unbounded dB).
    """
    return _soft_error_db(a, b, cap_db).mean()


def psnr_harm(
    out: torch.Tensor, degraded: torch.Tensor, gt: torch.Tensor, cap_db: float = 40.0
) -> torch.Tensor:
    """Mean over the batch of how many dB each crop lost against its own degraded input, ``max(0, PSNR_in -
    PSNR_out)`` with the soft cap of :func:`neg_psnr`: zero for every crop the student improved.

    It is the training form of the *harm* that val and test report (frames made worse than doing nothing). On a
    clean crop (input = ground truth) the input's error is the cap's floor, so any change at all is harm.
    """
    return F.relu(_soft_error_db(out, gt, cap_db) - _soft_error_db(degraded, gt, cap_db)).mean()


class DistillLoss(nn.Module):
    """``alpha*L1(S,GT) + beta*L1(S,T)`` plus optional ``fft_weight*FFT-L1(S,GT)``,
    ``edge_weight*Edge-L1(S,GT)``, ``psnr_weight*(-PSNR(S,GT))`` and ``harm_weight*harm(S, input, GT)``."""

    def __init__(
        self,
        alpha: float = 0.8,
        beta: float = 0.2,
        fft_weight: float = 0.0,
        edge_weight: float = 0.0,
        psnr_weight: float = 0.0,
        psnr_cap_db: float = 40.0,
        harm_weight: float = 0.0,
    ):
        super().__init__()
        self.alpha, self.beta, self.fft_weight, self.edge_weight = alpha, beta, fft_weight, edge_weight
        self.psnr_weight, self.psnr_cap_db, self.harm_weight = psnr_weight, psnr_cap_db, harm_weight

    def forward(
        self,
        student: torch.Tensor,
        gt: torch.Tensor,
        teacher: torch.Tensor | None = None,
        teacher_mask: torch.Tensor | None = None,
        degraded: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its terms; ``teacher_mask`` (B,) selects the samples that have a teacher output,
        ``degraded`` is the student's input (needed by the harm term)."""
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
        if self.psnr_weight > 0:
            terms["neg_psnr"] = neg_psnr(student, gt, self.psnr_cap_db)
            total = total + self.psnr_weight * terms["neg_psnr"]
        if self.harm_weight > 0:
            if degraded is None or degraded.shape != student.shape:
                got = None if degraded is None else tuple(degraded.shape)
                raise ValueError(
                    f"harm_weight > 0 needs the degraded input, shaped as the student's output: {got}"
                )
            terms["harm"] = psnr_harm(student, degraded, gt, self.psnr_cap_db)
            total = total + self.harm_weight * terms["harm"]
        return total, {"loss": float(total.detach()), **{k: float(v.detach()) for k, v in terms.items()}}

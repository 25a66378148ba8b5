"""Small helpers for DistributedDataParallel under ``torchrun`` (NCCL on GPUs, gloo on CPU).

``torchrun --nproc_per_node N`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` reads them,
joins the process group and picks the rank's device. Without them (a plain ``kd-train``) everything here is a
no-op for a single rank 0, so the training loop reads the same either way.

Data: :func:`shard` gives each rank its contiguous slice of every *global* batch, so N ranks with per-rank batch
``b`` see exactly the samples one rank with batch ``N*b`` would see, in the same steps.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes checkpoints, logs, validation and plots, and prints."""
        return self.rank == 0


def env_info() -> DistInfo:
    """Rank, world size and local rank from the torchrun environment (defaults: a single process)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def setup(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; return (info, this rank's device).

    ``device_name`` is the config's ``device`` (auto | cpu | cuda[:i]). Under torchrun, CUDA ranks use
    ``cuda:LOCAL_RANK`` and NCCL; CPU ranks use gloo. The collective timeout defaults to 3 hours, because the
    other ranks wait at a barrier while rank 0 converts the teacher and fills its cache
    (``KD_DIST_TIMEOUT_MIN`` changes it).
    """
    info = env_info()
    want_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        from kd_trainer.config import ConfigError

        raise ConfigError(f"device={device_name} requested but CUDA is not available")
    if not info.enabled:
        return info, torch.device(("cuda" if want_cuda else "cpu") if device_name == "auto" else device_name)
    if want_cuda:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        minutes = float(os.environ.get("KD_DIST_TIMEOUT_MIN", 180))
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=minutes))
    return DistInfo(info.rank, info.world_size, info.local_rank, backend), device


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for a single process)."""
    if info.enabled:
        dist.barrier()


def shard(batches: np.ndarray, info: DistInfo) -> np.ndarray:
    """This rank's columns of a (steps, global_batch) index array: a contiguous slice of every batch."""
    per_rank = batches.shape[1] // info.world_size
    return batches[:, info.rank * per_rank : (info.rank + 1) * per_rank]


def mean_over_ranks(values: dict[str, float], device: torch.device, info: DistInfo) -> dict[str, float]:
    """Average scalar logs (loss terms) over ranks, so rank 0 logs the global batch's values."""
    if not info.enabled:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, (t / info.world_size).tolist(), strict=True))


def weight_spread(model: torch.nn.Module, info: DistInfo) -> float:
    """Largest difference of any parameter between ranks (0.0 when every rank holds the same model)."""
    if not info.enabled:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).max())

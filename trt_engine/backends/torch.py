"""PyTorch backend for ``.pt`` files: self-contained exported programs and trainer checkpoints.

Two kinds of file open here:
- a ``torch.export`` program (``kd-export --format pt``): self-contained, runs with PyTorch alone;
- a trainer checkpoint (``{format, config, state_dict, ...}``): its network is rebuilt by a *checkpoint
  loader* registered for its ``format`` with :func:`register_checkpoint_loader`. The runtime never imports the
  trainer itself: the trainer registers its loader when it is imported, and declares it as an entry point
  (group :data:`ENTRY_POINT_GROUP`) so that an installed trainer is found on demand.

CPU runs float32. ``device="cuda"`` runs fp16 with channels_last memory format, takes frames through
pinned host buffers that are reused across calls, and ``stream`` double-buffers over two CUDA streams so
that the upload of one batch, the compute of another and the download of a third overlap.
"""

from __future__ import annotations

import json
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from trt_engine.backends.base import Backend, BackendInfo
from trt_engine.errors import BackendUnavailableError, ModelLoadError, require_model_file
from trt_engine.meta import ModelMeta

#: loader(path) -> (torch module in eval mode, ModelMeta-style dict: student, config, metrics, multiple, ...)
CheckpointLoader = Callable[[Path], tuple[Any, dict[str, Any]]]
CHECKPOINT_LOADERS: dict[str, CheckpointLoader] = {}
ENTRY_POINT_GROUP = "image_sharpening_kd.checkpoint_loaders"
EXPORTED_META = "kd_meta.json"  # extra file inside an exported program holding its ModelMeta


def register_checkpoint_loader(fmt: str, loader: CheckpointLoader) -> None:
    """Let the PyTorch backend open checkpoints whose ``format`` field is ``fmt``."""
    CHECKPOINT_LOADERS[fmt] = loader


def checkpoint_loader(fmt: str) -> CheckpointLoader | None:
    """The loader for ``fmt``: registered ones first, then installed entry points (each a ``register()``)."""
    if fmt not in CHECKPOINT_LOADERS:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()()
            except Exception:  # a broken plugin must not hide the others
                continue
    return CHECKPOINT_LOADERS.get(fmt)


def is_exported_program(path: Path) -> bool:
    """True for a ``torch.export.save`` archive."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(
            n.endswith(("serialized_exported_program.json", "/archive_format")) for n in zf.namelist()
        )  # the older and the current (PT2 archive) layouts


def load_torch_model(path: Path) -> tuple[Any, ModelMeta]:
    """(torch module in eval mode, its ModelMeta) for an exported program or a trainer checkpoint."""
    import torch

    if is_exported_program(path):
        extra = {EXPORTED_META: ""}
        try:
            with open(path, "rb") as fh:  # a file object: torch.export.load wants a .pt2 name otherwise
                program = torch.export.load(fh, extra_files=extra)
        except Exception as exc:
            raise ModelLoadError(f"cannot load exported program {path} (corrupt?): {exc}") from exc
        meta = ModelMeta.from_dict(json.loads(extra[EXPORTED_META] or "{}"))
        return program.module(), meta  # already in inference form (exported modules have no .eval())
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise ModelLoadError(f"cannot read checkpoint {path} (corrupt or not a PyTorch file): {exc}") from exc
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if not isinstance(fmt, str):
        raise ModelLoadError(
            f"{path} is neither an exported program nor a student checkpoint with a 'format' field; "
            "export one with kd-export --format pt"
        )
    del ckpt
    loader = checkpoint_loader(fmt)
    if loader is None:
        raise BackendUnavailableError(
            f"{path} is a trainer checkpoint (format {fmt!r}); opening it needs the trainer "
            "(pip install 'image-sharpening-kd[train]'). Without it, run its ONNX export or a self-contained "
            "program (kd-export CKPT --format pt)"
        )
    model, data = loader(path)
    return model, ModelMeta.from_dict(data)


class TorchBackend(Backend):
    """A student checkpoint run with PyTorch; see the module docstring."""

    def __init__(
        self,
        path: str | Path,
        device: str | None = None,
        swap_rb: bool = False,
        threads: int | None = None,
    ) -> None:
        try:
            import torch
        except ImportError:
            raise BackendUnavailableError(
                f"{path} is a PyTorch model and PyTorch is not installed; pip install "
                "'image-sharpening-kd[train]' (torch==2.13.0), or run the model's ONNX export"
            ) from None

        p = require_model_file(path, "checkpoint", "it is not a student checkpoint")
        dev = torch.device(device or "cpu")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"device {device!r} asked for, but this PyTorch ({torch.__version__}) sees no CUDA GPU; "
                "use device=None for CPU"
            )
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"unsupported device {device!r} for a .pt model; use 'cpu' or 'cuda[:N]'")
        model, contract = load_torch_model(p)  # errors (ValueError / RuntimeError) name the file
        self.torch = torch
        self.device = dev
        self.cuda = dev.type == "cuda"
        self.dtype = torch.float16 if self.cuda else torch.float32
        if self.cuda:
            model = model.to(dev, dtype=self.dtype, memory_format=torch.channels_last)
        self.model = model  # in inference form already (loaders return eval-mode modules)
        self.swap_rb = swap_rb
        self._threads = threads
        self._pinned: dict[tuple[int, tuple[int, ...]], tuple[Any, Any]] = {}
        self._streams = [torch.cuda.Stream(dev), torch.cuda.Stream(dev)] if self.cuda else []
        self.info = BackendInfo(
            backend="torch",
            path=str(p),
            device=str(dev),
            precision="fp16" if self.cuda else "fp32",
            io="float32_nchw",
            batch=None,
            height=None,
            width=None,
            multiple=contract.multiple,
            color=contract.color,
            providers=[f"torch {torch.__version__}"],
            metadata=contract.to_dict(),
            host_memory="pinned staging buffers, reused" if self.cuda else "host only (no device copies)",
        )

    def _forward(self, frames: Any) -> Any:
        """uint8 NHWC tensor on the model's device -> uint8 NHWC tensor on the same device."""
        torch = self.torch
        x = frames.permute(0, 3, 1, 2)
        if self.swap_rb:
            x = x.flip(1)
        x = x.to(self.dtype) / 255.0
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.model(x).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
        if self.swap_rb:
            y = y.flip(1)
        return y.permute(0, 2, 3, 1).contiguous()

    def run(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        if not self.cuda:
            with torch.inference_mode(), _threads(torch, self._threads):
                return self._forward(torch.from_numpy(np.ascontiguousarray(batch))).numpy()
        host_in, host_out = self._pinned_pair(-1, batch.shape)
        stream = self._streams[0]
        with torch.inference_mode(), torch.cuda.stream(stream):
            host_in.numpy()[...] = batch
            dev_in = host_in.to(self.device, non_blocking=True)
            host_out.copy_(self._forward(dev_in), non_blocking=True)
        stream.synchronize()
        return host_out.numpy().copy()

    def stream(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        if not self.cuda:
            yield from super().stream(batches)
            return
        torch = self.torch
        pending: deque[tuple[Any, Any]] = deque()
        for i, batch in enumerate(batches):
            slot = i % 2
            if len(pending) == 2:  # the slot about to be reused holds the oldest batch: finish it first
                event, host_out = pending.popleft()
                event.synchronize()
                yield host_out.numpy().copy()
            host_in, host_out = self._pinned_pair(slot, batch.shape)
            stream = self._streams[slot]
            with torch.inference_mode(), torch.cuda.stream(stream):
                host_in.numpy()[...] = batch
                dev_in = host_in.to(self.device, non_blocking=True)
                host_out.copy_(self._forward(dev_in), non_blocking=True)
                event = torch.cuda.Event()
                event.record(stream)
            pending.append((event, host_out))
        while pending:
            event, host_out = pending.popleft()
            event.synchronize()
            yield host_out.numpy().copy()

    def _pinned_pair(self, slot: int, shape: tuple[int, ...]) -> tuple[Any, Any]:
        key = (slot, tuple(shape))
        if key not in self._pinned:
            torch = self.torch
            for old in [k for k in self._pinned if k[0] == slot]:
                del self._pinned[old]
            self._pinned[key] = (
                torch.empty(shape, dtype=torch.uint8, pin_memory=True),
                torch.empty(shape, dtype=torch.uint8, pin_memory=True),
            )
        return self._pinned[key]

    def close(self) -> None:
        self._pinned.clear()
        self._streams = []
        self.model = None  # type: ignore[assignment]


class _threads:
    """Temporarily set torch's intra-op thread count (None: leave it)."""

    def __init__(self, torch: Any, n: int | None) -> None:
        self.torch, self.n, self.old = torch, n, None

    def __enter__(self) -> None:
        if self.n:
            self.old = self.torch.get_num_threads()
            self.torch.set_num_threads(int(self.n))

    def __exit__(self, *exc: object) -> None:
        if self.old is not None:
            self.torch.set_num_threads(self.old)

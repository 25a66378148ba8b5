"""Residual UNet students: a registry of named sizes, checkpoints that carry their config.

Every student computes ``out = x + f(x)`` on RGB images in [0, 1]. ``f`` starts with a space-to-depth stem
(a ``k=s, stride=s`` convolution, the same as pixel-unshuffle followed by a 1x1 conv, but one cheap op in
ONNX), runs a small UNet at low resolution and ends with the matching depth-to-space tail (a transposed
convolution). Stem, downsampling and tail are linear; activations live inside residual branches.
Students with a coarse stem add an optional full-resolution linear "detail" convolution (3 -> 3 channels),
which learns an unsharp-mask-like filter that the low-resolution path cannot express per pixel; both the
tail and the detail conv start at zero, so a fresh student is the identity.
Inputs of any size are reflect-padded to the network's multiple and cropped back.

A student with one width is a plain residual network at 1/stem resolution (no UNet levels): on a 2-core CPU
onnxruntime spends more time converting layouts around the down/up-sampling of a second level than in its
convolutions, so the fastest student (``runet-f``) puts all its layers at one resolution. Widths that are
multiples of 16 keep onnxruntime's blocked (NCHWc) convolutions; a width of 24 ran ~2x slower than 16.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CHECKPOINT_FORMAT = "image-sharpening-kd/student-v1"


@dataclass(frozen=True)
class StudentConfig:
    """Shape of a Residual UNet student."""

    unshuffle: int = 2
    widths: tuple[int, ...] = (32, 64, 128)
    blocks: tuple[int, ...] = (2, 2, 2)
    detail: int = (
        0  # kernel size of a full-resolution linear 3->3 "detail" conv added to the output (0 = none)
    )
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.unshuffle < 1:
            raise ValueError(f"unshuffle must be >= 1, got {self.unshuffle}")
        if not self.widths or len(self.widths) != len(self.blocks):
            raise ValueError(f"widths {self.widths} and blocks {self.blocks} need the same non-zero length")
        if any(w < 1 for w in self.widths) or any(b < 0 for b in self.blocks):
            raise ValueError(f"widths must be >= 1 and blocks >= 0: {self.widths}, {self.blocks}")
        if self.detail < 0 or (self.detail and self.detail % 2 == 0):
            raise ValueError(f"detail must be 0 or an odd kernel size, got {self.detail}")

    @property
    def multiple(self) -> int:
        """Height and width are padded to a multiple of this."""
        return self.unshuffle * 2 ** (len(self.widths) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "unshuffle": self.unshuffle,
            "widths": list(self.widths),
            "blocks": list(self.blocks),
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        unknown = set(data) - {"unshuffle", "widths", "blocks", "detail", "description"}
        if unknown:
            raise ValueError(f"unknown student config keys: {sorted(unknown)}")
        return cls(
            unshuffle=int(data["unshuffle"]),
            widths=tuple(int(w) for w in data["widths"]),
            blocks=tuple(int(b) for b in data["blocks"]),
            detail=int(data.get("detail", 0)),
        )


STUDENTS: dict[str, StudentConfig] = {
    "runet-seed": StudentConfig(
        1, (32, 64, 128, 256), (2, 2, 2, 2), description="shaped like the seed: full-res stem"
    ),
    "runet-s": StudentConfig(2, (32, 64, 128), (2, 2, 2), description="quality student for GPUs"),
    "runet-m": StudentConfig(
        2, (16, 48, 96), (1, 2, 2), description="mid-size: CPU-trainable quality student"
    ),
    "runet-f": StudentConfig(
        4, (16,), (2,), description="fast student for CPUs: one level, no UNet (>= 30 fps on 2 cores)"
    ),
    "runet-n": StudentConfig(
        4, (16, 32), (1, 1), detail=3, description="first fast student (with detail conv)"
    ),
    "runet-n0": StudentConfig(4, (16, 32), (1, 1), description="runet-n without the detail conv (CPU speed)"),
    "runet-p": StudentConfig(
        4,
        (8, 16, 32),
        (1, 1, 1),
        detail=3,
        description="pico: fewest MACs, but 8-wide layers and a detail conv run slower than runet-f",
    ),
}


def get_config(name: str) -> StudentConfig:
    """Look up a registered student by name."""
    try:
        return STUDENTS[name]
    except KeyError:
        raise KeyError(f"unknown student {name!r}; registered: {', '.join(STUDENTS)}") from None


def registry_name(config: StudentConfig) -> str | None:
    """The registry name of a student shape (None for a shape that is not registered)."""
    return next((name for name, cfg in STUDENTS.items() if cfg == config), None)


class ResBlock(nn.Module):
    """x + conv3x3(relu(conv3x3(x)))."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class ResidualUNet(nn.Module):
    """The student network; see the module docstring."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        w, u = config.widths, config.unshuffle
        self.stem = nn.Conv2d(3, w[0], u, stride=u) if u > 1 else nn.Conv2d(3, w[0], 3, padding=1)
        self.encoders = nn.ModuleList(
            nn.Sequential(*[ResBlock(wi) for _ in range(b)]) for wi, b in zip(w, config.blocks, strict=True)
        )
        self.downs = nn.ModuleList(nn.Conv2d(w[i], w[i + 1], 2, stride=2) for i in range(len(w) - 1))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in range(len(w) - 1))
        self.decoders = nn.ModuleList(
            nn.Sequential(*[ResBlock(w[i]) for _ in range(config.blocks[i])]) for i in range(len(w) - 1)
        )
        self.tail = nn.ConvTranspose2d(w[0], 3, u, stride=u) if u > 1 else nn.Conv2d(w[0], 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        self.detail = (  # reflect padding: a zero-padded high-pass would draw a line around every frame
            nn.Conv2d(3, 3, config.detail, padding=config.detail // 2, padding_mode="reflect")
            if config.detail
            else None
        )
        if self.detail is not None:
            nn.init.zeros_(self.detail.weight)
            nn.init.zeros_(self.detail.bias)

    def body(self, h: torch.Tensor) -> torch.Tensor:
        """The UNet between stem and tail, on stem features (``widths[0]`` channels)."""
        skips = []
        for i, enc in enumerate(self.encoders):
            h = enc(h)
            if i < len(self.downs):
                skips.append(h)
                h = self.downs[i](h)
        for i in reversed(range(len(self.ups))):
            h = self.decoders[i](self.ups[i](h) + skips[i])
        return h

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) on an input whose size is already a multiple of ``config.multiple``."""
        out = self.tail(self.body(self.stem(x)))
        return out + self.detail(x) if self.detail is not None else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, height, width = x.shape
        m = self.config.multiple
        pad_h, pad_w = (-height) % m, (-width) % m
        xp = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if (pad_h or pad_w) else x
        out = xp + self.residual(xp)
        return out[:, :, :height, :width] if (pad_h or pad_w) else out


def build_student(name_or_config: str | StudentConfig) -> ResidualUNet:
    """Create a freshly initialised student from a registry name or a config."""
    cfg = get_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
    return ResidualUNet(cfg)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: ResidualUNet, height: int = 1080, width: int = 1920) -> int:
    """Multiply-accumulates of one forward pass at ``height`` x ``width`` (padding included).

    Counted from layer shapes on the meta device, so it is instant even for 1080p.
    """
    macs = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        k = math.prod(module.kernel_size)
        if isinstance(module, nn.ConvTranspose2d):
            macs += inputs[0].numel() * module.out_channels // module.groups * k
        else:
            macs += output.numel() * module.in_channels // module.groups * k

    meta = ResidualUNet(model.config).to("meta")
    handles = [
        m.register_forward_hook(hook)
        for m in meta.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    with torch.no_grad():
        meta(torch.empty(1, 3, height, width, device="meta"))
    for h in handles:
        h.remove()
    return macs


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not match the expected student."""


def save_checkpoint(path: str | Path, model: ResidualUNet, name: str = "", **extra: Any) -> Path:
    """Save ``{format, name, config, state_dict, **extra}`` atomically."""
    from kd_trainer.io import atomic_path

    payload = {
        "format": CHECKPOINT_FORMAT,
        "name": name,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict and validate its format; errors name the file and say what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"cannot read checkpoint {p} (corrupt or not a PyTorch file): {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{p} is not an image-sharpening-kd student checkpoint (format {got!r}, expected "
            f"{CHECKPOINT_FORMAT!r}); train one with kd-train"
        )
    return ckpt


def load_student(
    path: str | Path, expect: StudentConfig | None = None
) -> tuple[ResidualUNet, dict[str, Any]]:
    """Rebuild a student from a checkpoint (strict key and shape check)."""
    ckpt = read_checkpoint(path)
    try:
        cfg = StudentConfig.from_dict(ckpt["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid student config in checkpoint: {exc}") from exc
    if expect is not None and dataclasses.replace(cfg) != expect:
        raise CheckpointError(
            f"{path} holds a student {cfg.to_dict()}, but {expect.to_dict()} was expected; "
            "pass the matching --model or start a new run"
        )
    model = ResidualUNet(cfg)
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: weights do not match the student config {cfg.to_dict()}: {exc}"
        ) from exc
    model.eval()
    return model, ckpt

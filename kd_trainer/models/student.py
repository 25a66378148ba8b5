"""Residual UNet students: a registry of named sizes, checkpoints that carry their config.

Every student computes ``out = x + f(x)`` on RGB images in [0, 1]. ``f`` starts with a space-to-depth stem
(a ``k=s, stride=s`` convolution, the same as pixel-unshuffle followed by a 1x1 conv, but one cheap op in
ONNX), runs a small UNet at low resolution and ends with the matching depth-to-space tail (a transposed
convolution). Stem, downsampling and tail are linear; activations live inside residual branches.
Students with a coarse stem add an optional full-resolution linear "detail" convolution (3 -> 3 channels),
which learns an unsharp-mask-like filter that the low-resolution path cannot express per pixel; both the
tail and the detail conv start at zero, so a fresh student is the identity. A student with ``lowcut`` removes
the local mean from its residual, so its output differs from the input only in detail, never in broad
brightness or colour. A student with a ``frame_filter`` adds one full-resolution 9x9 luma filter per frame,
chosen from statistics of the whole frame (:class:`FrameFilter`): the deblur a frame needs depends on its damage.
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

from kd_trainer.runtime_plugin import CHECKPOINT_FORMAT

#: Limits on student shapes (checked before anything is allocated).
MAX_UNSHUFFLE, MAX_LEVELS, MAX_WIDTH, MAX_BLOCKS = 8, 6, 512, 16
MAX_REP = 8


@dataclass(frozen=True)
class StudentConfig:
    """Shape of a Residual UNet student."""

    unshuffle: int = 2
    widths: tuple[int, ...] = (32, 64, 128)
    blocks: tuple[int, ...] = (2, 2, 2)
    detail: int = (
        0  # kernel size of a full-resolution linear 3->3 "detail" conv added to the output (0 = none)
    )
    bands: int = 0  # full-resolution luma high-pass bands steered by per-pixel gains (0 = none)
    band_kernel: int = 5  # kernel size of the band filters
    context: int = 0  # width of a whole-frame context branch that rescales the features (0 = none)
    lowcut: int = 0  # block size of the local mean removed from the residual (0 = none): high-pass output
    half: bool = False  # residual blocks with one conv, x + conv3x3(relu(x)), instead of two (CPU speed)
    strength: bool = False  # a per-frame residual scale read out from the pooled level-0 features
    rep: int = 0  # over-parameterised block convs for training (expansion ratio; 0 = plain): see RepConv3x3
    frame_filter: int = (
        0  # learned full-resolution luma filters weighted per frame (0 = none): see FrameFilter
    )
    frame_filter_log: bool = False  # the frame filter's weights read log band statistics (see FrameFilter)
    band_frame_gain: bool = False  # a per-frame term on the band gains (see GainBands)
    band_frame_slope: bool = False  # the per-frame term also reads a coarse band (see GainBands)
    band_frame_edge: bool = False  # the per-frame term also reads an edge-profile statistic (see GainBands)
    band_coring: bool = False  # a second gain on soft-thresholded (cored) bands (see GainBands)
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # Bounds come first, before anything is allocated: a crafted checkpoint must not make us build a
        # multi-gigabyte network before failing (students are tiny; these limits are generous).
        if not 1 <= self.unshuffle <= MAX_UNSHUFFLE:
            raise ValueError(f"unshuffle must be in 1..{MAX_UNSHUFFLE}, got {self.unshuffle}")
        if not self.widths or len(self.widths) != len(self.blocks) or len(self.widths) > MAX_LEVELS:
            raise ValueError(
                f"widths {self.widths} and blocks {self.blocks} need the same length, 1..{MAX_LEVELS}"
            )
        if any(not 1 <= w <= MAX_WIDTH for w in self.widths) or any(
            not 0 <= b <= MAX_BLOCKS for b in self.blocks
        ):
            raise ValueError(
                f"widths must be in 1..{MAX_WIDTH} and blocks in 0..{MAX_BLOCKS}: {self.widths}, {self.blocks}"
            )
        if self.detail < 0 or self.detail > 9 or (self.detail and self.detail % 2 == 0):
            raise ValueError(f"detail must be 0 or an odd kernel size up to 9, got {self.detail}")
        if not 0 <= self.bands <= 8:
            raise ValueError(f"bands must be in 0..8, got {self.bands}")
        if self.band_kernel < 3 or self.band_kernel % 2 == 0 or self.band_kernel > 9:
            raise ValueError(f"band_kernel must be an odd size in 3..9, got {self.band_kernel}")
        if not 0 <= self.context <= MAX_WIDTH:
            raise ValueError(f"context must be in 0..{MAX_WIDTH}, got {self.context}")
        if self.lowcut not in (0, 2, 4, 8, 16, 32):
            raise ValueError(f"lowcut must be 0 or a power of two in 2..32, got {self.lowcut}")
        if not 0 <= self.rep <= MAX_REP:
            raise ValueError(f"rep must be in 0..{MAX_REP}, got {self.rep}")
        if not 0 <= self.frame_filter <= 8:
            raise ValueError(f"frame_filter must be in 0..8, got {self.frame_filter}")
        if self.frame_filter_log and not self.frame_filter:
            raise ValueError("frame_filter_log needs a frame filter (frame_filter > 0)")
        if self.band_frame_gain and not self.bands:
            raise ValueError("band_frame_gain needs gain-steered bands (bands > 0)")
        if self.band_frame_slope and not self.band_frame_gain:
            raise ValueError("band_frame_slope needs the per-frame band gain (band_frame_gain)")
        if self.band_frame_edge and not self.band_frame_gain:
            raise ValueError("band_frame_edge needs the per-frame band gain (band_frame_gain)")
        if self.band_coring and not self.bands:
            raise ValueError("band_coring needs gain-steered bands (bands > 0)")

    @property
    def multiple(self) -> int:
        """Height and width are padded to a multiple of this."""
        return math.lcm(self.unshuffle * 2 ** (len(self.widths) - 1), self.lowcut or 1)

    def to_dict(self) -> dict[str, Any]:
        return (
            {
                "unshuffle": self.unshuffle,
                "widths": list(self.widths),
                "blocks": list(self.blocks),
                "detail": self.detail,
                "bands": self.bands,
                "band_kernel": self.band_kernel,
                "context": self.context,
                "lowcut": self.lowcut,
            }
            # flags absent when False: older checkpoints stay byte-identical
            | ({"half": True} if self.half else {})
            | ({"strength": True} if self.strength else {})
            | ({"rep": self.rep} if self.rep else {})
            | ({"frame_filter": self.frame_filter} if self.frame_filter else {})
            | ({"frame_filter_log": True} if self.frame_filter_log else {})
            | ({"band_frame_gain": True} if self.band_frame_gain else {})
            | ({"band_frame_slope": True} if self.band_frame_slope else {})
            | ({"band_frame_edge": True} if self.band_frame_edge else {})
            | ({"band_coring": True} if self.band_coring else {})
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        unknown = set(data) - {
            "unshuffle",
            "widths",
            "blocks",
            "detail",
            "bands",
            "band_kernel",
            "context",
            "lowcut",
            "half",
            "strength",
            "rep",
            "frame_filter",
            "frame_filter_log",
            "band_frame_gain",
            "band_frame_slope",
            "band_frame_edge",
            "band_coring",
            "description",
        }
        if unknown:
            raise ValueError(f"unknown student config keys: {sorted(unknown)}")
        return cls(
            unshuffle=int(data["unshuffle"]),
            widths=tuple(int(w) for w in data["widths"]),
            blocks=tuple(int(b) for b in data["blocks"]),
            detail=int(data.get("detail", 0)),
            bands=int(data.get("bands", 0)),
            band_kernel=int(data.get("band_kernel", 5)),
            context=int(data.get("context", 0)),
            lowcut=int(data.get("lowcut", 0)),
            half=_flag(data.get("half", False)),
            strength=_flag(data.get("strength", False), "strength"),
            rep=int(data.get("rep", 0)),
            frame_filter=int(data.get("frame_filter", 0)),
            frame_filter_log=_flag(data.get("frame_filter_log", False), "frame_filter_log"),
            band_frame_gain=_flag(data.get("band_frame_gain", False), "band_frame_gain"),
            band_frame_slope=_flag(data.get("band_frame_slope", False), "band_frame_slope"),
            band_frame_edge=_flag(data.get("band_frame_edge", False), "band_frame_edge"),
            band_coring=_flag(data.get("band_coring", False), "band_coring"),
        )


def _flag(value: Any, name: str = "half") -> bool:
    """A boolean config value, strictly (a checkpoint's "half": "no" must not read as True)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


STUDENTS: dict[str, StudentConfig] = {
    "runet-seed": StudentConfig(
        1, (32, 64, 128, 256), (2, 2, 2, 2), description="shaped like the seed: full-res stem"
    ),
    "runet-s": StudentConfig(2, (32, 64, 128), (2, 2, 2), description="quality student for GPUs"),
    "runet-m": StudentConfig(
        2, (16, 48, 96), (1, 2, 2), description="mid-size: CPU-trainable quality student"
    ),
    "runet-f2": StudentConfig(
        4,
        (16,),
        (1,),
        bands=1,
        description="fast v2 for CPUs: runet-f's single level plus a gain-steered full-resolution band",
    ),
    "runet-fh": StudentConfig(
        4,
        (16,),
        (1,),
        bands=1,
        half=True,
        description="runet-f2 with a one-conv residual block: ~10% faster on CPUs",
    ),
    "runet-f3": StudentConfig(
        4,
        (16,),
        (1,),
        bands=1,
        context=16,
        description="fast v3: runet-f2 plus a whole-frame context branch (degradation-aware gains)",
    ),
    "runet-m2": StudentConfig(
        2,
        (16, 48, 96),
        (1, 2, 2),
        bands=2,
        description="quality v2: runet-m plus two gain-steered full-resolution bands (<= 40 GMAC)",
    ),
    "runet-m3": StudentConfig(
        2,
        (16, 48, 96),
        (1, 2, 2),
        bands=2,
        lowcut=8,
        description="quality v3: runet-m2 with a high-pass residual (no brightness shifts wider than ~16 px)",
    ),
    "runet-m4": StudentConfig(
        2,
        (16, 48, 96),
        (1, 2, 2),
        bands=2,
        lowcut=8,
        context=32,
        description="quality v4: runet-m3 plus a whole-frame context branch from the deepest level",
    ),
    "runet-m5": StudentConfig(
        2,
        (16, 48, 96),
        (1, 2, 2),
        bands=2,
        lowcut=8,
        frame_filter=4,
        description="quality v5: runet-m3 plus four 9x9 luma filters weighted per frame (frame-level deblur)",
    ),
    "runet-f5": StudentConfig(
        4,
        (16,),
        (1,),
        bands=1,
        half=True,
        frame_filter=4,
        description="fast v5: runet-fh plus four 9x9 luma filters weighted per frame (frame-level deblur)",
    ),
    "runet-f4": StudentConfig(
        4,
        (16,),
        (1,),
        bands=1,
        lowcut=8,
        description="fast v4: runet-f2 with a high-pass residual (no brightness shifts wider than ~16 px)",
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


def _with_rep(base: str, ratio: int = 4) -> StudentConfig:
    """``base`` trained with over-parameterised convs (:class:`RepConv3x3`): it merges back into ``base``."""
    return dataclasses.replace(
        STUDENTS[base],
        rep=ratio,
        description=f"{base} trained with over-parameterised convs; merges into {base} (same cost per frame)",
    )


STUDENTS["runet-m6"] = dataclasses.replace(
    STUDENTS["runet-m5"],
    frame_filter_log=True,
    description="quality v6: runet-m5 whose frame filter reads log band statistics (soft vs halos)",
)
STUDENTS["runet-fg"] = dataclasses.replace(
    STUDENTS["runet-fh"],
    band_frame_gain=True,
    description="fast v6: runet-fh whose band gains get a per-frame term from whole-frame statistics",
)
STUDENTS["runet-fs"] = dataclasses.replace(
    STUDENTS["runet-fg"],
    band_frame_slope=True,
    description="runet-fg whose per-frame gain also reads a coarse band (the spectrum's slope: soft vs halos)",
)
STUDENTS["runet-fc"] = dataclasses.replace(
    STUDENTS["runet-fh"],
    band_coring=True,
    description="runet-fh plus a second gain on its cored band (sharpens only what stands above the noise)",
)
STUDENTS["runet-fe"] = dataclasses.replace(
    STUDENTS["runet-fs"],
    band_frame_edge=True,
    description="runet-fs whose per-frame gain also reads how steep the frame's strongest edges are",
)
STUDENTS |= {
    "runet-fhr": _with_rep("runet-fh"),
    "runet-fgr": _with_rep("runet-fg"),
    "runet-fsr": _with_rep("runet-fs"),
    "runet-fer": _with_rep("runet-fe"),
    "runet-fcr": _with_rep("runet-fc"),
    "runet-m3r": _with_rep("runet-m3"),
    "runet-m5r": _with_rep("runet-m5"),
    "runet-m6r": _with_rep("runet-m6"),
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


#: Fixed edge kernels of :class:`RepConv3x3`'s edge branches: Sobel x, Sobel y, Laplacian.
EDGE_KERNELS = (
    ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0)),
    ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0)),
    ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0)),
)


class RepConv3x3(nn.Conv2d):
    """A 3x3 conv (zero padding) trained as a sum of linear branches that merge into one 3x3 conv.

    Branches (edge-oriented, as in ECBSR): the plain 3x3 kernel (``weight``, ``bias``), a 1x1 conv, a 1x1
    expansion to ``ratio * C`` channels followed by a 3x3 squeeze, and 1x1 mixes followed by fixed Sobel-x,
    Sobel-y and Laplacian kernels. Every branch is linear and bias-free but the plain one, and zero padding
    commutes with a 1x1 conv, so their sum *is* a single 3x3 conv: :meth:`merged` computes it, and ``forward``
    runs it, so training costs one conv per call. What changes is how gradient steps move the kernel (more
    parameters per tap, an edge prior), never what the layer can compute, nor its cost once merged.
    The extra branches start at zero (the expansion at random), so the layer starts as its plain kernel.
    """

    def __init__(self, in_ch: int, out_ch: int, ratio: int) -> None:
        super().__init__(in_ch, out_ch, 3, padding=1)
        self.point = nn.Parameter(torch.zeros(out_ch, in_ch))
        self.expand = nn.Parameter(torch.empty(ratio * in_ch, in_ch))
        self.squeeze = nn.Parameter(torch.zeros(out_ch, ratio * in_ch, 3, 3))
        self.edges = nn.Parameter(torch.zeros(len(EDGE_KERNELS), out_ch, in_ch))
        self.register_buffer("edge_kernels", torch.tensor(EDGE_KERNELS), persistent=False)
        nn.init.kaiming_uniform_(self.expand, a=math.sqrt(5))

    def merged(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight, bias)`` of the single 3x3 conv that equals the sum of the branches."""
        weight = self.weight + torch.einsum("omhw,mi->oihw", self.squeeze, self.expand)
        weight = weight + torch.einsum("koi,khw->oihw", self.edges, self.edge_kernels)
        centre = F.pad(self.point[:, :, None, None], (1, 1, 1, 1))
        return weight + centre, self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.merged()
        return F.conv2d(x, weight, bias, padding=1)


def block_conv(ch: int, rep: int) -> nn.Conv2d:
    """A residual block's 3x3 conv: plain, or over-parameterised for training (``rep`` > 0)."""
    return RepConv3x3(ch, ch, rep) if rep else nn.Conv2d(ch, ch, 3, padding=1)


class ResBlock(nn.Module):
    """x + conv3x3(relu(conv3x3(x)))."""

    def __init__(self, ch: int, rep: int = 0) -> None:
        super().__init__()
        self.conv1 = block_conv(ch, rep)
        self.conv2 = block_conv(ch, rep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class HalfResBlock(nn.Module):
    """x + conv3x3(relu(x)): a ResBlock without its first conv (the stem or previous block feeds it)."""

    def __init__(self, ch: int, rep: int = 0) -> None:
        super().__init__()
        self.conv2 = block_conv(ch, rep)  # named like ResBlock's second conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(x))


#: Where a cored band's threshold starts (4 levels of 255, the middle of the per-family unsharp masks' 2-5).
CORE_THRESHOLD = 4.0 / 255.0

#: BT.709 luma weights: the bands sharpen brightness only, so colours never fringe.
LUMA = (0.2126, 0.7152, 0.0722)
LOG_FLOOR = 1e-5  # band magnitudes below this read as a flat frame in the frame filter's log statistics


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """A normalised 2-D Gaussian of ``size`` x ``size``."""
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return (k / k.sum()).float()


def bilinear_spread(scale: int) -> torch.Tensor:
    """3x3 weights that bilinearly up-sample a low-resolution map into ``scale**2`` sub-pixel channels.

    Output channel ``i * scale + j`` holds the value at sub-pixel (i, j) of each ``scale`` x ``scale`` block,
    as ``F.interpolate(..., mode="bilinear", align_corners=False)`` would compute it.
    """
    w1 = torch.zeros(scale, 3)
    for i in range(scale):
        t = (i + 0.5) / scale - 0.5
        if t < 0:
            w1[i, 0], w1[i, 1] = -t, 1 + t
        else:
            w1[i, 1], w1[i, 2] = 1 - t, t
    return torch.einsum("ia,jb->ijab", w1, w1).reshape(scale * scale, 1, 3, 3)


class FrameMLP(nn.Module):
    """Per-frame values from pooled statistics: ``Linear -> ReLU -> Linear``, the last layer zero at start (so
    a fresh branch adds nothing)."""

    def __init__(self, stats: int, outputs: int, hidden: int = 32) -> None:
        super().__init__()
        self.hidden = nn.Linear(stats, hidden)
        self.weights = nn.Linear(hidden, outputs)
        nn.init.zeros_(self.weights.weight)
        nn.init.zeros_(self.weights.bias)

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        """``(N, outputs)`` from ``(N, stats)``."""
        return self.weights(F.relu(self.hidden(stats)))


def per_band_mean(values: torch.Tensor, sub: int) -> torch.Tensor:
    """``(N, K)``: the mean of ``values`` (``(N, K * sub, h, w)``, bands in the blocked layout) over each band's
    pixels and ``sub`` sub-pixels."""
    return values.mean(dim=(2, 3)).view(values.shape[0], -1, sub).mean(dim=2)


def log_band_stats(bands: torch.Tensor, sub: int) -> torch.Tensor:
    """``(N, 2K)``: each band's log mean magnitude, then its log(rms / mean magnitude) (about 0 on a flat frame;
    large where the band is sparse, as at a camera's halos). Bands in the blocked layout, ``sub`` sub-pixels each.

    Pow and Log stay fp32 in the fp16 graph (``trt_engine.precision``), where squared bands would underflow.
    """
    log_magnitude = torch.log(per_band_mean(bands.abs(), sub) + LOG_FLOOR)
    energy = per_band_mean(bands.pow(2), sub)
    return torch.cat([log_magnitude, 0.5 * torch.log(energy + LOG_FLOOR**2) - log_magnitude], dim=1)


def edge_profile(x: torch.Tensor, luma: torch.Tensor, every: int = 16, segment: int = 4) -> torch.Tensor:
    """``(N, 1)``: how steep the frame's strongest edges are, at any contrast. On luma rows every ``every`` rows:
    the log of the steepest one-pixel step in each ``segment``-pixel run against the step between neighbouring runs'
    means, averaged over the runs weighted by that coarse step squared (relative to its mean, so fp16 holds it).
    About 0 for a 1-pixel edge, lower the wider edges are (soft cameras, up-scalers), higher with halos. Reads 1 /
    ``every`` of the frame; ``x``'s width must be a multiple of ``segment``."""
    y = (x[:, :, ::every] * luma).sum(dim=1, keepdim=True)
    steep = F.max_pool2d(F.pad((y[..., 1:] - y[..., :-1]).abs(), (0, 1)), (1, segment))[..., :-1]
    means = F.avg_pool2d(y, (1, segment))
    coarse = (means[..., 1:] - means[..., :-1]).abs()
    weight = (coarse / (coarse.mean(dim=(2, 3), keepdim=True) + LOG_FLOOR)).pow(2)
    fine_mean = (steep * weight).mean(dim=(2, 3))
    coarse_mean = (coarse * weight).mean(dim=(2, 3))
    return torch.log(fine_mean + LOG_FLOOR) - torch.log(coarse_mean + LOG_FLOOR)


class GainBands(nn.Module):
    """Full-resolution sharpening steered from low resolution, computed in space-to-depth form.

    For every ``scale`` x ``scale`` block of the input, one strided convolution computes ``bands`` high-pass
    responses at each of its pixels (learned ``kernel`` x ``kernel`` filters on the full-resolution input,
    initialised as luma minus a Gaussian of luma: unsharp-mask bands at radius 0.6, 1.2, 2.4, ...). A 1x1 conv
    predicts one gain per band from the low-resolution features; a 3x3 grouped conv spreads it bilinearly to the
    block's pixels. Their products, summed over bands, give ``scale**2`` channels at low resolution, which the
    student's tail (a transposed conv) places back at full resolution. So the network can sharpen edges, leave flat or clean
    regions alone and smooth (negative gain) noise and blocking per pixel, while every op runs at 1/scale
    resolution, where onnxruntime's blocked convolutions are fast. Gains start at zero (identity).

    With ``frame_gain``, each band's gain also gets one term per frame, from a small MLP on statistics pooled over
    the whole frame (the features, as :meth:`StrengthHead.pooled`, and each band's :func:`log_band_stats`): a frame
    that is soft all over can be sharpened where the local features alone would not dare. Its last layer starts at
    zero. The pooling reads low-resolution tensors only, so the graph keeps its shape and its cost.

    With ``slope`` as well, the MLP also reads the log statistics of a coarse band: luma sampled every ``scale``
    pixels minus its 3x3 mean. The band's log magnitude minus the coarse one is the slope of the frame's spectrum,
    which a soft camera lowers and an over-sharpening one raises, at any contrast (the band's sparsity alone
    tells noise from detail, not softness from halos). Sampling reads 1 / ``scale**2`` of the frame: nearly free.

    With ``edge``, one more input: how steep the frame's strongest edges are (:func:`edge_profile`), which orders
    the damage families on real frames where the spectrum's slope, swamped by content, does not.

    With ``coring``, each band also gets a second per-pixel gain on its *cored* copy: the band soft-thresholded at
    a learned level per band (``sign(b) * max(|b| - t, 0)``, the threshold of an unsharp mask). The plain gain
    sharpens or smooths everything the band holds; the cored one sharpens only what stands above the noise and
    codec ripple, as the unsharp masks tuned per call family do (threshold 2-5 levels). Four elementwise ops at
    low resolution; the cored gain starts at zero, so a student warm-started from its plain form starts as exactly
    that student.
    """

    def __init__(
        self,
        features: int,
        bands: int,
        kernel: int,
        scale: int,
        frame_gain: bool = False,
        slope: bool = False,
        edge: bool = False,
        coring: bool = False,
    ) -> None:
        super().__init__()
        self.bands, self.scale, self.slope, self.edge = bands, scale, slope, edge
        stats = 3 * features + 2 * bands + (2 if slope else 0) + (1 if edge else 0)
        self.frame = FrameMLP(stats, bands) if frame_gain else None
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)
        sub = scale * scale
        # reflect padding: a zero-padded high-pass would draw a line around every frame
        self.filters = nn.Conv2d(
            3,
            bands * sub,
            scale + kernel - 1,
            stride=scale,
            padding=kernel // 2,
            padding_mode="reflect",
            bias=False,
        )
        self.gain = nn.Conv2d(features, bands, 1)
        self.spread = nn.Conv2d(
            bands, bands * sub, 3, padding=1, groups=bands, bias=False, padding_mode="replicate"
        )
        with torch.no_grad():
            self.filters.weight.zero_()
            delta = torch.zeros(kernel, kernel)
            delta[kernel // 2, kernel // 2] = 1.0
            for k in range(bands):
                high_pass = delta - gaussian_kernel(kernel, 0.6 * 2**k)
                for i in range(scale):
                    for j in range(scale):
                        for c, weight in enumerate(LUMA):
                            self.filters.weight[
                                k * sub + i * scale + j, c, i : i + kernel, j : j + kernel
                            ] = weight * high_pass
            self.spread.weight.copy_(bilinear_spread(scale).repeat(bands, 1, 1, 1))
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.gain.bias)
        self.core_gain = nn.Conv2d(features, bands, 1) if coring else None
        self.core_threshold = nn.Parameter(torch.full((bands,), CORE_THRESHOLD)) if coring else None
        if self.core_gain is not None:
            nn.init.zeros_(self.core_gain.weight)
            nn.init.zeros_(self.core_gain.bias)

    def forward(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``scale**2`` low-resolution channels: the sum over bands of gain times band, at each sub-pixel."""
        sub = self.scale * self.scale
        bands = self.filters(x)
        gain = self.gain(features)
        if self.frame is not None:
            gain = gain + self.frame(self.frame_stats(x, features, bands))[:, :, None, None]
        product = self.spread(gain) * bands
        if self.core_gain is not None:
            product = product + self.spread(self.core_gain(features)) * self.cored(bands)
        out = product[:, :sub]
        for k in range(1, self.bands):
            out = out + product[:, k * sub : (k + 1) * sub]
        return out

    def cored(self, bands: torch.Tensor) -> torch.Tensor:
        """``bands`` soft-thresholded at each band's learned level (kept >= 0): ``sign(b) * max(|b| - t, 0)``."""
        assert self.core_threshold is not None
        level = self.core_threshold.clamp(min=0).repeat_interleave(self.scale * self.scale)
        level = level.view(1, -1, 1, 1)
        return bands - torch.minimum(torch.maximum(bands, -level), level)

    def frame_stats(self, x: torch.Tensor, features: torch.Tensor, bands: torch.Tensor) -> torch.Tensor:
        """``(N, stats)``: what the per-frame term reads: the pooled features, each band's :func:`log_band_stats`,
        with ``slope`` those of the coarse band of ``x``, and with ``edge`` its :func:`edge_profile`."""
        stats = [StrengthHead.pooled(features), log_band_stats(bands, self.scale * self.scale)]
        if self.slope:
            luma = (x[:, :, :: self.scale, :: self.scale] * self.luma).sum(dim=1, keepdim=True)
            coarse = luma - F.avg_pool2d(luma, 3, stride=1, padding=1, count_include_pad=False)
            stats.append(log_band_stats(coarse, 1))
        if self.edge:
            stats.append(edge_profile(x, self.luma))
        return torch.cat(stats, dim=1)

    def placement(self) -> torch.Tensor:
        """Transposed-conv weights that add each sub-pixel channel to R, G and B at its full-resolution place."""
        w = torch.zeros(self.scale * self.scale, 3, self.scale, self.scale)
        for i in range(self.scale):
            for j in range(self.scale):
                w[i * self.scale + j, :, i, j] = 1.0
        return w


class FrameContext(nn.Module):
    """Whole-frame context: features are rescaled per channel by statistics pooled over the entire frame.

    ``x * (1 + W2 @ mean(relu(W1 @ deep)))``, squeeze-and-excitation style but without a sigmoid, where ``deep``
    are the deepest level's features (for a one-level student, the features themselves). The pooled statistics
    tell the student what kind of damage the *frame* has (noise, blocking, softness, or none), which a small
    receptive field cannot see; the deepest level sees the most of the frame per position. ``W2`` starts at zero,
    so a fresh student is unchanged. (A first version used ``2 * sigmoid``: in three of four CPU runs it drove the
    scales to 0, where the sigmoid's gradient vanishes, and the student stayed the identity for good; a linear
    scale keeps its gradient at 0.)
    """

    def __init__(self, features: int, width: int, deep_features: int | None = None) -> None:
        super().__init__()
        self.probe = nn.Conv2d(deep_features or features, width, 1)
        self.scale = nn.Conv2d(width, features, 1)
        nn.init.zeros_(self.scale.weight)
        nn.init.zeros_(self.scale.bias)

    def forward(self, x: torch.Tensor, deep: torch.Tensor | None = None) -> torch.Tensor:
        stats = F.relu(self.probe(x if deep is None else deep)).mean(dim=(2, 3), keepdim=True)
        return x * (1.0 + self.scale(stats))


class StrengthHead(nn.Module):
    """A per-frame residual scale: ``clamp(w . pooled + b, 0, max_scale)`` from three statistics per channel of the
    level-0 features, pooled over the whole frame (mean of the positive part, mean magnitude, standard deviation).

    It starts as ``w = 0, b = 1`` (the student unchanged) and is meant to be *fitted*, not trained: a frame's PSNR
    gain at any scale has a closed form, and :mod:`kd_trainer.strength` fits the weights to training chains by
    maximising gain minus harm (:meth:`set_linear` loads them). In ONNX it is a few reductions at low resolution, a dot product and a multiply per
    frame. The residual is scaled before the tail's pixel shuffle (:class:`BlockUp`): scaled after it, the graph no
    longer ended in ``DepthToSpace`` + ``Add``, which the onnxruntime backend runs on the host, and a 1080p
    ``runet-fh`` frame took ~12 ms longer on 2 CPU cores.
    """

    def __init__(self, features: int, max_scale: float = 2.0) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * features, 1)
        self.register_buffer("max_scale", torch.tensor(float(max_scale)))
        nn.init.zeros_(self.linear.weight)
        nn.init.ones_(self.linear.bias)

    @staticmethod
    def pooled(features: torch.Tensor) -> torch.Tensor:
        """``(N, 3C)``: per channel, the frame's mean of relu(f), mean of |f| and standard deviation of f."""
        mean = features.mean(dim=(2, 3))
        var = (features * features).mean(dim=(2, 3)) - mean * mean
        return torch.cat(
            [F.relu(features).mean(dim=(2, 3)), features.abs().mean(dim=(2, 3)), var.clamp(min=0).sqrt()],
            dim=1,
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, 1, 1, 1)`` scales for the residual."""
        scale = self.linear(self.pooled(features))
        return torch.minimum(scale.clamp(min=0.0), self.max_scale).view(-1, 1, 1, 1)

    def set_linear(self, weights: torch.Tensor, bias: float, max_scale: float) -> None:
        """Load a fitted read-out: ``weights`` over :meth:`pooled`'s ``3C`` statistics, ``bias``, clamp at ``max_scale``."""
        with torch.no_grad():
            self.linear.weight.copy_(weights.reshape(1, -1))
            self.linear.bias.fill_(float(bias))
            self.max_scale.fill_(float(max_scale))


class ZeroSumConv(nn.Conv2d):
    """A bias-free 1-channel conv with reflect padding whose kernels are made to sum to zero: every output is
    high-pass, so a flat region gives exactly zero, at the frame's borders too.

    With ``block`` > 1 it runs in space-to-depth form, the same map at ``1/block`` resolution: one conv with stride
    ``block`` on the reflect-padded input gives every output pixel of each block at once (its kernel is built from
    the ``k`` x ``k`` one by a fixed placement, so weights and checkpoints are the same), and the result stays in
    that layout: ``(N, out * block**2, H / block, W / block)``, output channel ``o * block**2 + i * block + j``
    holding sub-pixel ``(i, j)``, ready for the students' pixel shuffle.
    """

    def __init__(self, out_channels: int, kernel: int, block: int = 1) -> None:
        super().__init__(1, out_channels, kernel, padding=kernel // 2, padding_mode="reflect", bias=False)
        self.block = block
        self.blocks_out = -(-(kernel // 2) // block)  # low-resolution blocks the kernel reaches on each side
        self.span = 2 * self.blocks_out + 1
        if block > 1:
            self.register_buffer("placement", self._placement(kernel, block), persistent=False)

    def _placement(self, kernel: int, block: int) -> torch.Tensor:
        """``(block**2, block**2, span, span, kernel**2)`` one-hot: which tap of the kernel each blocked weight is."""
        radius, b = kernel // 2, self.blocks_out
        place = torch.zeros(block * block, block * block, self.span, self.span, kernel * kernel)
        for i in range(block):
            for j in range(block):
                for p in range(block):
                    for q in range(block):
                        for by in range(self.span):
                            for bx in range(self.span):
                                dy, dx = (by - b) * block + p - i, (bx - b) * block + q - j
                                if abs(dy) <= radius and abs(dx) <= radius:
                                    tap = (dy + radius) * kernel + dx + radius
                                    place[i * block + j, p * block + q, by, bx, tap] = 1.0
        return place

    def zero_sum_weight(self) -> torch.Tensor:
        return self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.zero_sum_weight()
        if self.block == 1:
            return self._conv_forward(x, weight, None)
        u, span = self.block, self.span
        blocked = torch.einsum("kt,oiyxt->koiyx", weight.flatten(1), self.placement).flatten(0, 1)
        # the conv on unshuffled blocks, written as one strided conv on the padded input (no SpaceToDepth)
        strided = blocked.view(-1, u, u, span, span).permute(0, 3, 1, 4, 2).reshape(-1, 1, span * u, span * u)
        pad = self.blocks_out * u
        return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), strided, stride=u)


class FrameFilter(nn.Module):
    """A full-resolution luma filter chosen per frame: ``sum_k w_k(frame) * (B_k * luma)``, added to R, G and B.

    ``B_k`` are ``K`` learned 9x9 high-pass kernels (:class:`ZeroSumConv`, initialised as unsharp-mask bands at two
    radii and as horizontal and vertical second differences); the weights ``w_k`` come from a small MLP on
    statistics pooled over the whole frame: the level-0 and deepest features (as :meth:`StrengthHead.pooled`)
    and the mean magnitude of each band (with ``log_stats``: the log of that magnitude and the log of each band's
    root-mean-square over it, which is large where the band is sparse, as at a camera's halos, and small for
    noise: a contrast-free way to tell a soft frame from an over-sharpened one). So one frame gets one filter,
    as the family filter of ``benchmarks.linear_bound --leave-one-out`` (one 9x9 filter per damage family), but
    chosen from what the frame shows. The MLP's last layer starts at zero, so a fresh branch is the identity.
    The bands run in the student's space-to-depth layout (``block``, :class:`ZeroSumConv`):
    ``K * (2 ceil(4 / block) + 1)**2 * block**2`` MAC a pixel, 100 K at block 2 and 144 K at block 4 (a direct
    9x9 conv would be ``81 K``), plus ``3 + K * block**2`` for the luma mix and the band sum.
    """

    def __init__(
        self,
        features: int,
        deep_features: int,
        count: int,
        kernel: int = 9,
        block: int = 1,
        log_stats: bool = False,
    ) -> None:
        super().__init__()
        self.log_stats = log_stats
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)
        self.basis = ZeroSumConv(count, kernel, block)
        band_sum = torch.eye(block * block).repeat(1, count)  # sub-pixel s of every band -> output channel s
        self.register_buffer("band_sum", band_sum[:, :, None, None], persistent=False)
        # the MLP from statistics to band weights (FrameMLP's layers, kept here in their order for old checkpoints)
        stats = 3 * features + 3 * deep_features + count * (2 if log_stats else 1)
        self.hidden = nn.Linear(stats, 32)
        self.weights = nn.Linear(32, count)
        with torch.no_grad():
            self.basis.weight.zero_()
            centre = kernel // 2
            for k in range(count):
                if k < 2 or count < 4:  # isotropic bands at radius 0.7 and 1.4
                    band = -gaussian_kernel(kernel, 0.7 * 2 ** min(k, 1))
                else:  # second differences along x (k = 2) and y (k = 3)
                    band = torch.zeros(kernel, kernel)
                    line = band[centre] if k % 2 == 0 else band[:, centre]
                    line[centre - 1 : centre + 2] = torch.tensor([-0.5, 0.0, -0.5])
                band[centre, centre] += 1.0
                self.basis.weight[k, 0] = band
        nn.init.zeros_(self.weights.weight)
        nn.init.zeros_(self.weights.bias)

    def forward(self, x: torch.Tensor, level0: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)``: the frame's filter applied to its luma (broadcast over R, G and B by the caller)."""
        bands = self.bands_of(x)
        sub = self.basis.block**2
        stats = torch.cat(
            [StrengthHead.pooled(level0), StrengthHead.pooled(deep), self.band_stats(bands)], dim=1
        )
        weights = self.weights(F.relu(self.hidden(stats)))
        # weigh each band's sub-pixel channels, then a fixed 1x1 conv sums the bands per sub-pixel (plain 4-D ops)
        weighted = bands * weights.repeat_interleave(sub, dim=1)[:, :, None, None]
        filtered = F.conv2d(weighted, self.band_sum)  # (N, block**2, H / block, W / block)
        return F.pixel_shuffle(filtered, self.basis.block) if sub > 1 else filtered

    def bands_of(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, K * block**2, H / block, W / block)``: every band of the frame's luma, in the blocked layout."""
        # luma as Mul + ReduceSum, not a 3 -> 1 conv, whose output onnxruntime pads to 16 channels
        return self.basis((x * self.luma).sum(dim=1, keepdim=True))

    def band_stats(self, bands: torch.Tensor) -> torch.Tensor:
        """What the MLP reads of the bands: ``(N, K)`` mean magnitudes, or with ``log_stats`` ``(N, 2K)``: log mean
        magnitude of each band, then log(rms / mean magnitude) (:func:`log_band_stats`).
        """
        sub = self.basis.block**2
        return log_band_stats(bands, sub) if self.log_stats else per_band_mean(bands.abs(), sub)


def remove_local_mean(residual: torch.Tensor, block: int) -> torch.Tensor:
    """``residual`` minus its local mean: block averages, bilinearly up-sampled (AveragePool + Resize in ONNX).

    What is left is high-pass by construction: a student with it can sharpen, smooth and deblock, but cannot
    shift brightness or colour over areas wider than about ``2 * block`` pixels (the failure of an earlier
    ``quality`` on smooth, saturated photos and text scans). Height and width must be multiples of ``block``.
    """
    local_mean = F.avg_pool2d(residual, block)
    return residual - F.interpolate(local_mean, scale_factor=block, mode="bilinear", align_corners=False)


class BlockUp(nn.ConvTranspose2d):
    """A transposed conv whose kernel equals its stride (each input pixel writes its own ``k`` x ``k`` block), run
    as a 1x1 conv to ``out * k * k`` channels plus a pixel shuffle.

    The two are the same map, but in ONNX the second is ``Conv`` + ``DepthToSpace``, which onnxruntime's CPU
    provider runs faster than its ``ConvTranspose`` (the full-resolution tail took ~30% of a 1080p ``runet-f2``
    frame). Parameters and their names are the transposed conv's, so checkpoints are unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, k: int) -> None:
        super().__init__(in_channels, out_channels, k, stride=k)

    def forward(
        self, x: torch.Tensor, output_size: list[int] | None = None, scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The transposed conv of ``x``, times ``scale`` (``(N, 1, 1, 1)``, optional) if given.

        The scale multiplies the low-resolution channels *before* the pixel shuffle (the same product), so the
        graph still ends in ``DepthToSpace``, which the onnxruntime backend moves to the host.
        """
        k = self.stride[0]
        c_in, c_out = self.weight.shape[:2]
        weight = self.weight.permute(1, 2, 3, 0).reshape(c_out * k * k, c_in, 1, 1)
        bias = self.bias.repeat_interleave(k * k) if self.bias is not None else None
        out = F.conv2d(x, weight, bias)
        return F.pixel_shuffle(out if scale is None else out * scale, k)


class ResidualUNet(nn.Module):
    """The student network; see the module docstring."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        w, u = config.widths, config.unshuffle
        block = HalfResBlock if config.half else ResBlock
        self.stem = nn.Conv2d(3, w[0], u, stride=u) if u > 1 else nn.Conv2d(3, w[0], 3, padding=1)
        self.encoders = nn.ModuleList(
            nn.Sequential(*[block(wi, config.rep) for _ in range(b)])
            for wi, b in zip(w, config.blocks, strict=True)
        )
        self.downs = nn.ModuleList(nn.Conv2d(w[i], w[i + 1], 2, stride=2) for i in range(len(w) - 1))
        self.ups = nn.ModuleList(BlockUp(w[i + 1], w[i], 2) for i in range(len(w) - 1))
        self.decoders = nn.ModuleList(
            nn.Sequential(*[block(w[i], config.rep) for _ in range(config.blocks[i])])
            for i in range(len(w) - 1)
        )
        self.context = FrameContext(w[0], config.context, w[-1]) if config.context else None
        self.strength = StrengthHead(w[0]) if config.strength else None
        self.bands = (
            GainBands(
                w[0],
                config.bands,
                config.band_kernel,
                u,
                frame_gain=config.band_frame_gain,
                slope=config.band_frame_slope,
                edge=config.band_frame_edge,
                coring=config.band_coring,
            )
            if config.bands
            else None
        )
        self.frame_filter = (
            FrameFilter(w[0], w[-1], config.frame_filter, block=u, log_stats=config.frame_filter_log)
            if config.frame_filter
            else None
        )
        tail_in = w[0] + (u * u if config.bands else 0)
        if self.bands is not None:  # the tail places the band channels at full resolution
            self.tail = BlockUp(tail_in, 3, u)
        else:
            self.tail = BlockUp(w[0], 3, u) if u > 1 else nn.Conv2d(w[0], 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        if self.bands is not None:
            with torch.no_grad():
                self.tail.weight[w[0] :].copy_(self.bands.placement())
        self.detail = (  # reflect padding: a zero-padded high-pass would draw a line around every frame
            nn.Conv2d(3, 3, config.detail, padding=config.detail // 2, padding_mode="reflect")
            if config.detail
            else None
        )
        if self.detail is not None:
            nn.init.zeros_(self.detail.weight)
            nn.init.zeros_(self.detail.bias)

    def body(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The UNet between stem and tail, on stem features (``widths[0]`` channels).

        Returns the level-0 output features and the deepest level's encoder features (the context's input).
        """
        skips = []
        for i, enc in enumerate(self.encoders):
            h = enc(h)
            if i < len(self.downs):
                skips.append(h)
                h = self.downs[i](h)
        deep = h
        for i in reversed(range(len(self.ups))):
            h = self.decoders[i](self.ups[i](h) + skips[i])
        return h, deep

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) on an input whose size is already a multiple of ``config.multiple``."""
        return self.residual_and_features(x)[0]

    def residual_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(f(x), level-0 features, deepest level's encoder features)`` on an input of a fitting size.

        The level-0 features are the network's own output at its first level (before the context branch and
        the bands): what a :class:`StrengthHead` reads, and what ``benchmarks.strength_probe`` pools.
        """
        features, deep = self.body(self.stem(x))
        level0 = features
        if self.context is not None:
            features = self.context(features, deep)
        if self.bands is not None:
            features = torch.cat([features, self.bands(x, features)], dim=1)
        scale = self.strength(level0) if self.strength is not None else None
        if scale is not None and isinstance(self.tail, BlockUp) and self.detail is None:
            out = self.tail(features, scale=scale)  # scaled before the pixel shuffle (see BlockUp)
        else:
            out = self.tail(features)
            if self.detail is not None:
                out = out + self.detail(x)
            if scale is not None:
                out = out * scale
        out = remove_local_mean(out, self.config.lowcut) if self.config.lowcut else out
        if self.frame_filter is not None:  # high-pass already: after the local mean removal
            filtered = self.frame_filter(x, level0, deep)
            out = out + (filtered if scale is None else filtered * scale)
        return out, level0, deep

    def pad_to_multiple(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` reflect-padded at the bottom and right to a multiple of ``config.multiple`` (``x`` itself if it fits)."""
        _, _, height, width = x.shape
        m = self.config.multiple
        pad_h, pad_w = (-height) % m, (-width) % m
        return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if (pad_h or pad_w) else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, height, width = x.shape
        xp = self.pad_to_multiple(x)
        out = xp + self.residual(xp)
        return out[:, :, :height, :width] if xp is not x else out


def build_student(name_or_config: str | StudentConfig) -> ResidualUNet:
    """Create a freshly initialised student from a registry name or a config."""
    cfg = get_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
    return ResidualUNet(cfg)


def scale_residual(model: ResidualUNet, factor: float) -> ResidualUNet:
    """A copy of ``model`` whose output is ``x + factor * residual(x)``, at no extra cost per frame.

    The residual is linear in the tail's and the detail conv's weights and biases (the band gains and the local
    mean removal come before or after them linearly), and a frame filter's output is linear in its last layer,
    so scaling those tensors scales it exactly.
    """
    scaled = ResidualUNet(model.config)
    scaled.load_state_dict(model.state_dict())
    frame_weights = scaled.frame_filter.weights if scaled.frame_filter is not None else None
    with torch.no_grad():
        for layer in (scaled.tail, scaled.detail, frame_weights):
            if layer is not None:
                layer.weight.mul_(factor)
                layer.bias.mul_(factor)
    return scaled.to(next(model.parameters()).device).train(model.training)


def merge_branches(model: ResidualUNet) -> ResidualUNet:
    """``model`` itself if it is plain, else a copy with every :class:`RepConv3x3` merged into one plain conv.

    The copy's config has ``rep`` 0 (a trained ``runet-fhr`` becomes a ``runet-fh``); its outputs equal the
    original's up to float rounding. Exports and shipped checkpoints hold merged students.
    """
    if not model.config.rep:
        return model
    plain = ResidualUNet(dataclasses.replace(model.config, rep=0))
    state = {k: v for k, v in model.state_dict().items() if k in plain.state_dict()}
    for name, module in model.named_modules():
        if isinstance(module, RepConv3x3):
            weight, bias = module.merged()
            state[f"{name}.weight"], state[f"{name}.bias"] = weight.detach(), bias.detach()
    plain.load_state_dict(state, strict=True)
    return plain.to(next(model.parameters()).device).train(model.training)


def with_strength_head(model: ResidualUNet) -> ResidualUNet:
    """A copy of ``model`` with a :class:`StrengthHead` at its identity (scale 1): the same outputs until it is fitted."""
    if model.config.strength:
        raise ValueError("the student already has a strength head")
    headed = ResidualUNet(dataclasses.replace(model.config, strength=True))
    missing, unexpected = headed.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not key.startswith("strength.") for key in missing):
        raise CheckpointError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    return headed.to(next(model.parameters()).device).train(model.training)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: ResidualUNet, height: int = 1080, width: int = 1920) -> int:
    """Multiply-accumulates of one forward pass at ``height`` x ``width`` (padding included).

    Counted from layer shapes on the meta device, so it is instant even for 1080p.
    """
    macs = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, FrameFilter):  # its own convs: the luma mix and the fixed band sum
            bands = output.numel() * module.band_sum.shape[1]  # every band's sub-pixel, once per output pixel
            macs += output.numel() * 3 + bands
            return
        k = math.prod(module.kernel_size)
        if isinstance(module, ZeroSumConv) and module.block > 1:  # a strided conv: span * block taps a side
            macs += output.numel() * module.block**2 * module.span**2
        elif isinstance(module, nn.ConvTranspose2d):
            macs += inputs[0].numel() * module.out_channels // module.groups * k
        else:
            macs += output.numel() * module.in_channels // module.groups * k

    meta = ResidualUNet(model.config).to("meta")
    handles = [
        m.register_forward_hook(hook)
        for m in meta.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, FrameFilter))
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
        import zipfile

        with open(p, "rb") as fh:
            signed = (
                zipfile.is_zipfile(fh) or fh.seek(0) == 0 and fh.read(1) == b"\x80"
            )  # zip or legacy pickle
        lines = [ln for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
        first = lines[0][:160] if signed else "no PyTorch zip or pickle signature"  # torch's are paragraphs
        raise CheckpointError(f"cannot read checkpoint {p} (corrupt or not a PyTorch file): {first}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{p} is not an image-sharpening-kd student checkpoint (format {got!r}, expected "
            f"{CHECKPOINT_FORMAT!r}); train one with kd-train"
        )
    return ckpt


def _check_state_shapes(path: str | Path, cfg: StudentConfig, state: Any) -> None:
    """Compare the checkpoint's tensors with ``cfg``'s on the meta device (nothing allocated).

    The network is built for real only once the file's own weights match it, so its size is bounded by the
    file's: a 1 KB checkpoint announcing a huge config is refused in milliseconds.
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: the checkpoint has no state_dict of tensors; the file is corrupt")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in ResidualUNet(cfg).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        missing = sorted(set(expected) - set(got))[:3]
        extra = sorted(set(got) - set(expected))[:3]
        wrong = [k for k in expected if k in got and got[k] != expected[k]][:3]
        raise CheckpointError(
            f"{path}: weights do not match the student config {cfg.to_dict()} (missing {missing}, "
            f"unexpected {extra}, wrong shape {wrong}); the file is corrupt or was edited"
        )


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
    _check_state_shapes(path, cfg, ckpt.get("state_dict"))  # before allocating: a crafted config is tiny
    model = ResidualUNet(cfg)
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: weights do not match the student config {cfg.to_dict()}: {exc}"
        ) from exc
    model.eval()
    return model, ckpt


def warm_start_fits(config: StudentConfig, init: StudentConfig) -> bool:
    """Whether a student ``init`` can warm start ``config``: the same shape, that shape without its context branch
    or frame filter or its bands' frame gain or coring, or the plain form (``rep=0``) of either."""
    plain = dataclasses.replace(config, rep=0)
    grown = {
        dataclasses.replace(cfg, **drop)
        for cfg in (config, plain)
        for drop in (
            {},
            {"context": 0},
            {"frame_filter": 0, "frame_filter_log": False},
            {"context": 0, "frame_filter": 0, "frame_filter_log": False},
            {"band_frame_gain": False, "band_frame_slope": False, "band_frame_edge": False},
            {"band_coring": False},
        )
    }
    return init in grown


def warm_start(model: ResidualUNet, init: ResidualUNet, source: str = "init_from") -> None:
    """Copy ``init``'s weights into ``model``: the same student, or the same one without its frame-level branches.

    A student that adds a whole-frame context branch, a frame filter, a band frame gain or band coring to
    ``init``'s shape keeps the branch as built (its last layer starts at zero), so it begins as exactly ``init``
    and learns the branch from there (:func:`warm_start_fits` says which shapes fit); so does an
    over-parameterised student (``rep``) warm-started from its plain form (its extra branches start at zero), or
    both at once.
    """
    if not warm_start_fits(model.config, init.config):
        raise CheckpointError(
            f"{source} holds a student {init.config.to_dict()}, but {model.config.to_dict()} was expected "
            "(the same shape, that shape without its context branch, frame filter, band frame gain or coring, "
            "or its plain form); pass the matching model"
        )
    missing, unexpected = model.load_state_dict(init.state_dict(), strict=False)
    if unexpected or any(not _warm_start_extra(key) for key in missing):
        raise CheckpointError(f"{source}: weights do not fit: missing {missing}, unexpected {unexpected}")


#: Weight-name prefixes of the branches a warm start grows at zero, and the names of a RepConv3x3's extra branches.
_GROWN_BRANCHES = ("context.", "frame_filter.", "bands.frame.", "bands.core_")
_REP_BRANCHES = ("point", "expand", "squeeze", "edges")


def _warm_start_extra(key: str) -> bool:
    """Whether a weight ``warm_start`` may leave as built: a context branch's, a frame filter's, the bands' frame
    gain's or coring's, or a RepConv3x3's extra branches."""
    return key.startswith(_GROWN_BRANCHES) or key.rsplit(".", 1)[-1] in _REP_BRANCHES

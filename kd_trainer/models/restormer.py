"""Restormer (Zamir et al., CVPR 2022), written to load the official ``motion_deblurring.pth`` strictly.

Parameter names follow the official checkpoint layout (``{"params": state_dict}``), so a real checkpoint
loads with ``strict=True``. Default arguments are the motion-deblurring configuration (~26.1M parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _LayerNorm(nn.Module):
    """Channel LayerNorm over (B, C, H, W), with bias (``WithBias``) or without (``BiasFree``)."""

    def __init__(self, dim: int, with_bias: bool) -> None:
        super().__init__()
        self.body = _LayerNormBody(dim, with_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.body(x.flatten(2).transpose(1, 2))
        return y.transpose(1, 2).reshape(b, c, h, w)


class _LayerNormBody(nn.Module):
    def __init__(self, dim: int, with_bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if with_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.var(-1, keepdim=True, unbiased=False)
        if self.bias is None:
            return x / torch.sqrt(var + 1e-5) * self.weight
        mu = x.mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.weight + self.bias


class _FeedForward(nn.Module):
    """Gated-Dconv feed-forward network."""

    def __init__(self, dim: int, expansion: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * b)


class _Attention(nn.Module):
    """Multi-Dconv head transposed (channel) attention."""

    def __init__(self, dim: int, heads: int, bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = (
            t.reshape(b, self.heads, c // self.heads, h * w) for t in self.qkv_dwconv(self.qkv(x)).chunk(3, 1)
        )
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class _TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, expansion: float, bias: bool, with_bias_norm: bool) -> None:
        super().__init__()
        self.norm1 = _LayerNorm(dim, with_bias_norm)
        self.attn = _Attention(dim, heads, bias)
        self.norm2 = _LayerNorm(dim, with_bias_norm)
        self.ffn = _FeedForward(dim, expansion, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, in_ch: int, dim: int, bias: bool) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class _Resample(nn.Module):
    """Downsample (conv to C/2, pixel-unshuffle) or upsample (conv to 2C, pixel-shuffle)."""

    def __init__(self, ch: int, down: bool) -> None:
        super().__init__()
        out = ch // 2 if down else ch * 2
        shuffle = nn.PixelUnshuffle(2) if down else nn.PixelShuffle(2)
        self.body = nn.Sequential(nn.Conv2d(ch, out, 3, padding=1, bias=False), shuffle)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Restormer(nn.Module):
    """Restormer with the official parameter names; input/output RGB float in [0,1], NCHW."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: tuple[int, int, int, int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: tuple[int, int, int, int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        with_bias_norm: bool = True,
    ) -> None:
        super().__init__()

        def stage(ch: int, h: int, n: int) -> nn.Sequential:
            return nn.Sequential(
                *[_TransformerBlock(ch, h, ffn_expansion_factor, bias, with_bias_norm) for _ in range(n)]
            )

        self.patch_embed = _PatchEmbed(in_channels, dim, bias)
        self.encoder_level1 = stage(dim, heads[0], num_blocks[0])
        self.down1_2 = _Resample(dim, down=True)
        self.encoder_level2 = stage(dim * 2, heads[1], num_blocks[1])
        self.down2_3 = _Resample(dim * 2, down=True)
        self.encoder_level3 = stage(dim * 4, heads[2], num_blocks[2])
        self.down3_4 = _Resample(dim * 4, down=True)
        self.latent = stage(dim * 8, heads[3], num_blocks[3])
        self.up4_3 = _Resample(dim * 8, down=False)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=bias)
        self.decoder_level3 = stage(dim * 4, heads[2], num_blocks[2])
        self.up3_2 = _Resample(dim * 4, down=False)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.decoder_level2 = stage(dim * 2, heads[1], num_blocks[1])
        self.up2_1 = _Resample(dim * 2, down=False)
        self.decoder_level1 = stage(dim * 2, heads[0], num_blocks[0])
        self.refinement = stage(dim * 2, heads[0], num_refinement_blocks)
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        inp = F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x
        e1 = self.encoder_level1(self.patch_embed(inp))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        lat = self.latent(self.down3_4(e3))
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(lat), e3], 1)))
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], 1)))
        d1 = self.decoder_level1(torch.cat([self.up2_1(d2), e1], 1))
        out = self.output(self.refinement(d1)) + inp
        return out[..., :h, :w]


def load_restormer(path: str, **kwargs: object) -> Restormer:
    """Load an official Restormer checkpoint (``{"params": ...}`` or a bare state dict), strictly."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("params", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a Restormer checkpoint (expected a dict with 'params')")
    model = Restormer(**kwargs)  # type: ignore[arg-type]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not match Restormer's motion-deblurring layout: {exc}") from exc
    return model.eval()

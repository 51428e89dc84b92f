"""Building blocks of the Wan 2.1 causal video VAE (encoder and decoder), run chunk by chunk in time.

Layout inside this module: [B, C, T, H, W] (channels first, as Conv3d wants); `wan_vae.py` converts
from and to the engine's [B, T, C, H, W]. Parameter names follow `Wan2.1_VAE.pth` exactly.

Causality: every temporal convolution sees only the current and earlier frames. Run on a video
chunk by chunk, each such layer keeps the last `CACHE_T` frames of its input in a `CausalCache`
slot, so chunked runs equal one run over the whole video. A slot is assigned to each caching layer
when the encoder or decoder is built (`_assign_slots`), so the cache is a flat list indexed by layer.

Two layers treat their first chunk specially (the official behaviour, kept exactly):
- temporal downsample (`downsample3d`): the first chunk passes through without the time conv; later
  chunks run a stride-2 time conv over [last frame of the previous chunk, chunk].
- temporal upsample (`upsample3d`): the first chunk is not doubled in time ('Rep' in the official
  code); later chunks run the time conv with zeros in place of the first chunk's frames, and each
  frame becomes two. An empty (0-frame) slot encodes this 'seen the first chunk' state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from engine.model.attention import attention

CACHE_T = 2  # frames of context a temporal kernel of size 3 needs


@dataclass
class CausalCache:
    """Per-layer time context of a causal encoder or decoder. `slots[i]`: [B, C, t <= 2, H, W] or None."""

    slots: list[Optional[torch.Tensor]]

    @classmethod
    def empty(cls, num_slots: int) -> "CausalCache":
        return cls(slots=[None] * num_slots)

    def copy(self) -> "CausalCache":
        """A cache that can advance without touching this one (slot tensors are never written in place)."""
        return CausalCache(slots=list(self.slots))


class CausalConv3d(nn.Conv3d):
    """Conv3d padded causally in time (2·p_t zero frames in front, or cached frames) and 'same' in space."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size, stride=1, padding=0):
        kt, kh, kw = kernel_size if isinstance(kernel_size, tuple) else (kernel_size,) * 3
        pt, ph, pw = padding if isinstance(padding, tuple) else (padding,) * 3
        super().__init__(in_dim, out_dim, (kt, kh, kw), stride=stride, padding=(0, ph, pw))
        self.time_pad = 2 * pt
        self.slot: Optional[int] = None  # set by _assign_slots when time_pad > 0

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        # x: [B, C, T, H, W]
        if self.time_pad == 0:
            return super().forward(x)
        if cache is not None:
            prev = cache.slots[self.slot]
            ctx = x if prev is None else torch.cat([prev.to(x.dtype), x], dim=2)
            cache.slots[self.slot] = ctx[:, :, -CACHE_T:].clone()
        else:
            ctx = x
        missing = self.time_pad - (ctx.shape[2] - x.shape[2])
        if missing > 0:
            ctx = F.pad(ctx, (0, 0, 0, 0, missing, 0))
        return super().forward(ctx)


class RMSNorm(nn.Module):
    """F.normalize over channels · sqrt(dim) · gamma. gamma: [C,1,1,1] (video) or [C,1,1] (image)."""

    def __init__(self, dim: int, images: bool = False):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Accumulated in fp32 by the reduction, applied in x's dtype: 3 passes over a large tensor, not 6
        # (a dtype=float32 norm would first copy all of x to fp32).
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True).float()  # [B, 1, ...]
        factor = (self.scale / norm.clamp_min(1e-12)).to(x.dtype)  # = F.normalize's max(norm, eps)
        return torch.mul(x, factor).mul_(self.gamma.to(x.dtype))


class ResidualBlock(nn.Module):
    """[RMSNorm, SiLU, Conv3, RMSNorm, SiLU, Dropout, Conv3] + (1x1x1 shortcut when in != out)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim),
            nn.SiLU(inplace=True),  # acts on the norm's fresh output
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim),
            nn.SiLU(inplace=True),
            nn.Dropout(0.0),
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        h = self.shortcut(x)
        for layer in self.residual:
            x = layer(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame (no attention across time)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        identity = x
        y = self.norm(rearrange(x, "b c t h w -> (b t) c h w"))
        qkv = rearrange(self.to_qkv(y), "n (three c) h w -> three n 1 (h w) c", three=3)  # [3, BT, 1, L, C]
        y = attention(qkv[0], qkv[1], qkv[2])  # [BT, 1, L, C]
        y = self.proj(rearrange(y, "n 1 (h w) c -> n c h w", h=h, w=w))
        return rearrange(y, "(b t) c h w -> b c t h w", t=t) + identity


class Resample(nn.Module):
    """Spatial x2 down/up sampling, optionally temporal x2 (module docstring: the first chunk)."""

    def __init__(self, dim: int, mode: str):
        super().__init__()
        if mode not in ("upsample2d", "upsample3d", "downsample2d", "downsample3d"):
            raise ValueError(f"unknown resample mode {mode!r}")
        self.mode = mode
        self.slot: Optional[int] = None
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(
                nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest"), nn.Conv2d(dim, dim // 2, 3, padding=1)
            )
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        # x: [B, C, T, H, W]
        if self.mode == "upsample3d" and cache is not None:
            slot = self.time_conv.slot
            if cache.slots[slot] is None:  # first chunk: no temporal doubling; mark the slot as seen
                cache.slots[slot] = x.new_zeros(x.shape[0], x.shape[1], 0, *x.shape[3:])
            else:
                x = self.time_conv(x, cache)  # [B, 2C, T, H, W]
                x = rearrange(x, "b (two c) t h w -> b c (t two) h w", two=2)
        t = x.shape[2]
        x = rearrange(x, "b c t h w -> (b t) c h w")
        x = self.resample(x)
        x = rearrange(x, "(b t) c h w -> b c t h w", t=t)
        if self.mode == "downsample3d" and cache is not None:
            prev = cache.slots[self.slot]
            cache.slots[self.slot] = x[:, :, -1:].clone()
            if prev is not None:  # later chunks: stride-2 time conv over [previous last frame, chunk]
                x = self.time_conv(torch.cat([prev.to(x.dtype), x], dim=2))
        return x


def _assign_slots(module: nn.Module) -> int:
    """Give every layer that keeps time context a cache slot, in forward order. Returns the slot count."""
    n = 0
    for m in module.modules():
        if isinstance(m, Resample) and m.mode == "downsample3d":
            m.slot, n = n, n + 1
        elif isinstance(m, CausalConv3d) and m.time_pad > 0:
            m.slot, n = n, n + 1
    return n


def _run(layers: nn.Sequential, x: torch.Tensor, cache: Optional[CausalCache]) -> torch.Tensor:
    for layer in layers:
        if isinstance(layer, (CausalConv3d, ResidualBlock, AttentionBlock, Resample)):
            x = layer(x, cache)
        else:
            x = layer(x)
    return x


class Encoder3d(nn.Module):
    """Video [B, 3, T, H, W] -> features [B, z_out, 1 + (T-1)/4, H/8, W/8] (chunk by chunk, with a cache)."""

    def __init__(
        self,
        dim: int,
        z_out: int,
        dim_mult: tuple[int, ...],
        num_res_blocks: int,
        temporal_downsample: tuple[bool, ...],
    ):
        super().__init__()
        dims = [dim * u for u in (1, *dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            for _ in range(num_res_blocks):
                blocks.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                blocks.append(Resample(out_dim, "downsample3d" if temporal_downsample[i] else "downsample2d"))
        self.downsamples = nn.Sequential(*blocks)
        self.middle = nn.Sequential(
            ResidualBlock(dims[-1], dims[-1]), AttentionBlock(dims[-1]), ResidualBlock(dims[-1], dims[-1])
        )
        self.head = nn.Sequential(
            RMSNorm(dims[-1]), nn.SiLU(inplace=True), CausalConv3d(dims[-1], z_out, 3, padding=1)
        )
        self.num_slots = _assign_slots(self)

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        x = self.conv1(x, cache)
        x = _run(self.downsamples, x, cache)
        x = _run(self.middle, x, cache)
        return _run(self.head, x, cache)


class Decoder3d(nn.Module):
    """Latents [B, z_dim, n, h, w] -> video [B, 3, 1 + 4(n-1), 8h, 8w] (run latent by latent with a cache)."""

    def __init__(
        self,
        dim: int,
        z_dim: int,
        dim_mult: tuple[int, ...],
        num_res_blocks: int,
        temporal_upsample: tuple[bool, ...],
    ):
        super().__init__()
        dims = [dim * u for u in (dim_mult[-1], *dim_mult[::-1])]
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(
            ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]), ResidualBlock(dims[0], dims[0])
        )
        blocks: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            if i > 0:  # the previous stage's upsample halved the channels
                in_dim = in_dim // 2
            for _ in range(num_res_blocks + 1):
                blocks.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                blocks.append(Resample(out_dim, "upsample3d" if temporal_upsample[i] else "upsample2d"))
        self.upsamples = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            RMSNorm(dims[-1]), nn.SiLU(inplace=True), CausalConv3d(dims[-1], 3, 3, padding=1)
        )
        self.num_slots = _assign_slots(self)

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        x = self.conv1(x, cache)
        x = _run(self.middle, x, cache)
        x = _run(self.upsamples, x, cache)
        return _run(self.head, x, cache)

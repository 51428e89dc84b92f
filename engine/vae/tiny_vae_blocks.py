"""Building blocks of the tiny causal VAE (TAEHV-style MemBlocks), with explicit streaming state.

Encoder and decoder also have a linear shortcut (8x8 pixel-unshuffle <-> 1x1 conv) added to the conv
path: it learns a patch-PCA-like code within a few hundred steps, so the conv path only has to add
detail; this matters on a 2-core CPU where a VAE gets a few thousand steps at most.

Every block maps a frame sequence `x: [B, T, C, H, W]` to another one and carries the state it needs
to continue the sequence later (`None` at the start of a video). A whole video in one call and the
same video in aligned chunks give the same result, which is what makes the decoder streamable.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def conv(c_in: int, c_out: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2)


def frames_apply(fn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-image module to every frame. x: [B, T, C, H, W]."""
    b = x.shape[0]
    y = fn(rearrange(x, "b t c h w -> (b t) c h w"))
    return rearrange(y, "(b t) c h w -> b t c h w", b=b)


class MemBlock(nn.Module):
    """Residual conv block that also sees the previous frame's input at the same layer (causal memory)."""

    def __init__(self, c: int):
        super().__init__()
        self.net = nn.Sequential(
            conv(2 * c, c), nn.ReLU(inplace=True), conv(c, c), nn.ReLU(inplace=True), conv(c, c)
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, past: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, T, C, H, W]; past: [B, C, H, W] (last frame before x) or None. Returns (y, new past)."""
        prev0 = torch.zeros_like(x[:, :1]) if past is None else past[:, None]
        prev = torch.cat([prev0, x[:, :-1]], dim=1)  # [B, T, C, H, W] frame t-1 for each t
        y = frames_apply(self.net, torch.cat([x, prev], dim=2)) + x
        return self.act(y), x[:, -1]


class TPool(nn.Module):
    """Merge `stride` consecutive frames into one (channels concatenated, 1x1 conv). T must divide."""

    def __init__(self, c: int, stride: int):
        super().__init__()
        self.stride = stride
        self.proj = nn.Conv2d(c * stride, c, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        if t % self.stride:
            raise ValueError(f"TPool needs frames in multiples of {self.stride}, got {x.shape=}")
        x = rearrange(x, "b (t s) c h w -> (b t) (s c) h w", s=self.stride)
        return rearrange(self.proj(x), "(b t) c h w -> b t c h w", b=b)


class TGrow(nn.Module):
    """Split every frame into `stride` frames (1x1 conv to stride x channels)."""

    def __init__(self, c: int, stride: int):
        super().__init__()
        self.stride = stride
        self.proj = nn.Conv2d(c, c * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = self.proj(rearrange(x, "b t c h w -> (b t) c h w"))
        return rearrange(y, "(b t) (s c) h w -> b (t s) c h w", b=b, s=self.stride)


class Stage(nn.Module):
    """A run of MemBlocks at one resolution; state is one past frame per block."""

    def __init__(self, c: int, depth: int):
        super().__init__()
        self.blocks = nn.ModuleList(MemBlock(c) for _ in range(depth))

    def forward(
        self, x: torch.Tensor, state: Optional[list[Optional[torch.Tensor]]]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        state = state or [None] * len(self.blocks)
        new_state = []
        for block, past in zip(self.blocks, state, strict=False):
            x, last = block(x, past)
            new_state.append(last)
        return x, new_state


def time_strides(temporal: int) -> tuple[int, int]:
    """How the first two resolutions split a temporal ratio of 1, 2 or 4 (x2 each at most)."""
    if temporal not in (1, 2, 4):
        raise ValueError(f"the tiny VAE's temporal ratio must be 1, 2 or 4, got {temporal}")
    return (min(temporal, 2), max(temporal // 2, 1))


def time_pool(c: int, stride: int) -> nn.Module:
    return TPool(c, stride) if stride > 1 else nn.Identity()


def time_grow(c: int, stride: int) -> nn.Module:
    return TGrow(c, stride) if stride > 1 else nn.Identity()


class Encoder(nn.Module):
    """[B, rn, 3, H, W] -> [B, n, z, H/8, W/8] for temporal ratio r; causal: latent j sees frames < r(j+1)."""

    def __init__(self, z_dim: int, widths: tuple[int, int, int], depth: int, temporal: int = 4):
        super().__init__()
        c0, c1, c2 = widths
        s0, s1 = time_strides(temporal)
        self.temporal = temporal
        self.stem = nn.Sequential(conv(3, c0), nn.ReLU(inplace=True))
        self.pool0, self.down0, self.stage0 = time_pool(c0, s0), conv(c0, c1, stride=2), Stage(c1, depth)
        self.pool1, self.down1, self.stage1 = time_pool(c1, s1), conv(c1, c2, stride=2), Stage(c2, depth)
        self.down2, self.stage2 = conv(c2, c2, stride=2), Stage(c2, depth)
        self.head = conv(c2, z_dim)
        self.shortcut = nn.Conv2d(3 * 64, z_dim, 1)  # linear path: 8x8 patches of each group's last frame

    def forward(self, x: torch.Tensor, state: Optional[list] = None) -> tuple[torch.Tensor, list]:
        state = state or [None, None, None]
        r = self.temporal
        last = F.pixel_unshuffle(x[:, r - 1 :: r].flatten(0, 1), 8)  # [B*n, 192, H/8, W/8]
        short = rearrange(self.shortcut(last), "(b n) c h w -> b n c h w", b=x.shape[0])
        x = frames_apply(self.stem, x)  # [B, rn, c0, H, W]
        x = frames_apply(self.down0, self.pool0(x))  # [B, rn/s0, c1, H/2, W/2]
        x, s0 = self.stage0(x, state[0])
        x = frames_apply(self.down1, self.pool1(x))  # [B, n, c2, H/4, W/4]
        x, s1 = self.stage1(x, state[1])
        x = frames_apply(self.down2, x)  # [B, n, c2, H/8, W/8]
        x, s2 = self.stage2(x, state[2])
        return frames_apply(self.head, x) + short, [s0, s1, s2]


class PoolEncoder(nn.Module):
    """A fixed encoder: each frame average-pooled by `pool`, folded onto the x8 grid (pixel_unshuffle by
    8 / pool), so [B, n, 3, H, W] -> [B, n, 3 (8 / pool)^2, H/8, W/8]. Temporal ratio 1 only. The
    latents are a coarse picture (consecutive E1M1 frames correlate 0.79 at 64x36 against 0.55 for the
    learned 16-channel latents), which the world model can predict; the decoder draws the detail."""

    def __init__(self, pool: int):
        super().__init__()
        if pool not in (1, 2, 4, 8):
            raise ValueError(f"vae.pool must be 1, 2, 4 or 8, got {pool}")
        self.pool = pool

    def forward(self, x: torch.Tensor, state: Optional[list] = None) -> tuple[torch.Tensor, list]:
        b = x.shape[0]
        y = x.flatten(0, 1).float()
        if self.pool > 1:
            y = F.avg_pool2d(y, self.pool)
        y = F.pixel_unshuffle(y, 8 // self.pool).to(x.dtype)
        return rearrange(y, "(b n) c h w -> b n c h w", b=b), state or []


@torch.no_grad()
def nearest_shortcut(decoder: "Decoder", pool: int) -> None:
    """Start a decoder's linear path as nearest upsampling of `PoolEncoder` latents (a blocky but right
    picture) and zero its conv path's output, so it learns only the detail. The memory blocks' weights on
    the previous frame start at zero too: trained on single frames (clip_frames 1) they see only zeros
    and get no gradient, so random values there would act only at play time, on real previous frames;
    at zero the streamed decode is the per-frame decode it was trained as."""
    s = 8 // pool  # latent sub-cells per side
    w = decoder.shortcut.weight  # [r * 192, C, 1, 1], r = 1
    w.zero_()
    for c in range(3):
        for y in range(8):
            for x in range(8):
                w[c * 64 + y * 8 + x, c * s * s + (y // pool) * s + x // pool] = 1.0
    decoder.shortcut.bias.zero_()
    nn.init.zeros_(decoder.head[1].weight)
    nn.init.zeros_(decoder.head[1].bias)
    for stage in (decoder.stage0, decoder.stage1, decoder.stage2):
        for block in stage.blocks:
            first = block.net[0].weight  # [c, 2c, 3, 3]: this frame's channels, then the previous frame's
            first[:, first.shape[0] :].zero_()


class Decoder(nn.Module):
    """[B, n, z, h, w] -> [B, rn, 3, 8h, 8w] for temporal ratio r (values roughly in [-1, 1]); causal."""

    def __init__(self, z_dim: int, widths: tuple[int, int, int], depth: int, temporal: int = 4):
        super().__init__()
        c0, c1, c2 = widths
        s1, s0 = time_strides(temporal)
        self.temporal = temporal
        self.stem = nn.Sequential(conv(z_dim, c0), nn.ReLU(inplace=True))
        self.stage0 = Stage(c0, depth)
        self.grow0, self.up0 = time_grow(c0, s0), conv(c0, c1)
        self.stage1 = Stage(c1, depth)
        self.grow1, self.up1 = time_grow(c1, s1), conv(c1, c2)
        self.stage2 = Stage(c2, depth)
        self.up2 = conv(c2, c2)
        self.head = nn.Sequential(nn.ReLU(inplace=True), conv(c2, 3))
        self.shortcut = nn.Conv2d(z_dim, temporal * 3 * 64, 1)  # linear path: r frames of 8x8 patches

    @staticmethod
    def _up(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
        """Nearest x2 upsample then conv, per frame. x: [B, T, C, H, W] -> [B, T, C', 2H, 2W]."""
        b = x.shape[0]
        y = F.interpolate(rearrange(x, "b t c h w -> (b t) c h w"), scale_factor=2.0, mode="nearest")
        return rearrange(layer(y), "(b t) c h w -> b t c h w", b=b)

    def forward(self, z: torch.Tensor, state: Optional[list] = None) -> tuple[torch.Tensor, list]:
        state = state or [None, None, None]
        x = frames_apply(self.stem, z)  # [B, n, c0, h, w]
        x, s0 = self.stage0(x, state[0])
        x = self._up(self.grow0(x), self.up0)  # [B, s0 n, c1, 2h, 2w]
        x, s1 = self.stage1(x, state[1])
        x = self._up(self.grow1(x), self.up1)  # [B, rn, c2, 4h, 4w]
        x, s2 = self.stage2(x, state[2])
        x = self._up(x, self.up2)  # [B, rn, c2, 8h, 8w]
        r = self.temporal
        short = self.shortcut(rearrange(z, "b n c h w -> (b n) c h w"))  # [B*n, r*192, h, w]
        short = F.pixel_shuffle(rearrange(short, "bn (s c) h w -> (bn s) c h w", s=r), 8)  # [B*n*r, 3, H, W]
        short = rearrange(short, "(b n s) c h w -> b (n s) c h w", b=z.shape[0], s=r)
        return frames_apply(self.head, x) + short, [s0, s1, s2]


def soft_clamp(x: torch.Tensor, limit: float = 3.0) -> torch.Tensor:
    """Smoothly bound latents to (-limit, limit) so the world model never sees outliers."""
    return torch.tanh(x / limit) * limit


def interleave_first(x: torch.Tensor, temporal: int = 4) -> torch.Tensor:
    """Pad a causal video [B, 1 + rk, C, H, W] to r(k + 1) frames by repeating frame 0 r - 1 times."""
    return torch.cat([x[:, :1].expand(-1, temporal - 1, -1, -1, -1), x], dim=1)

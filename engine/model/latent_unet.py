"""A DIAMOND-style world model in latent space: a small convolutional U-Net that denoises the next
frame's latent given the last K latents and the actions that followed them.

Shapes (C latent channels, h x w the latent grid, K = `UNetConfig.context_frames`, A = keyboard + mouse):
  x        [B, C, h, w]      noisy next latent, already scaled by EDM's c_in
  context  [B, K, C, h, w]   the previous latents (oldest first), divided by sigma_data, possibly noised
  c_noise  [B]               EDM's noise conditioning, log(sigma) / 4
  level    [B]               the context's noise sigma (GameNGen-style augmentation; 0 = clean)
  actions  [B, K, A]         the actions held on each context frame (actions[i] takes frame i to i + 1)
-> F [B, C, h, w], combined by `engine.edm.denoise` into the x0 estimate.

The context enters as input channels (frame stacking, as DIAMOND and GameNGen do); noise level,
context level and actions form one embedding that modulates every residual block (adaptive group
norm). Convolutions make the main effect of a camera move, a shift of the picture, a local operation,
which is what a small model on a CPU can learn quickly.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import UNetConfig


def fourier_features(x: torch.Tensor, dim: int) -> torch.Tensor:
    """[B] -> [B, dim] sinusoidal features of a scalar (noise levels of order 0.01 .. 10)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = x.float()[:, None] * freqs[None] * 100.0
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


def group_norm(channels: int, affine: bool = True) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4), channels, affine=affine)


class ResBlock(nn.Module):
    """GN -> SiLU -> conv -> adaptive GN (scale, shift from the embedding) -> SiLU -> conv, plus skip."""

    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = group_norm(cout, affine=False)
        self.modulation = nn.Linear(cond_dim, 2 * cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.modulation(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class LatentUNet(nn.Module):
    def __init__(self, cfg: UNetConfig, z_dim: int):
        super().__init__()
        self.cfg, self.z_dim = cfg, z_dim
        k, a, ch = cfg.context_frames, cfg.keyboard_dim + cfg.mouse_dim, cfg.channels
        self.embed = nn.Sequential(
            nn.Linear(2 * 64 + k * a, cfg.cond_dim), nn.SiLU(), nn.Linear(cfg.cond_dim, cfg.cond_dim)
        )
        self.stem = nn.Conv2d(z_dim * (k + 1), ch[0], 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c, skips = ch[0], []
        for i, width in enumerate(ch):
            blocks = [ResBlock(c if j == 0 else width, width, cfg.cond_dim) for j in range(cfg.res_blocks)]
            self.down.append(nn.ModuleList(blocks))
            c = width
            skips.append(c)
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.middle = nn.ModuleList([ResBlock(c, c, cfg.cond_dim) for _ in range(2)])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(ch))):
            width = ch[i]
            blocks = [
                ResBlock((c + skips[i]) if j == 0 else width, width, cfg.cond_dim)
                for j in range(cfg.res_blocks)
            ]
            self.up.append(nn.ModuleList(blocks))
            c = width
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
        self.head = nn.Sequential(group_norm(c), nn.SiLU(), nn.Conv2d(c, z_dim, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        c_noise: torch.Tensor,
        level: torch.Tensor,
        actions: torch.Tensor,
    ) -> torch.Tensor:
        """See the module docstring for shapes."""
        cond = self.condition(c_noise, level, actions)
        return self.trunk(self.stem_input(x, context), lambda block, h: block(h, cond))

    def condition(self, c_noise: torch.Tensor, level: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The embedding [B, cond_dim] of noise level, context level and actions."""
        emb = torch.cat(
            [fourier_features(c_noise, 64), fourier_features(level, 64), actions.flatten(1).float()], 1
        )
        return self.embed(emb.to(self.stem.weight.dtype))

    def stem_input(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The stem's output for the noisy latent and the context stacked as channels."""
        return self.stem(torch.cat([x, context.flatten(1, 2)], dim=1).to(self.stem.weight.dtype))

    def trunk(
        self, h: torch.Tensor, run_block: Callable[[ResBlock, torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Down, middle and up paths and the head from the stem's output; `run_block(block, h)` applies
        each residual block in pass order (the compiled frame passes precomputed modulations)."""
        skips = []
        for i, blocks in enumerate(self.down):
            for block in blocks:
                h = run_block(block, h)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        for block in self.middle:
            h = run_block(block, h)
        for j, blocks in enumerate(self.up):
            skip = skips.pop()
            if h.shape[-2:] != skip.shape[-2:]:
                h = self.upsample[j - 1](F.interpolate(h, size=skip.shape[-2:], mode="nearest"))
            h = torch.cat([h, skip], dim=1)
            for block in blocks:
                h = run_block(block, h)
        return self.head(h)

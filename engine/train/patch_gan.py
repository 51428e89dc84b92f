"""A small patch discriminator and hinge losses for sharpening the tiny VAE's decoder.

An L1/L2 decoder outputs the mean of every detail the 16-channel code does not pin down, so textures
come out soft (on E1M1 the round trip keeps ~47% of the real frames' image gradient). A patch
discriminator that judges ~40-pixel windows as real or decoded pushes the decoder to draw plausible
texture instead (the recipe of VQGAN / the Stable Diffusion VAE, here without a perceptual network).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """[N, 3, H, W] in [-1, 1] -> logits [N, 1, H/8, W/8], one per overlapping patch."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for i, width in enumerate(channels):
            layers.append(nn.Conv2d(c, width, 4, stride=2, padding=1))
            if i > 0:
                layers.append(nn.GroupNorm(8, width))
            layers.append(nn.LeakyReLU(0.2))
            c = width
        layers.append(nn.Conv2d(c, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss: real patches above +1, decoded ones below -1."""
    return F.relu(1 - real_logits.float()).mean() + F.relu(1 + fake_logits.float()).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The decoder's side: raise the discriminator's score of its patches."""
    return -fake_logits.float().mean()

"""Sub-latent-pixel shift equivariance of a VAE encoder: E(shift_s x) ~ shift_{s/8} E(x).

A camera turn moves a Doom frame by ~4 px per video frame, half a latent pixel of an x8 VAE. A
patch-like encoder aliases such shifts: for the shipped doom VAE, the latent of a frame moved by 4 px
differs from the bilinearly shifted latent by 0.12 of the latents' spatial variance (exact at 8 px),
in a way that depends on a sub-pixel phase the world model cannot see, so its MSE-optimal
prediction under motion is a blur. This term (as EQ-VAE,
Kouzelis et al. 2025, with translations) asks the encoder for latents that move smoothly with the
image: the latent of a crop shifted by (dy, dx) pixels must equal the latent of the unshifted crop
resampled at (dy/8, dx/8) latent pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.vae.tiny_vae import TinyVAE

SCALE = TinyVAE.spatial  # pixels per latent pixel


def shifted_pair(
    video: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split crops 8 px larger than wanted into (crop, crop shifted by (dy, dx) in [0, 8] px, offsets).

    video: [B, T, 3, H + 8, W + 8]. Returns x [B, T, 3, H, W], x_shift of the same shape with
    x_shift[..., i, j] = video[..., dy + i, dx + j], and offsets [B, 2] (dy, dx) in pixels.
    """
    h, w = video.shape[-2] - SCALE, video.shape[-1] - SCALE
    offsets = torch.randint(0, SCALE + 1, (video.shape[0], 2), generator=gen)
    cut = [v[..., dy : dy + h, dx : dx + w] for v, (dy, dx) in zip(video, offsets.tolist(), strict=True)]
    shifted = torch.stack(cut)
    return video[..., :h, :w], shifted, offsets.to(video.device)


def shift_latents(z: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Resample latents [B, n, C, h, w] at (i + dy/8, j + dx/8) (bilinear; borders replicate)."""
    b, n, c, h, w = z.shape
    ys = torch.arange(h, device=z.device, dtype=torch.float32)[None] + offsets[:, :1].float() / SCALE
    xs = torch.arange(w, device=z.device, dtype=torch.float32)[None] + offsets[:, 1:].float() / SCALE
    gy = (ys / max(h - 1, 1) * 2 - 1)[:, :, None].expand(b, h, w)
    gx = (xs / max(w - 1, 1) * 2 - 1)[:, None, :].expand(b, h, w)
    grid = torch.stack([gx, gy], -1).repeat_interleave(n, 0)  # [B n, h, w, 2]
    out = F.grid_sample(
        z.flatten(0, 1).float(), grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return out.view(b, n, c, h, w)


def equivariance_loss(z: torch.Tensor, z_shift: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Mean squared gap between E(shifted crop) and the shifted E(crop), in normalised latent units.

    Not divided by the batch's own spatial variance: a dark, flat crop has almost none, and the
    ratio's gradient then explodes (a run diverged at step 175 that way). The trainer's running
    latent statistics keep the normalised latents at unit variance instead.
    Away from the borders: the last latent row and column have no neighbour to interpolate from, and
    the outermost ones see the encoder's padding, so one latent pixel is left out on the top and left
    and two on the bottom and right.
    """
    return (z_shift.float() - shift_latents(z, offsets))[..., 1:-2, 1:-2].pow(2).mean()


def spatial_spread(z: torch.Tensor) -> torch.Tensor:
    """Mean within-channel spatial variance of latents [..., C, h, w], over the same interior."""
    return z.float()[..., 1:-2, 1:-2].var(dim=(-2, -1)).mean()


@torch.no_grad()
def equivariance_error(encode, frames: torch.Tensor, shift: int = 4) -> float:
    """`equivariance_loss` of encode(frames moved by `shift` px horizontally) relative to the latents'
    spatial variance: 0 means the latents move exactly with the image.

    encode: [B, 3, H, W] -> latents [B, C, h, w] (normalised). frames: [B, 3, H, W], W a multiple of 8;
    crops W - 8 wide are compared. The shipped doom VAE scores 0.12 at 4 px (8 doom1-eval frames).
    """
    w = frames.shape[-1] - SCALE
    z = encode(frames[..., :w])[:, None]
    z_shift = encode(frames[..., shift : shift + w])[:, None]
    offsets = torch.tensor([[0, shift]], device=frames.device).expand(len(frames), 2)
    return float(equivariance_loss(z, z_shift, offsets) / spatial_spread(z))

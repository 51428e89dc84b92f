"""Wan 2.1 causal video VAE: x8 spatial, x4 temporal, 16 latent channels (the VideoVAE protocol).

Layout at this boundary (engine/vae/protocol.py): pixels [B, T, 3, H, W] in [-1, 1]; latents
[B, n, C, h, w] normalised with the official per-channel mean/std, T = 1 + 4(n - 1), h = H / 8.

Streaming use (the world model emits 3 latents per block; the first latent gives 1 frame, later ones 4):

    vae = load_wan_vae(cfg, "Wan2.1_VAE.pth").to(device, dtype)
    cond = vae.condition_stream(image)          # image [1, 3, H, W]
    cache = vae.new_decode_cache()
    for block in blocks:
        image_latents = cond.next(3)            # [1, 3, 16, h, w], equal to encoding [image, gray...] at once
        z = denoise(..., image_latents)         # [1, 3, 16, h, w]
        video, cache = vae.decode_stream(z, cache)   # [1, 9 or 12, 3, H, W]

Inference only: the public methods run under torch.no_grad.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
from einops import rearrange

from engine.config import VAEConfig
from engine.vae.wan_blocks import CausalCache, CausalConv3d, Decoder3d, Encoder3d
from engine.vae.weights import check_keys, read_state_dict

# Official latent statistics of Wan 2.1 (z = (mu - MEAN) / STD).
# fmt: off
LATENT_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
               0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
LATENT_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
              3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)
# fmt: on


def _layout(x: torch.Tensor) -> torch.Tensor:
    """Channels-last on the CPU: oneDNN's 3-D convolutions run ~3x faster in bf16 on NDHWC activations."""
    return x.contiguous(memory_format=torch.channels_last_3d) if x.device.type == "cpu" else x


@dataclass
class WanDecodeCache:
    """Streaming-decoder state: per-layer time context and how many latents were decoded so far."""

    causal: CausalCache
    latents_seen: int = 0


class WanVAE(nn.Module):
    """Encoder + decoder named as in `Wan2.1_VAE.pth` (encoder.*, conv1.*, conv2.*, decoder.*)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        levels = len(cfg.dim_mult) - 1
        if levels < 2:
            raise ValueError(f"VAE dim_mult {cfg.dim_mult} needs at least 3 entries (two temporal x2 stages)")
        temporal_down = tuple(i >= levels - 2 for i in range(levels))  # (False, True, True) for Wan 2.1
        self.z_dim = cfg.z_dim
        self.spatial = 2**levels
        self.temporal = 2 ** sum(temporal_down)
        self.latents_per_pass = 1  # latents per decoder pass; 1 is the official (lowest-memory) schedule
        self.encoder = Encoder3d(cfg.base_dim, cfg.z_dim * 2, cfg.dim_mult, cfg.num_res_blocks, temporal_down)
        self.conv1 = CausalConv3d(cfg.z_dim * 2, cfg.z_dim * 2, 1)
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder3d(
            cfg.base_dim, cfg.z_dim, cfg.dim_mult, cfg.num_res_blocks, temporal_down[::-1]
        )

    # ---- latent normalisation (fp32) ----
    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.z_dim != len(LATENT_MEAN):  # tiny test models: identity statistics
            return torch.zeros(self.z_dim, device=like.device), torch.ones(self.z_dim, device=like.device)
        mean = torch.tensor(LATENT_MEAN, device=like.device)
        std = torch.tensor(LATENT_STD, device=like.device)
        return mean, std

    def normalize(self, mu: torch.Tensor) -> torch.Tensor:
        """Raw encoder mean [B, n, C, h, w] -> model latents (fp32)."""
        mean, std = self._stats(mu)
        return (mu.float() - mean[:, None, None]) * (1.0 / std[:, None, None])

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Model latents [B, n, C, h, w] -> raw decoder input (fp32)."""
        mean, std = self._stats(z)
        return z.float() / (1.0 / std[:, None, None]) + mean[:, None, None]

    @property
    def _dtype(self) -> torch.dtype:
        return self.conv2.weight.dtype

    # ---- encoder ----
    def _encode_chunk(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        """One causal chunk (1 frame first, then 4 frames each). x: [B, 3, t, H, W] -> z [B, 1, C, h, w]."""
        feats = self.encoder(_layout(x.to(self._dtype)), cache)  # [B, 2C, 1, h, w]
        mu = self.conv1(feats)[:, : self.z_dim]  # only the mean is used
        return self.normalize(rearrange(mu, "b c t h w -> b t c h w"))

    def _check_pixels(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[2] != 3 or (video.shape[1] - 1) % self.temporal:
            raise ValueError(f"video must be [B, 1 + {self.temporal}k, 3, H, W], got {tuple(video.shape)}")
        if video.shape[3] % self.spatial or video.shape[4] % self.spatial:
            raise ValueError(
                f"video height and width must be multiples of {self.spatial}, got {tuple(video.shape)}"
            )

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 1 + 4k, 3, H, W] in [-1, 1] -> latents [B, 1 + k, C, H/8, W/8] fp32 (official chunks)."""
        self._check_pixels(video)
        x = rearrange(video, "b t c h w -> b c t h w")
        cache = CausalCache.empty(self.encoder.num_slots)
        starts = [0] + list(range(1, x.shape[2], self.temporal))
        ends = [1] + [s + self.temporal for s in starts[1:]]
        return torch.cat(
            [self._encode_chunk(x[:, :, s:e], cache) for s, e in zip(starts, ends, strict=True)], dim=1
        )

    def condition_stream(self, image: torch.Tensor) -> "WanConditionStream":
        """Latents of [image, gray, gray, ...] block by block. image: [B, 3, H, W] in [-1, 1]."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be [B, 3, H, W], got {tuple(image.shape)}")
        self._check_pixels(image[:, None])
        return WanConditionStream(self, image)

    # ---- decoder ----
    def new_decode_cache(self) -> WanDecodeCache:
        return WanDecodeCache(causal=CausalCache.empty(self.decoder.num_slots))

    @torch.no_grad()
    def decode_stream(self, z: torch.Tensor, cache: WanDecodeCache) -> tuple[torch.Tensor, WanDecodeCache]:
        """z [B, n, C, h, w] -> (video [B, T', 3, 8h, 8w] fp32 in [-1, 1], the advanced cache).

        T' = 4n, or 1 + 4(n - 1) when these are the session's first latents. The cache passed in is
        left unchanged, so a caller may decode again from it.
        """
        if z.ndim != 5 or z.shape[2] != self.z_dim or z.shape[1] == 0:
            raise ValueError(f"latents must be [B, n, {self.z_dim}, h, w], got {tuple(z.shape)}")
        cache = WanDecodeCache(causal=cache.causal.copy(), latents_seen=cache.latents_seen)
        x = self.conv2(_layout(rearrange(self.denormalize(z).to(self._dtype), "b t c h w -> b c t h w")))
        outs, i = [], 0
        while i < x.shape[2]:
            step = 1 if cache.latents_seen == 0 else self.latents_per_pass  # the first latent goes alone
            outs.append(self.decoder(x[:, :, i : i + step], cache.causal))  # [B, 3, t, H, W]
            cache.latents_seen += min(step, x.shape[2] - i)
            i += step
        video = torch.cat(outs, dim=2).float().clamp_(-1.0, 1.0)
        return rearrange(video, "b c t h w -> b t c h w"), cache

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """A whole latent sequence [B, n, C, h, w] -> video [B, 1 + 4(n - 1), 3, 8h, 8w] in [-1, 1]."""
        return self.decode_stream(z, self.new_decode_cache())[0]


class WanConditionStream:
    """Latents of the conditioning video [image, 4(N-1) gray frames], encoded chunk by chunk on demand.

    Cost and memory per call depend only on the latents asked for, not on the session length. The gray
    tail reaches a fixed point: once a gray chunk leaves every cache slot bit-identical to the previous
    chunk (after ~30 latents for Wan 2.1), every later latent equals the last one, so it is returned
    without running the encoder, and the encoder cache is freed.
    """

    def __init__(self, vae: WanVAE, image: torch.Tensor):
        self.vae = vae
        self.image = image  # [B, 3, H, W]
        self.cache = CausalCache.empty(vae.encoder.num_slots)
        self.emitted = 0
        self.steady: Optional[torch.Tensor] = None  # [B, 1, C, h, w] once the gray tail is constant

    @torch.no_grad()
    def next(self, num_latents: int) -> torch.Tensor:
        """The next `num_latents` latent frames: [B, n, C, h, w] (fp32)."""
        if num_latents < 1:
            raise ValueError(f"num_latents must be at least 1, got {num_latents}")
        return torch.cat([self._next_latent() for _ in range(num_latents)], dim=1)

    def _next_latent(self) -> torch.Tensor:
        if self.steady is not None:
            self.emitted += 1
            return self.steady.clone()
        if self.emitted == 0:
            chunk = self.image[:, :, None]  # [B, 3, 1, H, W]
        else:
            b, c, h, w = self.image.shape
            chunk = self.image.new_zeros(b, c, self.vae.temporal, h, w)  # gray = 0 in [-1, 1]
        before = list(self.cache.slots)
        z = self.vae._encode_chunk(chunk, self.cache)
        if (
            self.emitted > 0
            and z.device.type != "meta"
            and all(
                a is not None and b is not None and torch.equal(a, b)
                for a, b in zip(before, self.cache.slots, strict=True)
            )
        ):
            self.steady = z
            self.cache = CausalCache.empty(0)  # not needed any more: free the encoder's time context
        self.emitted += 1
        return z


def load_wan_vae(
    cfg: VAEConfig, path: str, device: str | torch.device = "cpu", dtype: Optional[torch.dtype] = None
) -> WanVAE:
    """WanVAE with weights from the official `Wan2.1_VAE.pth` (a raw state dict) or a .safetensors file."""
    expected = (
        f"a Wan 2.1 VAE (encoder.*, conv1.*, conv2.*, decoder.* keys; base_dim {cfg.base_dim}, "
        f"z_dim {cfg.z_dim}) such as Wan2.1_VAE.pth"
    )
    sd = read_state_dict(path, expected)
    with torch.device("meta"):
        model = WanVAE(cfg)
    check_keys(path, expected, sd, model.state_dict())
    model.load_state_dict(sd, assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)

"""Tiny causal video VAE (TAEHV-style): x8 spatial, x4 (or x1, x2) temporal, 16 latent channels, streaming.

Implements `engine.vae.protocol.VideoVAE`. Layout: pixels [B, T, 3, H, W] in [-1, 1], latents
[B, n, C, h, w] normalised by per-channel statistics stored in the checkpoint.

Causality follows the Wan VAE: latent 0 encodes frame 0 alone, latent j >= 1 encodes frames
4j-3 .. 4j. Internally the video is left-padded with three copies of frame 0 so every latent covers
four frames; the decoder emits four frames per latent and drops the first three of a session.
`vae.temporal` r sets the ratio: r = 1 gives one latent per video frame (no padding, nothing dropped,
no frames blended), which is what the E1M1 default uses; the text below says 4 for the default r.
Encoder and decoder carry one past frame per MemBlock, so decoding latents one block at a time
equals decoding them all at once (see tests/test_tiny_vae.py).

The widths come from `VAEConfig`: decoder (base * m2, base * m1, base * m0) with `num_res_blocks`
MemBlocks per resolution; the encoder, which runs once per training clip and once per session
image, is half as wide with one MemBlock per resolution. `base_dim: 32, dim_mult: [1, 2, 4]` is ~1.7M decoder
parameters and decodes 12 frames at 256x144 in ~80 ms on 2 CPU cores (bf16, channels_last).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from engine.config import VAEConfig, resolve_path
from engine.vae.tiny_vae_blocks import Decoder, Encoder, PoolEncoder, interleave_first, soft_clamp

SAFETENSORS_KEY = "worldplayer_vae"


def tiny_widths(cfg: VAEConfig) -> tuple[int, int, int]:
    if len(cfg.dim_mult) < 3:
        raise ValueError(f"vae.dim_mult needs 3 entries for the tiny VAE, got {list(cfg.dim_mult)}")
    m = cfg.dim_mult[:3]
    return (cfg.base_dim * m[0], cfg.base_dim * m[1], cfg.base_dim * m[2])


@dataclass
class TinyDecodeCache:
    """Streaming-decoder state: one past frame per MemBlock per stage, and whether latent 0 was seen."""

    state: Optional[list] = None
    started: bool = False


@dataclass
class TinyConditionStream:
    """Block-by-block encode of [image, gray, gray, ...] (see `TinyVAE.condition_stream`)."""

    vae: "TinyVAE"
    image: torch.Tensor  # [B, 3, H, W]
    state: Optional[list] = None
    produced: int = 0
    _gray: Optional[torch.Tensor] = field(default=None, repr=False)

    @torch.no_grad()
    def next(self, num_latents: int) -> torch.Tensor:
        """The next `num_latents` latent frames: [B, n, C, h, w]."""
        out = []
        for _ in range(num_latents):
            if self.produced == 0:
                r = self.vae.temporal
                frames = self.image[:, None].expand(-1, r, -1, -1, -1)  # [B, r, 3, H, W] padded frame 0
            else:
                if self._gray is None:
                    r = self.vae.temporal
                    self._gray = torch.zeros_like(self.image)[:, None].expand(-1, r, -1, -1, -1)
                frames = self._gray
            z, self.state = self.vae.encode_frames(frames, self.state)
            out.append(z)
            self.produced += 1
        return torch.cat(out, dim=1)


def check_pool(cfg: VAEConfig) -> None:
    """A pooled encoder's config must agree with itself: temporal 1, z_dim = 3 (8 / pool)^2, RGB mean."""
    need = 3 * (8 // cfg.pool) ** 2 if cfg.pool in (1, 2, 4, 8) else None
    if cfg.temporal != 1 or cfg.z_dim != need or len(cfg.pool_mean) != 3 or cfg.pool_std <= 0:
        raise ValueError(
            f"vae.encoder 'pool' needs temporal 1, z_dim 3 (8 / pool)^2 ({need} for pool {cfg.pool}), "
            f"three pool_mean values and pool_std > 0; got temporal {cfg.temporal}, z_dim {cfg.z_dim}"
        )


class TinyVAE(nn.Module):
    """Tiny causal VAE; see the module docstring. `cfg.kind` must be "tiny"."""

    spatial = 8

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        if cfg.kind != "tiny":
            raise ValueError(f"TinyVAE needs vae.kind 'tiny', got {cfg.kind!r}")
        self.cfg = cfg
        self.z_dim = cfg.z_dim
        self.temporal = r = cfg.temporal
        widths = tiny_widths(cfg)
        if cfg.encoder == "pool":
            check_pool(cfg)
            self.encoder = PoolEncoder(cfg.pool)
        elif cfg.encoder == "learned":
            self.encoder = Encoder(cfg.z_dim, tuple(w // 2 for w in widths), 1, r)  # lighter: once per clip
        else:
            raise ValueError(f"vae.encoder must be 'learned' or 'pool', got {cfg.encoder!r}")
        self.decoder = Decoder(cfg.z_dim, tuple(reversed(widths)), cfg.num_res_blocks, r)
        self.register_buffer("latent_mean", torch.zeros(cfg.z_dim))
        self.register_buffer("latent_std", torch.ones(cfg.z_dim))
        if cfg.encoder == "pool":  # fixed statistics: every pooled cell of a colour shares them
            self.latent_mean.copy_(torch.tensor(cfg.pool_mean).float().repeat_interleave(cfg.z_dim // 3))
            self.latent_std.fill_(cfg.pool_std)
        self.to(memory_format=torch.channels_last)

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.stem[0].weight.dtype

    def _check_pixels(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[2] != 3 or video.shape[3] % 8 or video.shape[4] % 8:
            raise ValueError(
                f"tiny VAE expects video [B, T, 3, H, W] with H, W multiples of 8, got {video.shape=}"
            )

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std[:, None, None] + self.latent_mean[:, None, None]

    def encode_frames(self, frames: torch.Tensor, state: Optional[list]) -> tuple[torch.Tensor, list]:
        """Raw causal encode of rn already-padded frames [B, rn, 3, H, W] -> normalised [B, n, C, h, w]."""
        z, state = self.encoder(frames.to(self.dtype), state)
        return self.normalize(soft_clamp(z.float())), state

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 1 + rk, 3, H, W] in [-1, 1] -> normalised latents [B, 1 + k, C, h, w] (float32)."""
        self._check_pixels(video)
        r = self.temporal
        if (video.shape[1] - 1) % r:
            raise ValueError(f"tiny VAE encodes 1 + {r}k frames, got {video.shape[1]} ({video.shape=})")
        z, _ = self.encode_frames(interleave_first(video, r), None)
        return z

    def decode_frames(self, z: torch.Tensor, state: Optional[list]) -> tuple[torch.Tensor, list]:
        """Normalised latents [B, n, C, h, w] -> (rn frames [B, rn, 3, H, W] float32, new state)."""
        x, state = self.decoder(self.denormalize(z.float()).to(self.dtype), state)
        return x.float(), state

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, 1 + k, C, h, w] -> video [B, 1 + rk, 3, H, W] in [-1, 1]."""
        x, _ = self.decode_frames(z, None)
        return x[:, self.temporal - 1 :].clamp(-1, 1)

    def condition_stream(self, image: torch.Tensor) -> TinyConditionStream:
        """Latents of [image, r(N-1) gray frames], block by block. image: [B, 3, H, W] in [-1, 1]."""
        self._check_pixels(image[:, None])
        return TinyConditionStream(self, image.to(self.dtype))

    def new_decode_cache(self) -> TinyDecodeCache:
        return TinyDecodeCache()

    @torch.no_grad()
    def decode_stream(self, z: torch.Tensor, cache: TinyDecodeCache) -> tuple[torch.Tensor, TinyDecodeCache]:
        """Decode the next latents. z [B, n, C, h, w] -> (video [B, T', 3, H, W] in [-1, 1], cache).

        The first latent of a session gives 1 frame, every later latent r.
        """
        x, state = self.decode_frames(z, cache.state)
        if not cache.started:
            x = x[:, self.temporal - 1 :]
        return x.clamp_(-1, 1), TinyDecodeCache(state=state, started=True)


def vae_config_json(cfg: VAEConfig) -> str:
    from dataclasses import asdict

    return json.dumps(asdict(cfg))


def save_tiny_vae(vae: TinyVAE, path: str) -> None:
    """Write weights (float32 or bf16 as they are) and the VAE config to a safetensors file."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in vae.state_dict().items()}
    save_file(state, path, metadata={SAFETENSORS_KEY: vae_config_json(vae.cfg)})


def read_tiny_vae_config(path: str) -> Optional[dict]:
    """The VAE config stored in a tiny-VAE checkpoint (None if the file has none)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta[SAFETENSORS_KEY]) if SAFETENSORS_KEY in meta else None


def load_tiny_vae(
    cfg: VAEConfig, path: Optional[str] = None, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> TinyVAE:
    """Build a TinyVAE with weights from `path` (default `cfg.checkpoint`); ValueError if mismatched."""
    from engine.vae.weights import read_state_dict

    vae = TinyVAE(cfg)
    path = resolve_path(path or cfg.checkpoint)
    if path:
        expected = "a tiny-VAE .safetensors file (vae.kind: tiny)"
        if not path.endswith(".safetensors"):
            raise ValueError(f"{path}: not a .safetensors file; expected {expected}")
        state = read_state_dict(path, expected)  # one-line WeightsFileError on any unreadable file
        stored = read_tiny_vae_config(path)
        mine = json.loads(vae_config_json(cfg))
        old_defaults = {"temporal": 4, "encoder": "learned", "pool": 4}  # files from before the key
        for key in ("z_dim", "base_dim", "dim_mult", "num_res_blocks", "temporal", "encoder", "pool"):
            if stored is not None and stored.get(key, old_defaults.get(key)) != mine[key]:
                raise ValueError(
                    f"tiny VAE checkpoint {path} has vae.{key}={stored.get(key)}, preset says {mine[key]}"
                )
        missing, unexpected = vae.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"tiny VAE checkpoint {path}: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
    vae = vae.to(device=device, dtype=dtype).eval()
    vae.latent_mean.data = vae.latent_mean.float()
    vae.latent_std.data = vae.latent_std.float()
    return vae.to(memory_format=torch.channels_last)

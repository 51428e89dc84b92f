"""Build the VAE and image encoder a preset names (lazy imports keep unused backends out of memory)."""

from __future__ import annotations

from typing import Optional

import torch

from engine.config import ImageEncoderConfig, VAEConfig, resolve_path
from engine.vae.protocol import VideoVAE


def build_vae(cfg: VAEConfig, checkpoint: Optional[str] = None) -> VideoVAE:
    """The preset's VAE, with weights from `checkpoint` or `cfg.checkpoint` (random weights if neither)."""
    path = resolve_path(checkpoint or cfg.checkpoint)
    if cfg.kind == "wan":
        from engine.vae.wan_vae import WanVAE, load_wan_vae

        return load_wan_vae(cfg, path) if path else WanVAE(cfg)
    if cfg.kind == "tiny":
        from engine.vae.tiny_vae import TinyVAE, load_tiny_vae

        return load_tiny_vae(cfg, path) if path else TinyVAE(cfg)
    raise ValueError(f"unknown VAE kind {cfg.kind!r}; expected 'wan' or 'tiny'")


def build_image_encoder(
    cfg: ImageEncoderConfig, checkpoint: Optional[str] = None
) -> Optional[torch.nn.Module]:
    """The preset's CLIP vision tower, or None for presets without an image-context branch."""
    if cfg.kind == "none":
        return None
    if cfg.kind == "clip":
        from engine.vae.clip import ClipVisionEncoder, load_clip_vision

        path = resolve_path(checkpoint or cfg.checkpoint)
        return load_clip_vision(cfg, path) if path else ClipVisionEncoder(cfg)
    raise ValueError(f"unknown image encoder kind {cfg.kind!r}; expected 'clip' or 'none'")

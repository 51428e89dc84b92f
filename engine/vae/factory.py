"""Build the VAE a preset names (lazy imports keep unused backends out of memory)."""

from __future__ import annotations

from engine.config import VAEConfig
from engine.vae.protocol import VideoVAE


def build_vae(cfg: VAEConfig) -> VideoVAE:
    """The preset's VAE with the weights in `cfg.checkpoint` (resolved by `load_preset`; random if empty)."""
    path = cfg.checkpoint
    if cfg.kind == "wan":
        from engine.vae.wan_vae import WanVAE, load_wan_vae

        return load_wan_vae(cfg, path) if path else WanVAE(cfg)
    if cfg.kind == "tiny":
        from engine.vae.tiny_vae import TinyVAE, load_tiny_vae

        return load_tiny_vae(cfg, path) if path else TinyVAE(cfg)
    raise ValueError(f"unknown VAE kind {cfg.kind!r}; expected 'wan' or 'tiny'")

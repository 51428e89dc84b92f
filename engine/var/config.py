"""Frozen configs of the VAR tokenizer (multi-scale residual VQ-VAE) and the VAR transformer."""

from __future__ import annotations

from dataclasses import dataclass

from engine.var.scales import DOOM_SCALES, Scales


@dataclass(frozen=True)
class TokenizerConfig:
    """Multi-scale residual VQ-VAE: pixels [B, 3, H, W] in [-1, 1] <-> latent f_hat [B, cvae, h, w]."""

    height: int = 144
    width: int = 256
    scales: Scales = DOOM_SCALES  # last scale = latent size (height / 16, width / 16)
    vocab: int = 512
    cvae: int = 16
    ch: int = 64  # channels after the 4x4 pixel-unshuffle stem
    ch_mult: tuple[int, ...] = (1, 2, 2)  # one 2x downsample between levels: 4 * 2**(len - 1) = 16
    num_res: int = 1  # residual blocks per level
    num_phi: int = 4  # shared refinement convs
    quant_resi: float = 0.5  # phi(h) = (1 - r) * h + r * conv3x3(h)
    beta: float = 0.25  # commitment

    @property
    def downsample(self) -> int:
        return 4 * 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class VARConfig:
    """Class-conditional next-scale transformer. heads = width / head_dim."""

    scales: Scales = DOOM_SCALES
    vocab: int = 512
    cvae: int = 16
    num_classes: int = 20  # Freedoom 2 MAP01..MAP20; index num_classes = unconditional
    depth: int = 8
    width: int = 256
    head_dim: int = 32
    mlp_ratio: float = 4.0
    attn_l2_norm: bool = True
    cond_drop: float = 0.1  # label dropout in training mode only
    norm_eps: float = 1e-6
    init_adaln_gamma: float = 1e-3
    init_head: float = 0.02

    @property
    def heads(self) -> int:
        if self.width % self.head_dim:
            raise ValueError(f"VARConfig width {self.width} is not a multiple of head_dim {self.head_dim}")
        return self.width // self.head_dim


VAR_PRESETS: dict[str, VARConfig] = {
    "target": VARConfig(depth=6, width=224),  # 5.6M parameters
    "draft": VARConfig(depth=2, width=96),  # 0.45M parameters
    "tiny": VARConfig(depth=2, width=64, vocab=64, cvae=8),
}

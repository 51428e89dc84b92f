"""Tiny re-randomised VAR models for tests and docs (fp64 by default, CPU, seconds)."""

from __future__ import annotations

import torch

from engine.var.config import VARConfig
from engine.var.quantizer import MultiScaleQuantizer
from engine.var.scales import Scales
from engine.var.transformer import VAR, randomize_weights

TINY_SCALES: Scales = ((1, 1), (2, 2), (2, 3), (3, 4))


def tiny_trio(
    scales: Scales = TINY_SCALES,
    vocab: int = 16,
    cvae: int = 4,
    num_classes: int = 3,
    std: float = 0.3,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> tuple[VAR, VAR, MultiScaleQuantizer]:
    """(target depth 2 width 32, draft depth 1 width 16, quantizer), all weights ~ N(0, std) except the
    quantizer's (N(0, 0.5)), in eval mode with cond_drop 0."""
    kw = dict(scales=scales, vocab=vocab, cvae=cvae, num_classes=num_classes, head_dim=8, cond_drop=0.0)
    target = randomize_weights(VAR(VARConfig(depth=2, width=32, **kw)), std, seed + 1).to(dtype).eval()
    draft = randomize_weights(VAR(VARConfig(depth=1, width=16, **kw)), std, seed + 2).to(dtype).eval()
    quant = randomize_weights(MultiScaleQuantizer(vocab, cvae, scales, num_phi=2), 0.5, seed).to(dtype).eval()
    return target, draft, quant

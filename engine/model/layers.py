"""Small layers of CausalWanModel with the precision rules of the project.

Norms, modulation and the time embedding run in fp32; linear layers run in the run dtype `dt` (the
parameter dtype, or the autocast dtype). The residual stream is fp32.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}  # run dtypes by name


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """A run dtype from its name in `DTYPES` (or a torch.dtype, returned as is); ValueError otherwise."""
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of: {', '.join(DTYPES)}")
    return DTYPES[name]


def layer_norm(x: Tensor, eps: float, weight=None, bias=None) -> Tensor:
    """LayerNorm over the last axis in fp32 (affine when weight/bias are given). Returns fp32."""
    w = None if weight is None else weight.float()
    b = None if bias is None else bias.float()
    return F.layer_norm(x.float(), (x.shape[-1],), w, b, eps)


class RMSNorm(nn.Module):
    """WanRMSNorm: x * rsqrt(mean(x^2) + eps) * weight, in fp32. Returns fp32."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x.float()
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()


class WeightlessRMSNorm(nn.Module):
    """The action module's RMSNorm quirk (reference §5.1): holds a weight that it never uses, and does not
    upcast: x * rsqrt(mean(x^2) + eps) in x's dtype. Do not "fix" this; the checkpoints expect it."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def sinusoid(t: Tensor, dim: int) -> Tensor:
    """Timestep embedding [N, dim] (float64): [cos(t w_k), sin(t w_k)], w_k = 10000^(-k / (dim/2)); t: [N]."""
    half = dim // 2
    t = t.to(torch.float64)
    ang = torch.outer(t, torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half))
    return torch.cat([torch.cos(ang), torch.sin(ang)], dim=1)


def linear_fp32(x: Tensor, layer: nn.Linear) -> Tensor:
    """A linear layer computed in fp32 whatever the parameter dtype (for the time embedding)."""
    bias = None if layer.bias is None else layer.bias.float()
    return F.linear(x.float(), layer.weight.float(), bias)


class MLPProj(nn.Module):
    """img_emb: LayerNorm -> Linear -> GELU -> Linear -> LayerNorm (keys proj.0, proj.1, proj.3, proj.4)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Sequential(
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, in_dim),
            nn.GELU(),
            nn.Linear(in_dim, out_dim),
            nn.LayerNorm(out_dim),
        )

    def forward(self, context: Tensor, dt: torch.dtype) -> Tensor:
        """context: [B, Lc, Cc] -> [B, Lc, D] in dt."""
        n0, l1, _, l3, n4 = self.proj
        y = layer_norm(context, n0.eps, n0.weight, n0.bias).to(dt)
        y = l3(F.gelu(l1(y)))
        return layer_norm(y, n4.eps, n4.weight, n4.bias).to(dt)


class Head(nn.Module):
    """CausalHead: weight-less LayerNorm, per-frame (shift, scale) from `modulation + e`, Linear."""

    def __init__(self, dim: int, out_dim: int, patch_size: tuple[int, int, int], eps: float):
        super().__init__()
        self.eps = eps
        self.head = nn.Linear(dim, math.prod(patch_size) * out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: Tensor, e: Tensor, dt: torch.dtype) -> Tensor:
        """x: [B, F, S, D] fp32; e: [B, F, D] fp32 (time embedding, not its projection) -> [B, F, S, P]."""
        shift, scale = (self.modulation.float()[:, None] + e[:, :, None]).unbind(2)  # each [B, F, D]
        y = layer_norm(x, self.eps) * (1 + scale[:, :, None]) + shift[:, :, None]
        return self.head(y.to(dt))

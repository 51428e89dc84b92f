"""Class-conditional VAR transformer (next-scale prediction) with a rollback-able KV cache.

Layout: tokens x [B, L, C] in step order (see engine.var.scales); step inputs [B, l, Cv] (continuous, from
the quantizer); logits [B, l, V] in fp32. One attention path: SDPA with an explicit block-causal bias, the
same for training, cached sampling and multi-step verification (queries [beg, end) over keys [0, end)).
CFG runs as a doubled batch: rows [0, B) conditional, rows [B, 2B) unconditional (label = num_classes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from engine.var.config import VARConfig
from engine.var.scales import begin_ends, block_causal_bias, seq_len, step_ids


def _hi(t: torch.Tensor) -> torch.Tensor:
    """At least fp32 (norms and modulation); fp64 stays fp64 for the exactness tests."""
    return t if t.dtype == torch.float64 else t.float()


@dataclass
class KVCache:
    """Preallocated keys/values for all layers; positions [0, n) are valid. `truncate(n)` is the rollback:
    later writes overwrite the slots past n."""

    k: torch.Tensor  # [depth, B, H, L, Dh]
    v: torch.Tensor  # [depth, B, H, L, Dh]
    n: int = 0

    def truncate(self, n: int) -> None:
        if not 0 <= n <= self.n:
            raise ValueError(f"KVCache.truncate({n}) outside [0, {self.n}]")
        self.n = n

    def valid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the valid part, [depth, B, H, n, Dh] each (for tests)."""
        return self.k[:, :, :, : self.n].clone(), self.v[:, :, :, : self.n].clone()


class SelfAttention(nn.Module):
    def __init__(self, cfg: VARConfig):
        super().__init__()
        c, self.h = cfg.width, cfg.heads
        self.l2 = cfg.attn_l2_norm
        self.qkv = nn.Linear(c, 3 * c, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(c)), nn.Parameter(torch.zeros(c))
        self.scale_mul = nn.Parameter(torch.full((1, self.h, 1, 1), math.log(4.0)))
        self.proj = nn.Linear(c, c)

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None, beg: int
    ) -> torch.Tensor:
        """x [B, Lq, C]; bias [Lq, beg + Lq]; kv: this layer's cache slices [B, H, L, Dh] or None."""
        b_qkv = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, b_qkv)
        q, k, v = rearrange(qkv, "b l (three h d) -> three b h l d", three=3, h=self.h)  # [B, H, Lq, Dh]
        if self.l2:
            q = F.normalize(q, dim=-1) * self.scale_mul.clamp(max=math.log(100)).exp().to(q.dtype)
            k, scale = F.normalize(k, dim=-1), 1.0
        else:
            scale = 0.25 / math.sqrt(q.shape[-1])
        if kv is not None:
            end = beg + x.shape[1]
            kv[0][:, :, beg:end] = k
            kv[1][:, :, beg:end] = v
            k, v = kv[0][:, :, :end], kv[1][:, :, :end]  # [B, H, end, Dh]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale)
        return self.proj(rearrange(o, "b h l d -> b l (h d)"))


class AdaLNBlock(nn.Module):
    def __init__(self, cfg: VARConfig):
        super().__init__()
        c = cfg.width
        self.eps = cfg.norm_eps
        self.attn = SelfAttention(cfg)
        hidden = round(c * cfg.mlp_ratio)
        self.fc1, self.fc2 = nn.Linear(c, hidden), nn.Linear(hidden, c)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(c, 6 * c))

    def forward(self, x, cond_BD, bias, kv, beg):
        """x [B, Lq, C]; cond_BD [B, C]."""
        ada = self.ada_lin(_hi(cond_BD)).view(-1, 1, 6, x.shape[-1])  # [B, 1, 6, C] in fp32
        g1, g2, s1, s2, sh1, sh2 = ada.unbind(2)
        ln = lambda t: F.layer_norm(_hi(t), t.shape[-1:], eps=self.eps)
        h = (ln(x) * (1 + s1) + sh1).to(x.dtype)
        x = x + g1.to(x.dtype) * self.attn(h, bias, kv, beg)
        h = (ln(x) * (1 + s2) + sh2).to(x.dtype)
        return x + g2.to(x.dtype) * self.fc2(F.gelu(self.fc1(h), approximate="tanh"))


class VAR(nn.Module):
    def __init__(self, cfg: VARConfig):
        super().__init__()
        self.cfg = cfg
        c, self.L = cfg.width, seq_len(cfg.scales)
        self.begin_ends = begin_ends(cfg.scales)
        self.word_embed = nn.Linear(cfg.cvae, c)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, c)
        self.pos_start = nn.Parameter(torch.zeros(1, 1, c))
        self.pos_1LC = nn.Parameter(torch.zeros(1, self.L, c))
        self.lvl_embed = nn.Embedding(len(cfg.scales), c)
        self.register_buffer("lvl_1L", step_ids(cfg.scales)[None], persistent=False)  # [1, L]
        self.blocks = nn.ModuleList([AdaLNBlock(cfg) for _ in range(cfg.depth)])
        self.head_ada = nn.Sequential(nn.SiLU(), nn.Linear(c, 2 * c))
        self.head = nn.Linear(c, cfg.vocab)
        self.init_weights()

    def init_weights(self) -> None:
        """VAR's init: trunc-normal sqrt(1/C/3), AdaLN gammas x init_adaln_gamma, head x init_head,
        proj/fc2 / sqrt(2 depth)."""
        std = math.sqrt(1 / self.cfg.width / 3)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(m.weight, std=std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        for p in (self.pos_start, self.pos_1LC):
            nn.init.trunc_normal_(p, std=std)
        c = self.cfg.width
        with torch.no_grad():
            self.head.weight.mul_(self.cfg.init_head)
            for blk in self.blocks:
                blk.ada_lin[-1].weight[: 2 * c].mul_(self.cfg.init_adaln_gamma)
                blk.ada_lin[-1].weight[2 * c :].mul_(0.5)
                blk.attn.proj.weight.div_(math.sqrt(2 * self.cfg.depth))
                blk.fc2.weight.div_(math.sqrt(2 * self.cfg.depth))

    def new_cache(self, batch: int, dtype: torch.dtype | None = None) -> KVCache:
        """Empty cache for `batch` rows (2B with CFG)."""
        p = self.head.weight
        shape = (self.cfg.depth, batch, self.cfg.heads, self.L, self.cfg.head_dim)
        return KVCache(p.new_zeros(shape, dtype=dtype), p.new_zeros(shape, dtype=dtype))

    def cond(self, label_B: torch.Tensor) -> torch.Tensor:
        """Class embedding [B, C]; label num_classes = unconditional."""
        return self.class_emb(label_B)

    def embed(self, cond_BD: torch.Tensor, inp: torch.Tensor | None, beg: int, end: int) -> torch.Tensor:
        """Transformer input for positions [beg, end). Position 0 is the start token (cond + pos_start);
        inp [B, end - max(beg, 1), Cv] are the quantizer step inputs for positions [max(beg, 1), end).
        Returns [B, end - beg, C]."""
        parts = []
        if beg == 0:
            parts.append(cond_BD[:, None] + self.pos_start)  # [B, 1, C]
        if end > max(beg, 1):
            if inp is None or inp.shape[1] != end - max(beg, 1):
                raise ValueError(
                    f"embed({beg}, {end}): expected inp with {end - max(beg, 1)} tokens, got "
                    f"{None if inp is None else tuple(inp.shape)}"
                )
            parts.append(self.word_embed(inp.to(self.word_embed.weight.dtype)))
        lvl_pos = self.lvl_embed(self.lvl_1L[:, beg:end]) + self.pos_1LC[:, beg:end]  # [1, Lq, C]
        return torch.cat(parts, 1) + lvl_pos

    def logits(
        self, x: torch.Tensor, cond_BD: torch.Tensor, beg: int, cache: KVCache | None = None
    ) -> torch.Tensor:
        """Run the blocks on x [B, Lq, C] at positions [beg, beg + Lq); keys are the cache's [0, beg) plus
        these queries. Without a cache beg must be 0. Returns logits [B, Lq, V] in fp32 (fp64 for fp64)."""
        end = beg + x.shape[1]
        if cache is None and beg != 0:
            raise ValueError(f"logits(beg={beg}) needs a KV cache holding positions [0, {beg})")
        if cache is not None and cache.n != beg:
            raise ValueError(f"KV cache holds [0, {cache.n}) but the queries start at {beg}")
        bias = block_causal_bias(self.cfg.scales, beg, end).to(x.device)
        for i, blk in enumerate(self.blocks):
            kv = None if cache is None else (cache.k[i], cache.v[i])
            x = blk(x, cond_BD, bias, kv, beg)
        if cache is not None:
            cache.n = end
        scale, shift = self.head_ada(_hi(cond_BD)).view(-1, 1, 2, x.shape[-1]).unbind(2)
        h = F.layer_norm(_hi(x), x.shape[-1:], eps=self.cfg.norm_eps) * (1 + scale) + shift
        return _hi(self.head(h.to(self.head.weight.dtype)))

    def step_logits(self, cond_BD, inp, s0: int, s1: int, cache: KVCache | None = None) -> list[torch.Tensor]:
        """Logits of steps s0..s1-1 in one forward (the verification primitive): inp holds the step inputs
        of positions [max(beg_s0, 1), end_{s1-1}). Returns one [B, l_s, V] per step."""
        beg, end = self.begin_ends[s0][0], self.begin_ends[s1 - 1][1]
        out = self.logits(self.embed(cond_BD, inp, beg, end), cond_BD, beg, cache)
        return [out[:, b - beg : e - beg] for b, e in self.begin_ends[s0:s1]]

    def forward(self, label_B: torch.Tensor, inp_BLC: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: label [B], inputs of steps 1..K-1 [B, L - 1, Cv] -> logits [B, L, V].
        Labels are dropped to unconditional with prob cond_drop in training mode only."""
        if self.training and self.cfg.cond_drop > 0:
            drop = torch.rand(label_B.shape, device=label_B.device) < self.cfg.cond_drop
            label_B = torch.where(drop, torch.full_like(label_B, self.cfg.num_classes), label_B)
        cond = self.cond(label_B)
        return self.logits(self.embed(cond, inp_BLC, 0, self.L), cond, 0)


def randomize_weights(model: nn.Module, std: float = 0.1, seed: int = 0) -> nn.Module:
    """Re-draw every parameter ~ N(0, std) (tests: VAR's tiny init makes blocks near-identity and hides
    masking bugs). Keeps attention temperature parameters at their init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale_mul"):
                continue
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype) * std)
    return model


def load_var(path) -> VAR:
    """Load VAR weights saved by `engine.var.train var` (eval mode, fp32)."""
    from pathlib import Path

    from safetensors.torch import load_file

    from engine.var.vqvae import load_config_meta

    if not Path(path).is_file():
        raise ValueError(f"VAR weights not found: {path}")
    model = VAR(load_config_meta(path, VARConfig))
    model.load_state_dict(load_file(str(path)))
    return model.eval()

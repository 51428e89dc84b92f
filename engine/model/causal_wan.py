"""CausalWanModel: the Matrix-Game 2.0 action-conditioned causal video DiT (reference §4, §5).

Layout: latents [B, F, C, h, w] in and out (F latent frames); tokens [B, F*S, D] in (f, h, w) order with
S = (h / ph) * (w / pw) tokens per frame, computed from the input. Parameter names and shapes equal the
official checkpoint's (without the `model.` prefix).

Two forward paths that agree:
- `cache=None`: the whole sequence at once with the block-causal local-window mask (training, autograd);
- `cache=StreamCache`: one block at a time against preallocated ring-buffer KV caches (inference).

Precision: the residual stream, norms, modulation, RoPE and time embedding are fp32; linear layers,
convolutions and attention run in the run dtype (parameter dtype, or the autocast dtype when active).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from engine.config import ModelConfig
from engine.model.action_module import ActionModule, action_rope, check_action_inputs
from engine.model.attention import attention
from engine.model.kv_cache import Ring, StreamCache, WritePlan, write_and_read
from engine.model.layers import Head, MLPProj, RMSNorm, layer_norm, linear_fp32, sinusoid
from engine.model.masks import frame_mask, token_mask
from engine.model.rope import apply_rope, rope_3d

Tensor = torch.Tensor
GLOBAL_WINDOW_FRAMES = 15  # official cache length when local_attn_size == -1 (streaming refuses it)


@dataclass(frozen=True)
class Step:
    """What every block of one forward call shares (built once per call by CausalWanModel.forward)."""

    dt: torch.dtype  # run dtype of linears and attention
    rope: tuple[Tensor, Tensor]  # self-attention cos, sin [F*S, Dh/2]
    action_rope: Optional[dict]  # action cos, sin per branch [F, Dm/2]
    mouse: Optional[Tensor]  # [B, F, 12, Cm] windows
    keyboard: Optional[Tensor]  # [B, F, 12, Ck] windows
    mask: Optional[Tensor] = None  # full path: bool [F*S, F*S]
    action_mask: Optional[Tensor] = None  # full path: bool [F, F]
    plan: Optional[WritePlan] = None  # streaming path: where this call writes


class _Projections(nn.Module):
    """q, k, v, o linears with bias and RMSNorm on q and k over all heads (official names)."""

    def __init__(self, dim: int, heads: int, eps: float, qk_norm: bool = True):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()


class SelfAttention(_Projections):
    """Self-attention with 3-D RoPE on absolute positions; streaming K/V in the ring-buffer cache."""

    def forward(self, x, rope, dt, mask=None, cache_kv=None, plan=None, tokens_per_frame=0) -> Tensor:
        """x: [B, L, D] in dt -> [B, L, D] in dt. rope: (cos, sin) [L, Dh/2]."""
        cos, sin = rope
        q = rearrange(self.norm_q(self.q(x)).float(), "b l (h d) -> b h l d", h=self.heads)
        k = rearrange(self.norm_k(self.k(x)).float(), "b l (h d) -> b h l d", h=self.heads)
        v = rearrange(self.v(x), "b l (h d) -> b h l d", h=self.heads)  # [B, H, L, Dh]
        q, k = apply_rope(q, cos, sin).to(dt), apply_rope(k, cos, sin).to(dt)
        if cache_kv is not None:
            k, v = write_and_read(*cache_kv, k, v, plan.self_runs, plan.self_valid, tokens_per_frame)
        out = attention(q, k, v.to(dt), mask)  # [B, H, L, Dh]
        return self.o(rearrange(out, "b h l d -> b l (h d)"))


class CrossAttention(_Projections):
    """Image-context cross-attention (WanI2VCrossAttention without RoPE); K/V cached once per session."""

    def context_kv(self, context: Tensor, dt: torch.dtype) -> tuple[Tensor, Tensor]:
        """context: [B, Lc, D] in dt -> k, v [B, H, Lc, Dh] in dt."""
        k = rearrange(self.norm_k(self.k(context)).to(dt), "b l (h d) -> b h l d", h=self.heads)
        v = rearrange(self.v(context), "b l (h d) -> b h l d", h=self.heads)
        return k, v

    def forward(self, x: Tensor, k: Tensor, v: Tensor, dt: torch.dtype) -> Tensor:
        q = rearrange(self.norm_q(self.q(x)).to(dt), "b l (h d) -> b h l d", h=self.heads)
        return self.o(rearrange(attention(q, k, v.to(dt)), "b h l d -> b l (h d)"))


class Block(nn.Module):
    """CausalWanAttentionBlock: adaLN self-attn, cross-attn, optional action module, adaLN FFN."""

    def __init__(self, cfg: ModelConfig, has_action: bool):
        super().__init__()
        self.eps = cfg.eps
        self.self_attn = SelfAttention(cfg.dim, cfg.num_heads, cfg.eps, cfg.qk_norm)
        self.has_cross = cfg.image_context_dim is not None
        if self.has_cross:
            self.norm3 = nn.LayerNorm(cfg.dim, eps=cfg.eps) if cfg.cross_attn_norm else nn.Identity()
            self.cross_attn = CrossAttention(cfg.dim, cfg.num_heads, cfg.eps, cfg.qk_norm)
        self.action_model = ActionModule(cfg.action) if has_action else None
        self.ffn = nn.Sequential(
            nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, cfg.dim)
        )
        self.modulation = nn.Parameter(torch.randn(1, 6, cfg.dim) / cfg.dim**0.5)

    def _modulated(self, x: Tensor, shift: Tensor, scale: Tensor, dt: torch.dtype) -> Tensor:
        """norm(x) * (1 + scale) + shift per frame. x: [B, F, S, D]; shift, scale: [B, F, D]."""
        return (layer_norm(x, self.eps) * (1 + scale[:, :, None]) + shift[:, :, None]).to(dt)

    def forward(
        self, x: Tensor, e0: Tensor, step: Step, cross_kv=None, self_kv=None, action_kv=None
    ) -> Tensor:
        """x: [B, F, S, D] fp32; e0: [B, F, 6, D] fp32 -> [B, F, S, D] fp32.

        cross_kv: (k, v) [B, H, Lc, Dh]; streaming only: self_kv = this layer's (k, v) ring buffers,
        action_kv = (mouse_k, mouse_v, keyboard_k, keyboard_v) ring buffers (None where a branch is off).
        """
        b, f, s, d = x.shape
        dt = step.dt
        mods = (self.modulation.float()[:, None] + e0).unbind(2)  # 6 x [B, F, D]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods
        h = self._modulated(x, shift_msa, scale_msa, dt).reshape(b, f * s, d)  # [B, F*S, D]
        y = self.self_attn(h, step.rope, dt, step.mask, self_kv, step.plan, s)
        x = x + y.float().reshape(b, f, s, d) * gate_msa[:, :, None]
        x = x.reshape(b, f * s, d)  # [B, F*S, D]
        if self.has_cross:
            n = self.norm3
            h = layer_norm(x, self.eps, n.weight, n.bias) if isinstance(n, nn.LayerNorm) else x
            x = x + self.cross_attn(h.to(dt), *cross_kv, dt).float()
        if self.action_model is not None:
            x = self.action_model(
                x, f, step.mouse, step.keyboard, step.action_rope, dt, step.action_mask, action_kv, step.plan
            )
        x = x.reshape(b, f, s, d)  # [B, F, S, D]
        y = self.ffn(self._modulated(x, shift_mlp, scale_mlp, dt))
        return x + y.float() * gate_mlp[:, :, None]


class CausalWanModel(nn.Module):
    """Matrix-Game 2.0 CausalWanModel. See docs/architecture.md for the call contract."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.dim % cfg.num_heads or (cfg.dim // cfg.num_heads) % 2:
            raise ValueError(f"dim {cfg.dim} must split into {cfg.num_heads} heads of even size")
        act = cfg.action
        if act is not None and act.blocks and act.img_hidden_size != cfg.dim:
            raise ValueError(f"action img_hidden_size {act.img_hidden_size} != model dim {cfg.dim}")
        self.cfg = cfg
        self.patch_embedding = nn.Conv3d(
            cfg.in_dim, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size
        )
        self.time_embedding = nn.Sequential(
            nn.Linear(cfg.freq_dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim)
        )
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, 6 * cfg.dim))
        action_blocks = set(act.blocks) if act is not None else set()
        self.blocks = nn.ModuleList(Block(cfg, i in action_blocks) for i in range(cfg.num_layers))
        self.action_layers = [i for i in range(cfg.num_layers) if i in action_blocks]
        self.head = Head(cfg.dim, cfg.out_dim, cfg.patch_size, cfg.eps)
        if cfg.image_context_dim is not None:
            self.img_emb = MLPProj(cfg.image_context_dim, cfg.dim)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Official init: xavier linears, zero biases, normal(0.02) time embedding, zero output layers."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        for m in self.time_embedding.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        nn.init.zeros_(self.head.head.weight)
        for i in self.action_layers:
            am = self.blocks[i].action_model
            for name in ("proj_mouse", "proj_keyboard"):
                if hasattr(am, name):
                    nn.init.zeros_(getattr(am, name).weight)

    def tokens_per_frame(self, h: int, w: int) -> int:
        _, ph, pw = self.cfg.patch_size
        if h % ph or w % pw:
            raise ValueError(f"latent size {h}x{w} is not divisible by the patch size {ph}x{pw}")
        return (h // ph) * (w // pw)

    def new_cache(self, batch: int, h: int, w: int, device, dtype: torch.dtype) -> StreamCache:
        """Preallocate the streaming caches for `batch` sessions of h x w latents (zeros, position 0)."""
        cfg, act = self.cfg, self.cfg.action
        if cfg.local_attn_size == -1:
            raise ValueError("streaming needs a finite local_attn_size (the preset has -1, global attention)")
        s = self.tokens_per_frame(h, w)
        heads, dh, win = cfg.num_heads, cfg.dim // cfg.num_heads, cfg.local_attn_size
        kw = dict(device=device, dtype=dtype)
        cache = StreamCache(
            batch=batch,
            tokens_per_frame=s,
            self_ring=Ring(win, cfg.sink_size),
            action_ring=Ring(win, 0),  # the official action caches keep no sink frames
            self_k=torch.zeros(cfg.num_layers, batch, heads, win * s, dh, **kw),
            self_v=torch.zeros(cfg.num_layers, batch, heads, win * s, dh, **kw),
        )
        n_act = len(self.action_layers)
        if n_act and act.enable_mouse:
            dm = act.mouse_hidden_dim // act.heads_num
            cache.mouse_k = torch.zeros(n_act, batch * s, act.heads_num, win, dm, **kw)
            cache.mouse_v = torch.zeros_like(cache.mouse_k)
        if n_act and act.enable_keyboard:
            dk = act.keyboard_hidden_dim // act.heads_num
            cache.keyboard_k = torch.zeros(n_act, batch, act.heads_num, win, dk, **kw)
            cache.keyboard_v = torch.zeros_like(cache.keyboard_k)
        return cache

    def run_dtype(self, device: torch.device) -> torch.dtype:
        if torch.is_autocast_enabled(device.type):
            return torch.get_autocast_dtype(device.type)
        return self.patch_embedding.weight.dtype

    def time_embed(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """t: [B, F] -> e [B, F, D] and e0 [B, F, 6, D], both fp32 (autocast off)."""
        b, f = t.shape
        with torch.autocast(t.device.type, enabled=False):
            e = linear_fp32(sinusoid(t.flatten(), self.cfg.freq_dim), self.time_embedding[0])
            e = linear_fp32(F.silu(e), self.time_embedding[2])  # [B*F, D]
            e0 = linear_fp32(F.silu(e), self.time_projection[1])  # [B*F, 6*D]
        return e.reshape(b, f, -1), e0.reshape(b, f, 6, -1)

    def forward(
        self,
        x: Tensor,
        cond: Optional[Tensor],
        t: Tensor,
        context: Optional[Tensor] = None,
        mouse: Optional[Tensor] = None,
        keyboard: Optional[Tensor] = None,
        cache: Optional[StreamCache] = None,
        start_frame: int = 0,
    ) -> Tensor:
        """Velocity (noise - x0) [B, F, out_dim, h, w] in x's dtype; see docs/architecture.md."""
        cfg = self.cfg
        b, f = x.shape[:2]
        self._check_inputs(x, cond, t, context, cache)
        check_action_inputs(cfg.action, b, f, mouse, keyboard)
        dt = self.run_dtype(x.device)
        xin = x if cond is None else torch.cat([x, cond.to(x.dtype)], dim=2)  # [B, F, in_dim, h, w]
        tokens = self.patch_embedding(rearrange(xin, "b f c h w -> b c f h w").to(dt))  # [B, D, F, h', w']
        gh, gw = tokens.shape[-2:]
        s = gh * gw
        x_tok = rearrange(tokens, "b d f h w -> b f (h w) d").float()  # [B, F, S, D] residual stream
        e, e0 = self.time_embed(t)
        rope = rope_3d(cfg.dim // cfg.num_heads, start_frame, f, gh, gw, x.device)
        arope = action_rope(cfg.action, start_frame, f, x.device) if self.action_layers else None
        plan: Optional[WritePlan] = None
        if cache is None:
            nfpb, local = cfg.num_frame_per_block, cfg.local_attn_size
            fm = frame_mask(f, nfpb, local, cfg.sink_size, diagonal=False, device=x.device)
            step = Step(
                dt, rope, arope, mouse, keyboard,
                mask=token_mask(fm, s),  # [F*S, F*S]
                action_mask=frame_mask(f, nfpb, local, 0, diagonal=True, device=x.device),  # [F, F]
            )  # fmt: skip
            cross = self._cross_kv(context, dt) if cfg.image_context_dim is not None else None
        else:
            plan = cache.plan(start_frame, f)
            step = Step(dt, rope, arope, mouse, keyboard, plan=plan)
            cross = self._cached_cross_kv(cache, context, dt) if cfg.image_context_dim is not None else None
        act_index = {layer: a for a, layer in enumerate(self.action_layers)}
        for i, block in enumerate(self.blocks):
            cross_kv = None if cross is None else (cross[0][i], cross[1][i])
            self_kv = action_kv = None
            if cache is not None:
                self_kv = (cache.self_k[i], cache.self_v[i])
                if i in act_index:
                    action_kv = tuple(
                        None if c is None else c[act_index[i]] for c in self._action_bufs(cache)
                    )
            x_tok = block(x_tok, e0, step, cross_kv, self_kv, action_kv)
        if cache is not None:
            cache.commit(plan)
        out = self.head(x_tok, e, dt)  # [B, F, S, pt*ph*pw*C]
        pt, ph, pw = cfg.patch_size
        out = rearrange(out, "b f (h w) (p q r c) -> b (f p) c (h q) (w r)", h=gh, p=pt, q=ph, r=pw)
        return out.to(x.dtype)  # [B, F, out_dim, h, w]

    @staticmethod
    def _action_bufs(cache: StreamCache) -> tuple:
        return (cache.mouse_k, cache.mouse_v, cache.keyboard_k, cache.keyboard_v)

    def _cross_kv(self, context: Tensor, dt: torch.dtype) -> tuple[list[Tensor], list[Tensor]]:
        """Per-layer cross-attention K/V of the image context: lists of [B, H, Lc, Dh]."""
        c = self.img_emb(context, dt)  # [B, Lc, D]
        kvs = [blk.cross_attn.context_kv(c, dt) for blk in self.blocks]
        return [k for k, _ in kvs], [v for _, v in kvs]

    def _cached_cross_kv(self, cache: StreamCache, context: Optional[Tensor], dt: torch.dtype):
        """Compute the cross K/V on a session's first call into the cache's buffers; reuse them after."""
        if not cache.cross_ready:
            if context is None:
                raise ValueError("the first streaming call of a session needs the image context")
            ks, vs = self._cross_kv(context, dt)
            shape = (len(ks), *ks[0].shape)  # [L, B, H, Lc, Dh]
            if cache.cross_k is None or tuple(cache.cross_k.shape) != shape:
                cache.cross_k = torch.empty(shape, device=ks[0].device, dtype=cache.self_k.dtype)
                cache.cross_v = torch.empty_like(cache.cross_k)
            for i, (k, v) in enumerate(zip(ks, vs, strict=True)):
                cache.cross_k[i].copy_(k)
                cache.cross_v[i].copy_(v)
            cache.cross_ready = True
        return cache.cross_k.to(dt), cache.cross_v.to(dt)

    def _check_inputs(self, x, cond, t, context, cache) -> None:
        cfg = self.cfg
        b, f = x.shape[:2]
        if x.ndim != 5 or x.shape[2] != cfg.out_dim:
            raise ValueError(f"x must be [B, F, {cfg.out_dim}, h, w], got {tuple(x.shape)}")
        extra = cfg.in_dim - cfg.out_dim
        if extra and (cond is None or tuple(cond.shape) != (b, f, extra, *x.shape[3:])):
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(f"cond must be [B, F, {extra}, h, w] = {(b, f, extra, *x.shape[3:])}, got {got}")
        if not extra and cond is not None:
            raise ValueError("this model takes no cond channels; pass cond=None")
        if tuple(t.shape) != (b, f):
            raise ValueError(f"t must be [B, F] = {(b, f)}, got {tuple(t.shape)}")
        if cfg.image_context_dim is None and context is not None:
            raise ValueError("this model has no image context; pass context=None")
        if cfg.image_context_dim is not None and cache is None and context is None:
            raise ValueError(f"context [B, Lc, {cfg.image_context_dim}] is required")
        if context is not None and (context.ndim != 3 or context.shape[-1] != cfg.image_context_dim):
            raise ValueError(f"context must be [B, Lc, {cfg.image_context_dim}], got {tuple(context.shape)}")
        if cache is not None:
            s = self.tokens_per_frame(*x.shape[3:])
            if cache.batch != b or cache.tokens_per_frame != s:
                raise ValueError(
                    f"cache built for batch {cache.batch} with {cache.tokens_per_frame} tokens per frame, "
                    f"got batch {b} with {s}"
                )

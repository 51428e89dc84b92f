"""OptimizedCausalWan: CausalWanModel's streaming passes on static buffers (torch.compile, CUDA graphs).

The reference `engine.model.causal_wan.CausalWanModel` defines what is correct; this module computes the
same streaming forward for one fixed session geometry (batch B, latent h x w, F frames per block) so that
every pass of every block has the same shapes and reads and writes the same tensors:
- the caches are a `StreamCache` of the reference layout, written with `index_copy_` at slot indices held
  in a buffer, and read whole with a key mask (no per-block slicing, so one compiled graph for all blocks);
- per session: time embeddings of the fixed pass timesteps (`[P, B, F, D]`, `[P, B, F, 6, D]`) and the
  cross-attention K/V of the image context;
- per block (eager, once for all passes): RoPE tables of the block's absolute positions, write indices and
  key masks, the keyboard K/V of every action layer (they depend on the actions only), and the mouse
  windows' share of the first mouse MLP layer;
- per pass (`forward`, the function to compile): patch embedding, the blocks and the head. It reads the
  buffers only, so `torch.compile(mode="reduce-overhead")` can capture it as a CUDA graph.

Weights: self-attention q, k, v become one fused [3D, D] linear at build time; the reference model's
q/k/v weights become views into it, so checkpoints keep the official names and no memory is doubled.
Precision as in the reference: residual stream, norms, modulation, RoPE and time embedding fp32; linears
and attention in the run dtype (the parameters' dtype).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from engine.model.action_module import action_rope
from engine.model.causal_wan import Block, CausalWanModel
from engine.model.kv_cache import Ring, StreamCache, WritePlan
from engine.model.layers import RMSNorm, layer_norm
from engine.model.rope import apply_rope, rope_3d

Tensor = torch.Tensor


def _rms(x: Tensor, weight: Tensor | None, eps: float) -> Tensor:
    """WanRMSNorm in fp32 (weight already fp32); weight None: no norm (qk_norm off), just fp32."""
    x = x.float()
    if weight is None:
        return x
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rms_plain(x: Tensor, eps: float) -> Tensor:
    """The action module's weightless RMSNorm, in x's dtype (reference §5.1 quirk)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _small_attention(q: Tensor, k: Tensor, v: Tensor, keep: Tensor) -> Tensor:
    """Attention over a few keys in fp32 (q: [N, H, Lq, D], k, v: [N, H, Lk, D], keep: bool [Lk])."""
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5  # [N, H, Lq, Lk]
    s = s.masked_fill(~keep, float("-inf"))
    return torch.matmul(torch.softmax(s, -1), v.float()).to(q.dtype)


def window_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, full: bool) -> Tensor:
    """Self-attention of a block's queries over the whole KV window (ring order: attention does not care).

    q: [B, H, L, Dh], k, v: [B, H, W*S, Dh] in the run dtype; bias: fp32 [1, W*S], 0 for a filled slot and
    -inf for an empty one; full: every slot is filled (eager only: no mask). Returns [B, H, L, Dh].
    Eager: PyTorch SDPA, unmasked when the window is full (a mask costs ~5% on CPU). Compiled: matmul +
    fp32 softmax, which inductor fuses (scale, bias, softmax, cast) between two oneDNN GEMMs: ~35% faster
    than SDPA's CPU kernel for the doom shapes (432 x 864, Dh 64, bf16 on one thread); the scores are
    rounded to the run dtype before the softmax (SDPA keeps them fp32), which the bf16 tests bound.
    """
    if not torch.compiler.is_compiling():
        mask = None if full else bias > -1.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    s = torch.matmul(q, k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5 + bias  # [B, H, L, W*S]
    return torch.matmul(torch.softmax(s, -1).to(q.dtype), v)


def slot_index(ring: Ring, plan: WritePlan, per_frame: int) -> Tensor:
    """Destination index (long [F*per_frame]) of each new token in a ring buffer of `per_frame` per slot."""
    slots = torch.tensor([ring.slot(f) for f in range(plan.start, plan.stop)])
    return (slots[:, None] * per_frame + torch.arange(per_frame)).flatten()


class _FastBlock(nn.Module):
    """One transformer block of the reference model, re-laid out for the static streaming pass."""

    def __init__(self, blk: Block, heads: int):
        super().__init__()
        sa = blk.self_attn
        d = sa.q.weight.shape[0]
        self.heads, self.eps, self.dim = heads, blk.eps, d
        self.qkv = nn.Linear(d, 3 * d, device=sa.q.weight.device, dtype=sa.q.weight.dtype)
        with torch.no_grad():
            self.qkv.weight.copy_(torch.cat([sa.q.weight, sa.k.weight, sa.v.weight]))
            self.qkv.bias.copy_(torch.cat([sa.q.bias, sa.k.bias, sa.v.bias]))
        for i, lin in enumerate((sa.q, sa.k, sa.v)):  # the reference reads its weights from the fused ones
            lin.weight = nn.Parameter(self.qkv.weight[i * d : (i + 1) * d], requires_grad=False)
            lin.bias = nn.Parameter(self.qkv.bias[i * d : (i + 1) * d], requires_grad=False)
        self.o, self.ffn0, self.ffn2 = sa.o, blk.ffn[0], blk.ffn[2]
        self.register_buffer("modulation", blk.modulation.detach().float(), persistent=False)  # [1, 6, D]
        self.register_buffer("norm_q", self._norm_weight(sa.norm_q, d), persistent=False)
        self.register_buffer("norm_k", self._norm_weight(sa.norm_k, d), persistent=False)
        self.has_cross = blk.has_cross
        if self.has_cross:
            ca, n3 = blk.cross_attn, blk.norm3
            self.cross_q, self.cross_o = ca.q, ca.o
            self.register_buffer("cross_norm_q", self._norm_weight(ca.norm_q, d), persistent=False)
            self.n3 = isinstance(n3, nn.LayerNorm)
            if self.n3:
                self.register_buffer("n3_w", n3.weight.detach().float(), persistent=False)
                self.register_buffer("n3_b", n3.bias.detach().float(), persistent=False)
        self.action = blk.action_model

    @staticmethod
    def _norm_weight(norm: nn.Module, d: int) -> Tensor | None:
        """The fp32 RMSNorm weight, or None where the preset has qk_norm off (nn.Identity)."""
        return norm.weight.detach().float() if isinstance(norm, RMSNorm) else None

    def forward(self, x: Tensor, io: dict[str, Tensor], i: int, a: int, full: bool) -> Tensor:
        """x: [B, F, S, D] fp32 -> same. io: `OptimizedCausalWan.io`; i: layer; a: action layer; full: the
        KV window is filled (eager attention skips the mask)."""
        b, f, s, d = x.shape
        dt, h = self.qkv.weight.dtype, self.heads
        mods = (self.modulation[:, None] + io["e0"]).unbind(2)  # 6 x [B, F, D]
        shift, scale, gate, shift2, scale2, gate2 = mods
        y = layer_norm(x, self.eps) * (1 + scale[:, :, None]) + shift[:, :, None]
        q, k, v = self.qkv(y.to(dt).reshape(b, f * s, d)).split(d, -1)  # each [B, L, D]
        cos, sin = io["cos"], io["sin"]  # [L, 1, Dh/2]
        q = apply_rope(_rms(q, self.norm_q, self.eps).unflatten(-1, (h, -1)), cos, sin)  # [B, L, H, Dh]
        k = apply_rope(_rms(k, self.norm_k, self.eps).unflatten(-1, (h, -1)), cos, sin)
        ck, cv = io["self_k"][i], io["self_v"][i]  # [B, H, W*S, Dh]
        ck.index_copy_(2, io["self_index"], k.to(dt).transpose(1, 2))
        cv.index_copy_(2, io["self_index"], v.unflatten(-1, (h, -1)).transpose(1, 2))
        o = window_attention(q.to(dt).transpose(1, 2), ck, cv, io["self_bias"], full)
        x = x + self.o(o.transpose(1, 2).reshape(b, f, s, d)).float() * gate[:, :, None]
        x = x.reshape(b, f * s, d)  # [B, L, D]
        if self.has_cross:
            y = layer_norm(x, self.eps, self.n3_w, self.n3_b) if self.n3 else x
            q = _rms(self.cross_q(y.to(dt)), self.cross_norm_q, self.eps).to(dt)
            q = q.unflatten(-1, (h, -1)).transpose(1, 2)  # [B, H, L, Dh]
            o = F.scaled_dot_product_attention(q, io["cross_k"][i], io["cross_v"][i])
            x = x + self.cross_o(o.transpose(1, 2).reshape(b, f * s, d)).float()
        if self.action is not None:
            x = self._action(x, f, s, io, a)
        x = x.reshape(b, f, s, d)
        y = layer_norm(x, self.eps) * (1 + scale2[:, :, None]) + shift2[:, :, None]
        y = self.ffn2(F.gelu(self.ffn0(y.to(dt)), approximate="tanh"))
        return x + y.float() * gate2[:, :, None]

    def _action(self, x: Tensor, f: int, s: int, io: dict[str, Tensor], a: int) -> Tensor:
        """The action module's streaming path; x: [B, F*S, D] fp32 -> [B, F*S, D] fp32."""
        am, cfg = self.action, self.action.cfg
        b, dt, hm = x.shape[0], self.qkv.weight.dtype, am.heads
        if cfg.enable_mouse:
            hs = rearrange(x, "b (f s) d -> b s f d", f=f).to(dt)  # [B, S, F, D]
            lin0 = am.mouse_mlp[0]
            g = F.linear(hs, lin0.weight[:, : self.dim]) + io["mouse_part"][a][:, None]  # [B, S, F, C]
            g = am.mouse_mlp[2](F.gelu(g, approximate="tanh"))
            ln = am.mouse_mlp[3]
            g = layer_norm(g, ln.eps, ln.weight, ln.bias).to(dt)
            qkv = am.t_qkv(g.reshape(b * s, f, -1))  # [B*S, F, 3*C]
            q, k, v = rearrange(qkv, "n f (k h d) -> k n h f d", k=3, h=hm)  # each [B*S, Hm, F, Dm]
            q = apply_rope(_rms_plain(q, am.img_attn_q_norm.eps), io["m_cos"], io["m_sin"]).to(dt)
            k = apply_rope(_rms_plain(k, am.img_attn_k_norm.eps), io["m_cos"], io["m_sin"]).to(dt)
            mk, mv = io["mouse_k"][a], io["mouse_v"][a]  # [B*S, Hm, Wa, Dm]
            mk.index_copy_(2, io["action_index"], k)
            mv.index_copy_(2, io["action_index"], v)
            out = _small_attention(q, mk, mv, io["action_keep"])  # [B*S, Hm, F, Dm]
            x = x + am.proj_mouse(rearrange(out, "(b s) h f d -> b (f s) (h d)", b=b)).float()
        if cfg.enable_keyboard:
            q = rearrange(am.mouse_attn_q(x.to(dt)), "b (f s) (h d) -> b h f s d", f=f, h=hm)
            q = apply_rope(_rms_plain(q, am.key_attn_q_norm.eps), io["k_cos"][:, None], io["k_sin"][:, None])
            q = rearrange(q.to(dt), "b h f s d -> b h (f s) d")  # [B, Hk, F*S, Dk]
            out = _small_attention(q, io["keyboard_k"][a], io["keyboard_v"][a], io["action_keep"])
            x = x + am.proj_keyboard(rearrange(out, "b h l d -> b l (h d)")).float()
        return x


class OptimizedCausalWan(nn.Module):
    """The streaming passes of `model` for `batch` sessions of h x w latents, on static buffers.

    Use: `start_session(context)`, then per block `begin_block(start, cond, mouse, keyboard)`, then for
    pass i (an index into the pass timesteps given at build time) `set_pass(x, i)` and `forward(io)`, then
    `end_block()`. `forward` reads and writes only `io`, a dict of tensors whose storage never changes (the
    inputs of the pass, the per-block tables and the caches); the weights are the module's parameters and
    buffers and never change, so inductor's freezing may fold them. The reference model is modified in one
    way: its self-attention q/k/v weights become views into the fused weights (same values and names).
    """

    def __init__(self, model: CausalWanModel, batch: int, h: int, w: int, pass_timesteps: list[float]):
        super().__init__()
        cfg = model.cfg
        p = model.patch_embedding.weight
        self.cfg, self.ref = cfg, [model]  # a list: the reference is not a submodule of this one
        self.device, self.dtype = p.device, p.dtype
        self.batch, self.f = batch, cfg.num_frame_per_block
        self.gh, self.gw = h // cfg.patch_size[1], w // cfg.patch_size[2]
        self.s = model.tokens_per_frame(h, w)
        self.patch_embedding, self.head = model.patch_embedding, model.head
        self.register_buffer("head_modulation", model.head.modulation.detach().float(), persistent=False)
        self.blocks = nn.ModuleList(_FastBlock(blk, cfg.num_heads) for blk in model.blocks)
        self.action_of = {i: a for a, i in enumerate(model.action_layers)}
        self.act_layers = list(model.action_layers)
        self.cache: StreamCache = model.new_cache(batch, h, w, self.device, self.dtype)
        self.has_cond = cfg.in_dim > cfg.out_dim
        self.pass_timesteps = [float(t) for t in pass_timesteps]
        f, s, b, dt, dev = self.f, self.s, batch, self.dtype, self.device
        with torch.no_grad():
            t = torch.tensor(self.pass_timesteps, dtype=torch.float32, device=dev)[:, None, None]
            e, e0 = model.time_embed(t.expand(-1, b, f).reshape(-1, f))  # [P*B, F, D], [P*B, F, 6, D]
        self.e_table, self.e0_table = e.unflatten(0, (-1, b)), e0.unflatten(0, (-1, b))  # [P, B, F, ...]
        dh, win = cfg.dim // cfg.num_heads, self.cache.self_ring.capacity

        def z(*shape, dtype=torch.float32):
            return torch.zeros(shape, dtype=dtype, device=dev)

        io = dict(
            x=z(b, f, cfg.out_dim, h, w, dtype=dt),
            e=z(*self.e_table.shape[1:]), e0=z(*self.e0_table.shape[1:]),  # this pass's, [B, F, (6,) D]
            cos=z(f * s, 1, dh // 2), sin=z(f * s, 1, dh // 2),  # self-attention RoPE [L, 1, Dh/2]
            self_index=z(f * s, dtype=torch.long), self_bias=z(1, win * s),
            action_index=z(f, dtype=torch.long), action_keep=z(win, dtype=torch.bool),
            self_k=self.cache.self_k, self_v=self.cache.self_v,
        )  # fmt: skip
        if self.has_cond:
            io["cond"] = z(b, f, cfg.in_dim - cfg.out_dim, h, w, dtype=dt)
        act, la = cfg.action, len(self.act_layers)
        if la and act.enable_mouse:
            dm = act.mouse_hidden_dim // act.heads_num
            io.update(m_cos=z(f, dm // 2), m_sin=z(f, dm // 2), mouse_k=self.cache.mouse_k)
            io.update(mouse_v=self.cache.mouse_v, mouse_part=z(la, b, f, act.mouse_hidden_dim, dtype=dt))
        if la and act.enable_keyboard:
            dk = act.keyboard_hidden_dim // act.heads_num
            io.update(k_cos=z(f, dk // 2), k_sin=z(f, dk // 2))
            io.update(keyboard_k=self.cache.keyboard_k, keyboard_v=self.cache.keyboard_v)
        self.io: dict[str, Tensor] = io
        self._plan: WritePlan | None = None
        self.window_full = False  # every KV slot filled (set per block; read by the eager pass only)

    # --- per session and per block (eager) ----------------------------------------------------------

    @torch.no_grad()
    def start_session(self, context: Tensor | None) -> None:
        """Reset the caches to position 0 and compute the cross-attention K/V of `context` [B, Lc, Cc]."""
        self.cache.reset()
        self._plan = None
        if self.cfg.image_context_dim is not None:
            k, v = self.ref[0]._cached_cross_kv(self.cache, context, self.dtype)
            if k.data_ptr() != self.cache.cross_k.data_ptr():
                raise ValueError(f"cross K/V dtype {self.cache.cross_k.dtype} != run dtype {self.dtype}")
            self.io.update(cross_k=self.cache.cross_k, cross_v=self.cache.cross_v)

    @torch.no_grad()
    def begin_block(
        self, start: int, cond: Tensor | None, mouse: Tensor | None, keyboard: Tensor | None
    ) -> None:
        """Fill the per-block tables for latent frames [start, start + F) (checks the order like the
        reference cache). cond: [B, F, in-out, h, w]; mouse, keyboard: windows [B, F, T, C]."""
        plan = self.cache.plan(start, self.f)
        cfg, f, s, io = self.cfg, self.f, self.s, self.io
        if self.has_cond:
            io["cond"].copy_(cond)
        cos, sin = rope_3d(cfg.dim // cfg.num_heads, start, f, self.gh, self.gw, self.device)
        io["cos"].copy_(cos[:, None])
        io["sin"].copy_(sin[:, None])
        io["self_index"].copy_(slot_index(self.cache.self_ring, plan, s))
        filled = torch.arange(io["self_bias"].numel())[None] < plan.self_valid * s
        io["self_bias"].copy_(torch.where(filled, 0.0, float("-inf")))
        self.window_full = bool(plan.self_valid * s == io["self_bias"].numel())
        io["action_index"].copy_(slot_index(self.cache.action_ring, plan, 1))
        io["action_keep"].copy_(torch.arange(io["action_keep"].numel()) < plan.action_valid)
        if self.act_layers:
            self._begin_actions(start, mouse, keyboard)
        self._plan = plan

    def _begin_actions(self, start: int, mouse: Tensor | None, keyboard: Tensor | None) -> None:
        act, f, dt, io = self.cfg.action, self.f, self.dtype, self.io
        rope = action_rope(act, start, f, self.device)
        for a, i in enumerate(self.act_layers):
            am = self.blocks[i].action
            if act.enable_mouse:
                w = am.mouse_mlp[0]
                m = rearrange(mouse.to(dt), "b f t c -> b f (t c)")  # [B, F, T*Cm], time-major
                io["mouse_part"][a].copy_(F.linear(m, w.weight[:, self.cfg.dim :], w.bias))
            if act.enable_keyboard:
                emb = am.keyboard_embed(keyboard.to(dt))  # [B, F, T, hidden]
                kv = am.keyboard_attn_kv(rearrange(emb, "b f t c -> b f (t c)"))  # [B, F, 2*Hk*Dk]
                k, v = rearrange(kv, "b f (two h d) -> two b h f d", two=2, h=am.heads)  # [B, Hk, F, Dk]
                k = apply_rope(_rms_plain(k, am.key_attn_k_norm.eps), *rope["keyboard"]).to(dt)
                io["keyboard_k"][a].index_copy_(2, io["action_index"], k)
                io["keyboard_v"][a].index_copy_(2, io["action_index"], v)
        if act.enable_mouse:
            io["m_cos"].copy_(rope["mouse"][0])
            io["m_sin"].copy_(rope["mouse"][1])
        if act.enable_keyboard:
            io["k_cos"].copy_(rope["keyboard"][0])
            io["k_sin"].copy_(rope["keyboard"][1])

    def set_pass(self, x: Tensor, i: int) -> None:
        """Load pass i's input x [B, F, C, h, w] and time embedding into `io`."""
        if self._plan is None:
            raise RuntimeError("call begin_block() before a pass")
        self.io["x"].copy_(x)
        self.io["e"].copy_(self.e_table[i])
        self.io["e0"].copy_(self.e0_table[i])

    def end_block(self) -> None:
        """Advance the cache positions after the block's last pass."""
        self.cache.commit(self._plan)
        self._plan = None

    # --- the pass (compiled) ------------------------------------------------------------------------

    def forward(self, io: dict[str, Tensor]) -> Tensor:
        """One streaming pass: velocity [B, F, out_dim, h, w] in the run dtype; writes the caches in io."""
        cfg, dt = self.cfg, self.dtype
        xin = torch.cat([io["x"], io["cond"]], dim=2) if self.has_cond else io["x"]
        tokens = self.patch_embedding(rearrange(xin, "b f c h w -> b c f h w"))  # [B, D, F, h', w']
        x = rearrange(tokens, "b d f h w -> b f (h w) d").float()  # [B, F, S, D] residual stream
        full = not torch.compiler.is_compiling() and self.window_full  # compiled code never reads it
        for i, blk in enumerate(self.blocks):
            x = blk(x, io, i, self.action_of.get(i, -1), full)
        shift, scale = (self.head_modulation[:, None] + io["e"][:, :, None]).unbind(2)  # [B, F, D]
        y = layer_norm(x, self.head.eps) * (1 + scale[:, :, None]) + shift[:, :, None]
        out = self.head.head(y.to(dt))  # [B, F, S, pt*ph*pw*C]
        pt, ph, pw = cfg.patch_size
        return rearrange(out, "b f (h w) (p q r c) -> b (f p) c (h q) (w r)", h=self.gh, p=pt, q=ph, r=pw)

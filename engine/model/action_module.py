"""Matrix-Game 2.0 action module (reference §5): mouse temporal self-attention and keyboard cross-attention.

Inputs are already windowed by `engine.actions.gather_windows`: mouse [B, F, T, Cm] and keyboard
[B, F, T, Ck] with T = vae_time_compression_ratio * windows_size = 12 video frames per latent frame.
Tokens x: [B, F*S, D] in (f, s) order, fp32 residual stream.

Mouse branch: per spatial token, the F latent frames attend each other (block-causal local window in the
full path; the cached window in the streaming path). Keyboard branch: every image token attends the keyboard
tokens of the frames its frame may see. Both use action RoPE (theta 256, first rope dims, absolute frame).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from einops import rearrange, repeat

from engine.config import ActionConfig
from engine.model.attention import attention
from engine.model.kv_cache import WritePlan, write_and_read
from engine.model.layers import WeightlessRMSNorm, layer_norm
from engine.model.rope import apply_rope, rope_1d

Tensor = torch.Tensor


class ActionModule(nn.Module):
    """Parameter names and shapes equal the official `action_model` of a block (reference §5.1)."""

    def __init__(self, cfg: ActionConfig):
        super().__init__()
        self.cfg = cfg
        self.heads = cfg.heads_num
        self.window = cfg.vae_time_compression_ratio * cfg.windows_size  # T = 12 video frames per latent
        if cfg.enable_keyboard:
            hid = cfg.hidden_size
            self.keyboard_embed = nn.Sequential(
                nn.Linear(cfg.keyboard_dim_in, hid), nn.SiLU(), nn.Linear(hid, hid)
            )
        if cfg.enable_mouse:
            c = cfg.mouse_hidden_dim
            self.mouse_mlp = nn.Sequential(
                nn.Linear(cfg.mouse_dim_in * self.window + cfg.img_hidden_size, c),
                nn.GELU(approximate="tanh"),
                nn.Linear(c, c),
                nn.LayerNorm(c),
            )
            self.t_qkv = nn.Linear(c, 3 * c, bias=cfg.qkv_bias)
            self.img_attn_q_norm = WeightlessRMSNorm(c // cfg.heads_num)
            self.img_attn_k_norm = WeightlessRMSNorm(c // cfg.heads_num)
            self.proj_mouse = nn.Linear(c, cfg.img_hidden_size, bias=cfg.qkv_bias)
        if cfg.enable_keyboard:
            kd = cfg.keyboard_hidden_dim
            self.key_attn_q_norm = WeightlessRMSNorm(kd // cfg.heads_num)
            self.key_attn_k_norm = WeightlessRMSNorm(kd // cfg.heads_num)
            self.mouse_attn_q = nn.Linear(cfg.img_hidden_size, kd, bias=cfg.qkv_bias)
            self.keyboard_attn_kv = nn.Linear(cfg.hidden_size * self.window, 2 * kd, bias=cfg.qkv_bias)
            self.proj_keyboard = nn.Linear(kd, cfg.img_hidden_size, bias=cfg.qkv_bias)

    def forward(
        self,
        x: Tensor,
        num_frames: int,
        mouse: Optional[Tensor],
        keyboard: Optional[Tensor],
        rope: dict,
        dt: torch.dtype,
        frame_mask: Optional[Tensor] = None,
        cache: Optional[tuple[Tensor, ...]] = None,
        plan: Optional[WritePlan] = None,
    ) -> Tensor:
        """x: [B, F*S, D] fp32 -> [B, F*S, D] fp32. rope: `action_rope(...)` for these frames.

        Full path: `frame_mask` bool [F, F]. Streaming path: `cache` = (mouse_k, mouse_v, keyboard_k,
        keyboard_v) views of this layer ([B*S, Hm, Wa, Dm] and [B, Hm, Wa, Dm], None where a branch is
        off) and `plan` from `StreamCache.plan`.
        """
        s = x.shape[1] // num_frames
        if self.cfg.enable_mouse:
            mk, mv = (None, None) if cache is None else cache[:2]
            x = x + self._mouse(x, num_frames, s, mouse, dt, *rope["mouse"], frame_mask, mk, mv, plan)
        if self.cfg.enable_keyboard:
            kk, kv = (None, None) if cache is None else cache[2:]
            x = x + self._keyboard(
                x, num_frames, s, keyboard, dt, *rope["keyboard"], frame_mask, kk, kv, plan
            )
        return x

    def _mouse(self, x, f, s, mouse, dt, cos, sin, frame_mask, cache_k, cache_v, plan) -> Tensor:
        b = x.shape[0]
        hs = rearrange(x, "b (f s) d -> (b s) f d", f=f, s=s)  # [B*S, F, D]
        m = repeat(mouse, "b f t c -> (b s) f (t c)", s=s)  # [B*S, F, T*Cm], time-major like the official
        g = torch.cat([hs.to(dt), m.to(dt)], dim=-1)  # [B*S, F, D + T*Cm]
        g = self.mouse_mlp[2](self.mouse_mlp[1](self.mouse_mlp[0](g)))  # Linear, GELU(tanh), Linear
        ln = self.mouse_mlp[3]
        g = layer_norm(g, ln.eps, ln.weight, ln.bias).to(dt)  # [B*S, F, C]
        qkv = self.t_qkv(g)  # [B*S, F, 3*C]
        q, k, v = rearrange(qkv, "n f (k h d) -> k n h f d", k=3, h=self.heads)  # each [B*S, H, F, Dm]
        q = apply_rope(self.img_attn_q_norm(q), cos, sin).to(dt)
        k = apply_rope(self.img_attn_k_norm(k), cos, sin).to(dt)
        if cache_k is None:
            out = attention(q, k, v, frame_mask)  # [B*S, H, F, Dm]
        else:
            k, v = write_and_read(cache_k, cache_v, k, v, plan.action_runs, plan.action_valid, 1)
            out = attention(q, k, v)
        out = rearrange(out, "(b s) h f d -> b (f s) (h d)", b=b)  # [B, F*S, C]
        return self.proj_mouse(out)

    def _keyboard(self, x, f, s, keyboard, dt, cos, sin, frame_mask, cache_k, cache_v, plan) -> Tensor:
        emb = self.keyboard_embed(keyboard.to(dt))  # [B, F, T, hidden] (per video frame, then grouped)
        kv = self.keyboard_attn_kv(rearrange(emb, "b f t c -> b f (t c)"))  # [B, F, 2*Hk*Dk]
        k, v = rearrange(kv, "b f (two h d) -> two b h f d", two=2, h=self.heads)  # each [B, Hk, F, Dk]
        q = rearrange(self.mouse_attn_q(x.to(dt)), "b (f s) (h d) -> b h f s d", f=f, h=self.heads)
        q = apply_rope(self.key_attn_q_norm(q), cos[:, None], sin[:, None]).to(dt)  # [B, Hk, F, S, Dk]
        q = rearrange(q, "b h f s d -> b h (f s) d")
        k = apply_rope(self.key_attn_k_norm(k), cos, sin).to(dt)
        if cache_k is None:
            mask = None if frame_mask is None else frame_mask.repeat_interleave(s, 0)  # [F*S, F]
            out = attention(q, k, v, mask)  # [B, Hk, F*S, Dk]
        else:
            k, v = write_and_read(cache_k, cache_v, k, v, plan.action_runs, plan.action_valid, 1)
            out = attention(q, k, v)
        return self.proj_keyboard(rearrange(out, "b h l d -> b l (h d)"))  # [B, F*S, D]


def action_rope(cfg: ActionConfig, start_frame: int, num_frames: int, device) -> dict:
    """Action RoPE cos/sin [F, Dh/2] for the mouse and keyboard heads (computed once per forward)."""
    rope_dim = cfg.mouse_qk_dim_list[0]  # the official tables are built from mouse_qk_dim_list

    def table(hidden: int):
        return rope_1d(hidden // cfg.heads_num, rope_dim, start_frame, num_frames, device, cfg.rope_theta)

    return dict(mouse=table(cfg.mouse_hidden_dim), keyboard=table(cfg.keyboard_hidden_dim))


def check_action_inputs(
    cfg: Optional[ActionConfig], b: int, f: int, mouse: Optional[Tensor], keyboard: Optional[Tensor]
) -> None:
    """Raise ValueError unless the windowed actions fit the action config and the latent frames."""
    if cfg is None or not cfg.blocks:
        if mouse is not None or keyboard is not None:
            raise ValueError("this model has no action module; pass mouse=None and keyboard=None")
        return
    t = cfg.vae_time_compression_ratio * cfg.windows_size
    for name, on, arr, c in (
        ("mouse", cfg.enable_mouse, mouse, cfg.mouse_dim_in),
        ("keyboard", cfg.enable_keyboard, keyboard, cfg.keyboard_dim_in),
    ):
        if on and (arr is None or tuple(arr.shape) != (b, f, t, c)):
            got = None if arr is None else tuple(arr.shape)
            raise ValueError(f"{name} windows must be [B, F, {t}, {c}] = {(b, f, t, c)}, got {got}")
        if not on and arr is not None:
            raise ValueError(f"this model has no {name} input; pass {name}=None")

"""Rotary position embeddings, computed from integer positions on the fly (no table, no length cap).

Both RoPEs of Matrix-Game 2.0 rotate adjacent pairs (x[2i], x[2i+1]) by an angle pos * freq_i:
(a + ib)(cos + i sin). Angles are computed in float64, cos/sin kept in fp32, the rotation done in fp32 and
cast back to the input dtype.

- Self-attention (reference §4.5): head dim d, c = d/2 pairs split [c - 2(c//3), c//3, c//3] over
  (time, height, width); freq_i = 10000^(-2i / (2 * pairs_axis)); time = absolute latent-frame index.
- Action module (reference §5.2): the first `rope_dim` head dims rotate with theta 256 by the absolute
  latent-frame index; the other dims are left alone (h and w positions are 0 in the official table).
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def _freqs(pairs: int, theta: float, device) -> Tensor:
    """freq_i = theta^(-2i / (2 * pairs)), float64 [pairs]."""
    return theta ** (-torch.arange(0, 2 * pairs, 2, dtype=torch.float64, device=device) / (2 * pairs))


def rope_3d(head_dim: int, start_frame: int, f: int, h: int, w: int, device, theta: float = 10000.0):
    """cos, sin for tokens in (f, h, w) order: each fp32 [f*h*w, head_dim // 2]."""
    c = head_dim // 2
    pt, ph = c - 2 * (c // 3), c // 3
    pos_t = torch.arange(start_frame, start_frame + f, dtype=torch.float64, device=device)
    pos_h = torch.arange(h, dtype=torch.float64, device=device)
    pos_w = torch.arange(w, dtype=torch.float64, device=device)
    ang_t = torch.outer(pos_t, _freqs(pt, theta, device))  # [f, pt]
    ang_h = torch.outer(pos_h, _freqs(ph, theta, device))  # [h, ph]
    ang_w = torch.outer(pos_w, _freqs(ph, theta, device))  # [w, ph]
    ang = torch.cat(
        [
            ang_t[:, None, None].expand(f, h, w, pt),
            ang_h[None, :, None].expand(f, h, w, ph),
            ang_w[None, None, :].expand(f, h, w, ph),
        ],
        dim=-1,
    ).reshape(f * h * w, c)  # [L, c]
    return ang.cos().float(), ang.sin().float()


def rope_1d(head_dim: int, rope_dim: int, start_frame: int, f: int, device, theta: float = 256.0):
    """Action RoPE cos, sin: fp32 [f, head_dim // 2]; pairs past rope_dim // 2 get angle 0."""
    pos = torch.arange(start_frame, start_frame + f, dtype=torch.float64, device=device)
    ang = torch.zeros(f, head_dim // 2, dtype=torch.float64, device=device)
    ang[:, : rope_dim // 2] = torch.outer(pos, _freqs(rope_dim // 2, theta, device))
    return ang.cos().float(), ang.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent pairs of the last axis. x: [..., D]; cos, sin broadcastable to [..., D/2]. fp32 out."""
    a, b = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # each [..., D/2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)  # [..., D]

"""The one attention dispatch of the model: PyTorch SDPA (flash / memory-efficient / math kernels).

Layout everywhere: q [N, H, Lq, D], k and v [N, H, Lk, D]; mask None or bool [Lq, Lk] (True = attend).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Softmax attention with scale 1/sqrt(D) in q's dtype (k, v are cast to it). Returns [N, H, Lq, D]."""
    return F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask)

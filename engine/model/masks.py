"""Block-causal, local-window attention masks of the full-sequence (training) path (reference §4.6).

Frames are grouped in blocks of `frames_per_block` counted from the first frame of the sequence. A query in
a block may see every frame up to the end of its block, back to `local_attn_size - sink` frames before that
end (all of them when `local_attn_size` is -1), plus the first `sink` frames, plus itself:
    allow(q, kv) = (end[q] - (local_attn_size - sink) <= kv < end[q]) or kv < min(sink, end[q]) or q == kv
(the window holds `local_attn_size` frames in all, sink included, like the streaming cache).
With sink 0 this is exactly the official FlexAttention rule, at frame granularity for the action module and
expanded to S tokens per frame for self-attention. Masks are bool, True = attend.
"""

from __future__ import annotations

import torch


def frame_mask(
    num_frames: int,
    frames_per_block: int,
    local_attn_size: int,
    sink: int = 0,
    diagonal: bool = True,
    device=None,
) -> torch.Tensor:
    """Frame-level mask [F, F]; `diagonal` adds q == kv at frame level (the action-module rule)."""
    idx = torch.arange(num_frames, device=device)
    end = (idx // frames_per_block + 1) * frames_per_block  # [F] frame where each query's block ends
    q_end, kv = end[:, None], idx[None, :]
    allow = kv < q_end
    if local_attn_size != -1:
        allow = allow & (kv >= q_end - (local_attn_size - sink))
    if sink > 0:
        allow = allow | ((kv < sink) & (kv < q_end))
    if diagonal:
        allow = allow | torch.eye(num_frames, dtype=torch.bool, device=device)
    return allow


def token_mask(frames: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """Self-attention mask [F*S, F*S] from a frame mask [F, F] built with diagonal=False; adds q == kv."""
    mask = frames.repeat_interleave(tokens_per_frame, 0).repeat_interleave(tokens_per_frame, 1)  # [F*S, F*S]
    return mask | torch.eye(mask.shape[0], dtype=torch.bool, device=mask.device)


def query_frame_mask(frames: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """Keyboard mask [F*S, F]: every token of a frame attends the keyboard frames its frame may see."""
    return frames.repeat_interleave(tokens_per_frame, 0)  # [F*S, F]

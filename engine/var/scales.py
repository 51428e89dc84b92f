"""Scale schedules for next-scale prediction: tuples of (h, w) token maps, coarse to fine.

The doom preset is 256x144 pixels; the tokenizer downsamples by 16 to a 9x16 latent, so the last scale is
(9, 16) and the earlier ones keep roughly the 9:16 aspect ratio:

    step  0      1      2      3      4      5       6
    map   1x1    2x2    3x4    4x6    5x9    7x12    9x16      L = 314 tokens, K = 7 steps

Tokens are laid out step after step, row-major inside a step (the flat index of token (i, j) of step s is
`begin[s] + i * w_s + j`).
"""

from __future__ import annotations

import torch

Scales = tuple[tuple[int, int], ...]

DOOM_SCALES: Scales = ((1, 1), (2, 2), (3, 4), (4, 6), (5, 9), (7, 12), (9, 16))


def check_scales(scales: Scales) -> None:
    """Raise ValueError unless `scales` is a non-empty tuple of positive (h, w) pairs that never shrink."""
    if not scales or any(len(s) != 2 or s[0] < 1 or s[1] < 1 for s in scales):
        raise ValueError(f"scales must be (h, w) pairs of positive ints, got {scales=}")
    hs, ws = [s[0] for s in scales], [s[1] for s in scales]
    if hs != sorted(hs) or ws != sorted(ws):
        raise ValueError(f"scales must not shrink from one step to the next, got {scales=}")


def token_counts(scales: Scales) -> list[int]:
    """Tokens per step, h * w."""
    return [h * w for h, w in scales]


def begin_ends(scales: Scales) -> list[tuple[int, int]]:
    """[begin, end) of every step in the flat token sequence."""
    out, b = [], 0
    for n in token_counts(scales):
        out.append((b, b + n))
        b += n
    return out


def seq_len(scales: Scales) -> int:
    """L, the total number of tokens."""
    return sum(token_counts(scales))


def step_ids(scales: Scales) -> torch.Tensor:
    """Step index of every token: long [L]."""
    return torch.cat([torch.full((n,), s, dtype=torch.long) for s, n in enumerate(token_counts(scales))])


def block_causal_bias(scales: Scales, beg: int, end: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive attention bias for queries [beg, end) over keys [0, end): 0 where the key's step is not
    later than the query's step, -inf elsewhere (bidirectional inside a step, causal across steps).

    Returns [end - beg, end]."""
    d = step_ids(scales)
    allowed = d[beg:end, None] >= d[None, :end]  # [Lq, Lk]
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, float("-inf"))


def phi_index(num_steps: int, num_phi: int) -> list[int]:
    """Which shared refinement conv (phi) each step uses, as in VAR's PhiPartiallyShared: phi k sits at tick
    linspace(1/(3n), 1 - 1/(3n), n)[k] and step s uses the tick nearest to s / (K - 1)."""
    if num_phi == 1:
        return [0] * num_steps
    ticks = torch.linspace(1 / 3 / num_phi, 1 - 1 / 3 / num_phi, num_phi, dtype=torch.float64)
    out = []
    for s in range(num_steps):
        r = s / (num_steps - 1) if num_steps > 1 else 0.0
        out.append(int(torch.argmin((ticks - r).abs()).item()))
    return out

"""A long session: 400 blocks (1200 latent frames, past the official 1024-frame RoPE table) with flat memory,
and the last block still equal to a full-sequence forward at absolute positions."""

from __future__ import annotations

import resource

import torch

from engine.actions import OFFICIAL, gather_windows
from tests._model_helpers import (
    one_thread,  # noqa: F401 (autouse fixture)
    tiny_model,
)

BLOCKS = 400


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def test_400_blocks_flat_memory_and_exact_past_1024():
    model = tiny_model("tiny")
    cfg = model.cfg
    nfpb, h, w = cfg.num_frame_per_block, 4, 8
    g = torch.Generator().manual_seed(0)
    n = BLOCKS * nfpb
    keys = (torch.rand(1, 1 + 4 * (n - 1), 4, generator=g) > 0.5).float()
    mouse = torch.randn(1, 1 + 4 * (n - 1), 2, generator=g)
    context = torch.randn(1, 17, cfg.image_context_dim, generator=g)
    cond = torch.randn(1, nfpb, cfg.in_dim - cfg.out_dim, h, w, generator=g)  # same cond every block
    # blocks kept for the final check: self-attention and the mouse attention each reach one block back per
    # layer, so the last block depends on num_layers + action layers earlier blocks
    keep = cfg.num_layers + len(model.action_layers) + 1
    clean_tail, t_step = [], torch.full((1, nfpb), 713.9794)
    cache = model.new_cache(1, h, w, "cpu", torch.float32)
    with torch.no_grad():
        for k in range(BLOCKS):
            s = k * nfpb
            kb = gather_windows(keys, 0, s, nfpb, OFFICIAL)  # [1, 3, 12, 4]
            ms = gather_windows(mouse, 0, s, nfpb, OFFICIAL)
            noisy = torch.randn(1, nfpb, cfg.out_dim, h, w, generator=g)
            out = model(noisy, cond, t_step, context, ms, kb, cache=cache, start_frame=s)
            clean = torch.randn(1, nfpb, cfg.out_dim, h, w, generator=g)
            if k < BLOCKS - 1:
                model(clean, cond, torch.zeros(1, nfpb), None, ms, kb, cache=cache, start_frame=s)
                clean_tail = (clean_tail + [clean])[-(keep - 1) :]
            if k == 0:
                storage = [(t.data_ptr(), t.shape) for t in cache.tensors()]
                nbytes = cache.nbytes()
            if k == 20:
                rss = _rss_mib()
        assert [(t.data_ptr(), t.shape) for t in cache.tensors()] == storage
        assert cache.nbytes() == nbytes and cache.end_frame == n
        assert _rss_mib() - rss < 32, "memory grew during the session"
        # the last block (frames 1197..1199) against a full forward over the last `keep` blocks
        s0 = (BLOCKS - keep) * nfpb
        x = torch.cat(clean_tail + [noisy], dim=1)  # [1, keep*3, C, h, w]
        t = torch.cat([torch.zeros(1, x.shape[1] - nfpb), t_step], dim=1)
        ref = model(
            x, cond.repeat(1, keep, 1, 1, 1), t, context, gather_windows(mouse, 0, s0, x.shape[1], OFFICIAL),
            gather_windows(keys, 0, s0, x.shape[1], OFFICIAL), start_frame=s0,
        )[:, -nfpb:]  # fmt: skip
    assert n > 1024 and ref.abs().mean() > 0.1
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)

"""Streaming (ring-buffer KV cache) forward == full-sequence block-causal forward.

The session protocol per block: N denoising passes at the block's start frame, then a clean context pass at
t = 0 that overwrites the cache slots. So after block k the cache holds clean K/V for frames < 3(k+1), and a
denoising pass of block k must equal the full forward over [clean frames 0 .. 3k-1, noisy block k] with
t = 0 for the clean frames and t_k for the block.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests._model_helpers import (
    frames,
    one_thread,  # noqa: F401 (autouse fixture)
    tiny_inputs,
    tiny_model,
)

STEPS = (1000.0, 908.8427, 713.9794)


def _stream_vs_full(preset: str, batch: int, blocks: int, check: tuple[int, ...], **changes) -> float:
    model = tiny_model(preset)
    model.cfg = dataclasses.replace(model.cfg, **changes)  # only window sizes: the masks and caches read them
    nfpb = model.cfg.num_frame_per_block
    inp = tiny_inputs(model, batch, blocks * nfpb)
    g = inp["generator"]
    cache = model.new_cache(batch, *inp["hw"], "cpu", torch.float32)
    worst = 0.0
    with torch.no_grad():
        for k in range(blocks):
            s, e = k * nfpb, (k + 1) * nfpb
            for step in STEPS:
                noisy = torch.randn(batch, nfpb, model.cfg.out_dim, *inp["hw"], generator=g)
                t = torch.full((batch, nfpb), step)
                out = model(
                    noisy, frames(inp, "cond", s, e), t, inp["context"], frames(inp, "mouse", s, e),
                    frames(inp, "keyboard", s, e), cache=cache, start_frame=s,
                )  # fmt: skip
                if k not in check:
                    continue
                x_full = torch.cat([inp["clean"][:, :s], noisy], dim=1)  # [B, e, C, h, w]
                t_full = torch.cat([torch.zeros(batch, s), t], dim=1)  # [B, e]
                ref = model(
                    x_full, frames(inp, "cond", 0, e), t_full, inp["context"], frames(inp, "mouse", 0, e),
                    frames(inp, "keyboard", 0, e),
                )[:, s:]  # fmt: skip
                assert ref.abs().mean() > 0.1
                torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
                worst = max(worst, (out - ref).abs().max().item())
            model(
                inp["clean"][:, s:e],
                frames(inp, "cond", s, e),
                torch.zeros(batch, nfpb),
                None,
                frames(inp, "mouse", s, e),
                frames(inp, "keyboard", s, e),
                cache=cache,
                start_frame=s,
            )  # fmt: skip (context pass: no image context needed once the cross K/V are cached)
    return worst


def test_stream_equals_full_universal_rolled():
    # window 6 frames = 2 blocks: the ring wraps from block 2 on; 8 blocks roll it 3 more times
    _stream_vs_full("tiny", batch=1, blocks=8, check=(0, 1, 2, 7))


def test_stream_equals_full_templerun_no_mouse():
    _stream_vs_full("tiny-templerun", batch=1, blocks=7, check=(1, 6))


def test_stream_equals_full_gta_window4_batch2():
    # window 4 frames: from block 1 on a block sees 1 previous frame; slots wrap mid-block
    _stream_vs_full("tiny-gta-drive", batch=2, blocks=7, check=(0, 1, 6))


def test_stream_equals_full_with_sink_frame():
    # our extension of the official mask: the first `sink_size` frames stay visible (window 7 = 1 sink + 6)
    _stream_vs_full("tiny", batch=1, blocks=6, check=(1, 2, 5), sink_size=1, local_attn_size=7)


def test_stream_detects_wrong_mask():
    """The comparison must be able to fail: a full forward with a wider window differs once rolled."""
    model = tiny_model("tiny")
    inp = tiny_inputs(model, 1, 9)
    t = torch.zeros(1, 9)
    args = (inp["clean"], inp["cond"], t, inp["context"], inp["mouse"], inp["keyboard"])
    with torch.no_grad():
        ref = model(*args)
        model.cfg = dataclasses.replace(model.cfg, local_attn_size=9)
        wide = model(*args)
    assert (ref[:, :6] - wide[:, :6]).abs().max() < 1e-5  # blocks 0, 1 see the same frames
    assert (ref[:, 6:] - wide[:, 6:]).abs().max() > 1e-3  # block 2 lost frames 0..2 in the 6-frame window


def test_cache_rejects_out_of_order_calls():
    model = tiny_model("tiny")
    inp = tiny_inputs(model, 1, 6)
    cache = model.new_cache(1, *inp["hw"], "cpu", torch.float32)
    args = (inp["clean"][:, 3:6], inp["cond"][:, 3:6], torch.zeros(1, 3), inp["context"])
    with pytest.raises(ValueError, match="start_frame=0"):
        model(*args, inp["mouse"][:, 3:6], inp["keyboard"][:, 3:6], cache=cache, start_frame=3)


def test_bad_action_shapes_raise():
    model = tiny_model("tiny-templerun")
    inp = tiny_inputs(model, 1, 3)
    t = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="no mouse input"):
        model(inp["clean"], inp["cond"], t, inp["context"], torch.zeros(1, 3, 12, 2), inp["keyboard"])
    with pytest.raises(ValueError, match=r"keyboard windows must be \[B, F, 12, 7\]"):
        model(inp["clean"], inp["cond"], t, inp["context"], None, inp["keyboard"][..., :4])


def test_cross_kv_once_per_session_and_reset_reuses_buffers():
    model = tiny_model("tiny")
    inp = tiny_inputs(model, 1, 6)
    calls = []
    model.img_emb.register_forward_hook(lambda *a: calls.append(1))
    cache = model.new_cache(1, *inp["hw"], "cpu", torch.float32)

    def session():
        outs = []
        with torch.no_grad():
            for s in (0, 3):
                for t in (900.0, 0.0):
                    outs.append(
                        model(
                            inp["clean"][:, s : s + 3],
                            frames(inp, "cond", s, s + 3),
                            torch.full((1, 3), t),
                            inp["context"],
                            frames(inp, "mouse", s, s + 3),
                            frames(inp, "keyboard", s, s + 3),
                            cache=cache,
                            start_frame=s,
                        )  # fmt: skip
                    )
        return torch.stack(outs)

    first = session()
    assert len(calls) == 1  # image context embedded and projected to K/V on the first call only
    ptrs = [t.data_ptr() for t in cache.tensors()]
    cache.reset()
    torch.testing.assert_close(session(), first, rtol=0, atol=0)
    assert len(calls) == 2 and [t.data_ptr() for t in cache.tensors()] == ptrs

"""Model parts against the reference formulas: RoPE (self-attention and action), masks, action windows,
time embedding, unpatchify order, the weight-less RMSNorm quirk, init, autograd and precision."""

from __future__ import annotations

import torch

from engine.actions import OFFICIAL, gather_windows, window_indices
from engine.config import load_preset
from engine.model.causal_wan import CausalWanModel
from engine.model.layers import sinusoid
from engine.model.masks import frame_mask, token_mask
from engine.model.rope import apply_rope, rope_1d, rope_3d
from tests._model_helpers import (
    one_thread,  # noqa: F401 (autouse fixture)
    tiny_inputs,
    tiny_model,
)


def _official_rope(x: torch.Tensor, f: int, h: int, w: int, start: int, table_len: int) -> torch.Tensor:
    """Reference §4.5: complex128 polar tables split [c - 2(c//3), c//3, c//3]; x: [B, L, N, D]."""
    d = x.shape[-1]

    def params(dim):
        ang = torch.outer(
            torch.arange(table_len).double(), 1.0 / 10000 ** (torch.arange(0, dim, 2).double() / dim)
        )
        return torch.polar(torch.ones_like(ang), ang)

    c = d // 2
    table = torch.cat([params(d - 4 * (d // 6)), params(2 * (d // 6)), params(2 * (d // 6))], dim=1)
    ft, fh, fw = table.split([c - 2 * (c // 3), c // 3, c // 3], dim=1)
    freqs = torch.cat(
        [
            ft[start : start + f].view(f, 1, 1, -1).expand(f, h, w, -1),
            fh[:h].view(1, h, 1, -1).expand(f, h, w, -1),
            fw[:w].view(1, 1, w, -1).expand(f, h, w, -1),
        ],
        dim=-1,
    ).reshape(f * h * w, 1, -1)
    xc = torch.view_as_complex(x.double().reshape(*x.shape[:3], -1, 2))
    return torch.view_as_real(xc * freqs).flatten(3)


def test_rope_3d_matches_reference_and_has_no_cap():
    torch.manual_seed(0)
    f, h, w, d = 3, 2, 3, 128
    for start in (0, 5, 1100):  # 1100 > the official 1024-entry table
        x = torch.randn(2, f * h * w, 4, d)  # [B, L, N, D]
        ref = _official_rope(x, f, h, w, start, table_len=2048)
        cos, sin = rope_3d(d, start, f, h, w, "cpu")
        ours = apply_rope(x.transpose(1, 2), cos, sin).transpose(1, 2)  # model layout [B, N, L, D]
        torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)


def test_action_rope_matches_reference():
    torch.manual_seed(0)
    start, f, d = 1100, 3, 64
    x = torch.randn(5, f, 16, d)  # [B*S, T, H, D] as in the official module
    pos = torch.arange(start, start + f).float()
    ang = torch.outer(pos, 1.0 / 256 ** (torch.arange(0, 8, 2).float() / 8))  # [T, 4]
    cos = torch.cat([ang.cos().repeat_interleave(2, 1), torch.ones(f, d - 8)], 1)[
        None, :, None
    ]  # [1, T, 1, D]
    sin = torch.cat([ang.sin().repeat_interleave(2, 1), torch.zeros(f, d - 8)], 1)[None, :, None]
    re, im = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)
    rot = torch.stack([-im, re], -1).flatten(3)  # rotate_half
    ref = x * cos + rot * sin
    c, s = rope_1d(d, 8, start, f, "cpu")
    ours = apply_rope(x, c[:, None], s[:, None])
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours[..., 8:], x[..., 8:])  # dims past the first 8 never rotate


def test_masks_match_reference_rule():
    f, s, nfpb = 9, 2, 3
    for local in (6, 4, 1, -1):
        n = f * s
        ends = (torch.arange(n) // (s * nfpb) + 1) * s * nfpb  # token where each query's block ends
        q, kv = torch.arange(n)[:, None], torch.arange(n)[None, :]
        ref = kv < ends[:, None]
        if local != -1:
            ref = ref & (kv >= ends[:, None] - local * s)
        ref = ref | (q == kv)
        assert torch.equal(token_mask(frame_mask(f, nfpb, local, diagonal=False), s), ref)
        fe = (torch.arange(f) // nfpb + 1) * nfpb
        fq, fk = torch.arange(f)[:, None], torch.arange(f)[None, :]
        fref = (fk < fe[:, None]) & ((fk >= fe[:, None] - local) if local != -1 else True) | (fq == fk)
        assert torch.equal(frame_mask(f, nfpb, local), fref)


def test_action_window_indices_reference_rule():
    n_latent = 6
    video = 1 + 4 * (n_latent - 1)
    padded = [0] * 12 + list(range(video))  # front-padded with 12 copies of frame 0
    idx = window_indices(0, n_latent, OFFICIAL)
    for f in (0, 1, 2, 5):
        assert idx[f].tolist() == padded[4 * f : 4 * f + 12]
    assert idx[0].tolist() == [0] * 12 and idx[1].tolist() == [0] * 9 + [1, 2, 3]
    assert idx[5].tolist() == list(range(8, 20))  # frames [4f - 12, 4f): frame 20 itself excluded
    acts = torch.arange(video, dtype=torch.float32)[None, :, None]  # [1, N, 1] action = its frame index
    assert torch.equal(
        gather_windows(acts, 0, 2, 1, OFFICIAL)[0, 0, :, 0], torch.tensor(padded[8:20], dtype=torch.float32)
    )


def test_sinusoid_cos_first_float64():
    e = sinusoid(torch.tensor([0.0, 500.0]), 8)
    assert e.dtype == torch.float64
    assert torch.equal(e[0], torch.tensor([1.0] * 4 + [0.0] * 4, dtype=torch.float64))
    w = 10000.0 ** (-torch.arange(4, dtype=torch.float64) / 4)
    torch.testing.assert_close(e[1], torch.cat([torch.cos(500 * w), torch.sin(500 * w)]))


def test_unpatchify_channel_order():
    model = tiny_model("tiny")
    inp = tiny_inputs(model, 1, 3)
    seen = {}
    model.head.register_forward_hook(lambda m, a, out: seen.setdefault("out", out))
    with torch.no_grad():
        v = model(inp["clean"], inp["cond"], torch.zeros(1, 3), inp["context"], inp["mouse"], inp["keyboard"])
    head = seen["out"]  # [B, F, S, 64] with S = (h/2) * (w/2) tokens in (h, w) order
    gw = v.shape[-1] // 2
    for f, i, j, q, r, c in [(0, 0, 0, 0, 0, 0), (2, 1, 3, 1, 0, 5), (1, 0, 2, 1, 1, 15)]:
        assert v[0, f, c, 2 * i + q, 2 * j + r] == head[0, f, i * gw + j, (q * 2 + r) * 16 + c]


def test_action_norm_weight_is_ignored():
    model = tiny_model("tiny")
    inp = tiny_inputs(model, 1, 3)
    args = (
        inp["clean"],
        inp["cond"],
        torch.full((1, 3), 600.0),
        inp["context"],
        inp["mouse"],
        inp["keyboard"],
    )
    with torch.no_grad():
        ref = model(*args)
        for name, p in model.named_parameters():
            if "action_model" in name and name.endswith("norm.weight"):
                p.fill_(7.0)
        assert torch.equal(model(*args), ref)
        model.blocks[0].self_attn.norm_q.weight.fill_(7.0)  # the attention RMSNorm does use its weight
        assert not torch.allclose(model(*args), ref)


def test_official_init_zeroes_output_projections():
    model = CausalWanModel(load_preset("tiny").model)
    for name, p in model.named_parameters():
        if name.endswith(("proj_mouse.weight", "proj_keyboard.weight", "head.head.weight")):
            assert p.abs().max() == 0, name


def test_training_path_autograd_and_bf16_autocast():
    model = tiny_model("tiny").train()
    inp = tiny_inputs(model, 2, 6)
    args = (inp["clean"], inp["cond"], torch.rand(2, 6) * 1000, inp["context"], inp["mouse"], inp["keyboard"])
    ref = model(*args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*args)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (out - ref).norm() / ref.norm() < 0.05
    out.square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in (
        "blocks.0.action_model.mouse_mlp.0.weight", "blocks.1.action_model.keyboard_embed.0.weight",
        "blocks.2.self_attn.q.weight", "img_emb.proj.1.weight", "time_embedding.0.weight",
        "patch_embedding.weight",
    ):  # fmt: skip
        assert grads[name] is not None and grads[name].abs().sum() > 0, name


def test_bf16_model_streaming_close_to_fp32():
    model = tiny_model("tiny")
    inp = tiny_inputs(model, 1, 3)
    args = (
        inp["clean"],
        inp["cond"],
        torch.full((1, 3), 900.0),
        inp["context"],
        inp["mouse"],
        inp["keyboard"],
    )
    with torch.no_grad():
        ref = model(*args)
        model.to(torch.bfloat16)
        cache = model.new_cache(1, *inp["hw"], "cpu", torch.bfloat16)
        out = model(*args, cache=cache, start_frame=0)
    assert out.dtype == torch.float32 and cache.self_k.dtype == torch.bfloat16
    assert (out - ref).norm() / ref.norm() < 0.05

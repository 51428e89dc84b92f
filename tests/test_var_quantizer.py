"""Multi-scale residual VQ: encode/decode consistency, non-mutating step updates, schedules."""

import torch

from engine.var.config import TokenizerConfig
from engine.var.quantizer import MultiScaleQuantizer
from engine.var.scales import DOOM_SCALES, begin_ends, block_causal_bias, phi_index, seq_len
from engine.var.vqvae import VQVAE


def test_doom_schedule():
    assert DOOM_SCALES[-1] == (9, 16) and seq_len(DOOM_SCALES) == 314
    assert begin_ends(DOOM_SCALES)[-1] == (170, 314)
    assert phi_index(10, 4) == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]  # VAR's table for its 10 steps
    bias = block_causal_bias(((1, 1), (1, 2)), 1, 3)
    assert bias.shape == (2, 3) and torch.isfinite(bias).all()  # step 1 sees step 0 and itself
    assert torch.isinf(block_causal_bias(((1, 1), (1, 2)), 0, 3)[0, 1:]).all()


def test_encode_decode_and_teacher_inputs():
    torch.manual_seed(0)
    q = MultiScaleQuantizer(32, 4, ((1, 1), (2, 2), (3, 4)), num_phi=2).double()
    torch.nn.init.normal_(q.embedding.weight)
    f = torch.randn(2, 4, 3, 4, dtype=torch.float64)
    idx = q.encode(f)
    assert [tuple(r.shape) for r in idx] == [(2, 1), (2, 4), (2, 12)]
    f_hat = q.idx_to_fhat(idx)
    assert (f_hat - f).pow(2).mean() < f.pow(2).mean()  # the residual pyramid explains part of f
    # sequential non-mutating updates == idx_to_fhat, and their inputs == teacher_inputs
    acc, ins = torch.zeros_like(f), []
    for si, r in enumerate(idx):
        acc, x = q.next_input(si, acc, r)
        ins.append(x)
    assert torch.allclose(acc, f_hat, atol=1e-12)
    assert ins[-1] is None
    assert torch.allclose(torch.cat(ins[:-1], 1), q.teacher_inputs(idx), atol=1e-12)


def test_next_input_does_not_mutate():
    q = MultiScaleQuantizer(8, 4, ((1, 1), (2, 2))).double()
    f_hat = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    copy = f_hat.clone()
    q.next_input(0, f_hat, torch.tensor([[3]]))
    assert torch.equal(f_hat, copy)


def test_vqvae_shapes_tiny():
    cfg = TokenizerConfig(
        height=32, width=64, scales=((1, 1), (2, 4), (4, 8)), vocab=16, cvae=4, ch=16, ch_mult=(1, 2)
    )
    vae = VQVAE(cfg)
    x = torch.rand(2, 3, 32, 64) * 2 - 1
    y, loss, usage = vae(x)
    assert y.shape == x.shape and loss.ndim == 0 and usage.sum() == 2 * (1 + 8 + 32)
    idx = vae.img_to_idx(x)
    assert vae.idx_to_img(idx).shape == x.shape

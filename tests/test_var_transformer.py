"""VAR transformer: teacher forcing == KV-cached stepwise == multi-step verification slices; truncation;
a broken mask must be caught (weights re-randomised so the blocks are far from identity)."""

import pytest
import torch

import engine.var.transformer as tr
from engine.var.sample import cfg_batch, dup
from engine.var.scales import block_causal_bias
from engine.var.testing import tiny_trio


def _pyramid(quant, batch, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, quant.vocab, (batch, h * w), generator=g) for h, w in quant.scales]


def _stepwise(model, quant, label, idx):
    """Logits of every step, one cached forward per step: list of [2B, l, V]."""
    cond = cfg_batch(model, label)
    cache = model.new_cache(2 * label.shape[0])
    ins = [None] + list(quant.teacher_inputs(idx).split([h * w for h, w in quant.scales[1:]], 1))
    return (
        [model.step_logits(cond, dup(ins[s]), s, s + 1, cache)[0] for s in range(quant.num_steps)],
        ins,
        cache,
    )


def test_teacher_forcing_equals_stepwise():
    target, _, quant = tiny_trio()
    label = torch.tensor([0, 2])
    idx = _pyramid(quant, 2, 0)
    full = target(label, quant.teacher_inputs(idx))  # [B, L, V], conditional rows only
    steps, _, _ = _stepwise(target, quant, label, idx)
    assert torch.allclose(full, torch.cat([s[:2] for s in steps], 1), atol=1e-9)


@pytest.mark.parametrize("k,g", [(0, 2), (1, 1), (1, 3), (2, 2), (0, 4)])
def test_verification_slice_equals_stepwise(k, g):
    target, _, quant = tiny_trio()
    label = torch.tensor([1, 0])
    idx = _pyramid(quant, 2, 1)
    steps, ins, _ = _stepwise(target, quant, label, idx)
    cond = cfg_batch(target, label)
    cache = target.new_cache(4)
    for s in range(k):
        target.step_logits(cond, dup(ins[s]), s, s + 1, cache)
    sel = [x for x in ins[max(k, 1) : k + g] if x is not None]
    out = target.step_logits(cond, dup(torch.cat(sel, 1) if sel else None), k, k + g, cache)
    for s, o in zip(range(k, k + g), out, strict=True):
        assert torch.allclose(o, steps[s], atol=1e-9), f"step {s} differs"


def test_truncate_then_continue_equals_fresh():
    target, _, quant = tiny_trio()
    label = torch.tensor([2])
    idx, other = _pyramid(quant, 1, 2), _pyramid(quant, 1, 3)
    steps, ins, ref_cache = _stepwise(target, quant, label, idx)
    _, bad_ins, _ = _stepwise(target, quant, label, other)
    cond = cfg_batch(target, label)
    cache = target.new_cache(2)
    target.step_logits(cond, dup(torch.cat(ins[1:2], 1)), 0, 2, cache)  # steps 0, 1 (correct)
    target.step_logits(cond, dup(torch.cat(bad_ins[2:4], 1)), 2, 4, cache)  # steps 2, 3 from a wrong prefix
    cache.truncate(target.begin_ends[1][1])
    out = target.step_logits(cond, dup(torch.cat(ins[2:4], 1)), 2, 4, cache)
    assert torch.allclose(out[1], steps[3], atol=1e-9)
    for a, b in zip(cache.valid(), ref_cache.valid(), strict=True):
        assert torch.allclose(a, b, atol=1e-9)


def test_broken_mask_is_detected(monkeypatch):
    """Mutation check: causal inside a step (instead of bidirectional) must break T0."""
    target, _, quant = tiny_trio()
    label = torch.tensor([0])
    idx = _pyramid(quant, 1, 4)
    full = target(label, quant.teacher_inputs(idx))

    def leaky(scales, beg, end, dtype=torch.float32):
        bias = block_causal_bias(scales, beg, end, dtype)
        return bias + torch.full_like(bias, float("-inf")).triu(beg + 1)

    monkeypatch.setattr(tr, "block_causal_bias", leaky)
    broken = target(label, quant.teacher_inputs(idx))
    assert not torch.allclose(full, broken, atol=1e-6)


def test_cache_position_mismatch_raises():
    target, _, _ = tiny_trio()
    cond = cfg_batch(target, torch.tensor([0]))
    cache = target.new_cache(2)
    with pytest.raises(ValueError, match="KV cache holds"):
        target.step_logits(cond, dup(torch.zeros(1, 4, 4, dtype=torch.float64)), 1, 2, cache)

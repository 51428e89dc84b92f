"""Speculative decoding: greedy equality, exact distribution (chi-square with positive and negative
controls), and exact rollback of f_hat and both KV caches. Weights are re-randomised (engine.var.testing)."""

import itertools
import math

import pytest
import torch
from scipy.stats import chi2

from engine.var.sample import SampleConfig, cfg_batch, dup, sample, step_probs
from engine.var.speculative import SpecConfig, init_state, sample_speculative, spec_round
from engine.var.testing import tiny_trio

GREEDY = SampleConfig(cfg=1.5, greedy=True)


@pytest.mark.parametrize("gamma", [1, 2, 3, 9])
@pytest.mark.parametrize("batch", [1, 4])
def test_greedy_equals_target_greedy(gamma, batch):
    target, draft, quant = tiny_trio()
    label = torch.arange(batch) % 3
    ref = sample(target, quant, label, GREEDY)
    out = sample_speculative(target, draft, quant, label, GREEDY, SpecConfig(gamma=gamma))
    for s, (a, b) in enumerate(zip(ref.idx, out.idx, strict=True)):
        assert torch.equal(a, b), f"step {s} differs"
    assert torch.allclose(ref.f_hat, out.f_hat, atol=1e-12)
    k = quant.num_steps
    assert math.ceil(k / (gamma + 1)) <= out.stats.target_calls <= k
    assert sum(out.stats.steps_accepted) < k  # the random draft is rejected somewhere


@pytest.mark.parametrize("gamma", [1, 2, 3, 9])
def test_greedy_self_draft_accepts_everything(gamma):
    target, _, quant = tiny_trio()
    label = torch.tensor([0, 1, 2])
    ref = sample(target, quant, label, GREEDY)
    out = sample_speculative(target, target, quant, label, GREEDY, SpecConfig(gamma=gamma))
    assert all(torch.equal(a, b) for a, b in zip(ref.idx, out.idx, strict=True))
    k = quant.num_steps
    assert out.stats.target_calls == math.ceil(k / (gamma + 1))
    assert out.stats.steps_accepted == out.stats.steps_drafted  # every drafted step accepted
    assert out.stats.target_rows == 2 * 3 * target.L  # no target work wasted


def test_spec_until_hands_the_rest_to_the_target():
    target, draft, quant = tiny_trio()
    label = torch.tensor([1])
    ref = sample(target, quant, label, GREEDY)
    out = sample_speculative(target, draft, quant, label, GREEDY, SpecConfig(gamma=2, spec_until=2))
    assert all(torch.equal(a, b) for a, b in zip(ref.idx, out.idx, strict=True))
    assert sum(out.stats.steps_drafted[2:]) == 0


def _committed_cache(model, quant, label, idx, upto):
    """Fresh cache over committed steps < upto, one forward per step."""
    cond = cfg_batch(model, label)
    cache = model.new_cache(2 * label.shape[0])
    f = torch.zeros_like(quant.idx_to_fhat(idx[:1]))
    x = None
    for s in range(upto):
        model.step_logits(cond, dup(x), s, s + 1, cache)
        f, x = quant.next_input(s, f, idx[s])
    return cache


def test_rollback_restores_fhat_and_caches():
    target, draft, quant = tiny_trio()
    label = torch.tensor([0, 2])
    sc = SampleConfig(cfg=1.5)
    rejected = 0
    for seed in range(4):
        st = init_state(target, draft, quant, 2)
        tcond, dcond = cfg_batch(target, label), cfg_batch(draft, label)
        gd, ga = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(100 + seed)
        while st.k < quant.num_steps:
            k0 = st.k
            j = spec_round(st, target, draft, quant, tcond, dcond, sc, SpecConfig(gamma=3), gd, ga)
            rejected += j < min(k0 + 3, quant.num_steps - 1)
            # f_hat after the committed steps == a fresh sum over the committed token maps
            assert torch.allclose(st.fhats[st.k], quant.idx_to_fhat(st.idx), atol=1e-12)
            end = target.begin_ends[j][1]
            assert st.tcache.n == end and st.dcache.n <= end
            for model, cache in ((target, st.tcache), (draft, st.dcache)):
                upto = (
                    next(s for s, (b, e) in enumerate(model.begin_ends) if e == cache.n) + 1 if cache.n else 0
                )
                ref = _committed_cache(model, quant, label, st.idx, upto)
                for a, b in zip(cache.valid(), ref.valid(), strict=True):
                    assert torch.allclose(a, b, atol=1e-10)
    assert rejected > 1  # the test did exercise rollbacks


# ---- distribution test: 3 steps (1x1, 1x1, 1x2), V = 3 -> 3^4 = 81 joint outcomes -------------------------

DIST_SCALES = ((1, 1), (1, 1), (1, 2))


def _target_joint(target, quant, label, sc):
    """Exact P(r0, r1, r2a, r2b) for one label from teacher-forced target passes: [81]."""
    v = quant.vocab
    cond = cfg_batch(target, label[:1])
    probs = []
    for r0, r1 in itertools.product(range(v), repeat=2):
        idx = [torch.tensor([[r0]]), torch.tensor([[r1]]), torch.zeros(1, 2, dtype=torch.long)]
        ls = target.step_logits(cond, dup(quant.teacher_inputs(idx)), 0, 3)
        p = [step_probs(lg, s, 3, sc)[0] for s, lg in enumerate(ls)]  # [l, V] each
        for a, b in itertools.product(range(v), repeat=2):
            probs.append(p[0][0, r0] * p[1][0, r1] * p[2][0, a] * p[2][1, b])
    return torch.stack(probs)


def _codes(idx):
    v = 3
    return ((idx[0][:, 0] * v + idx[1][:, 0]) * v + idx[2][:, 0]) * v + idx[2][:, 1]


_ACCEPT0: list[list[int]] = []


@torch.no_grad()
def _chi2_pvalue(sampler, target, draft, quant, sc, n=8000, batch=8):
    label = torch.full((batch,), 1)
    expected = _target_joint(target, quant, label, sc) * n
    live = expected > 0  # top-k removes some outcomes entirely
    assert expected[live].min() >= 5, (
        f"configuration too peaky: min expected count {expected[live].min():.1f}"
    )
    counts = torch.zeros(81, dtype=torch.float64)
    gd, ga = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    acc0 = [0, 0]  # step-0 tokens accepted / drafted (step 0 is drafted in every first round)
    for _ in range(n // batch):
        out = sampler(gd, ga, label)
        counts += torch.bincount(_codes(out.idx), minlength=81).double()
        acc0[0] += out.stats.tokens_accepted[0]
        acc0[1] += out.stats.tokens_drafted[0]
    _ACCEPT0.append(acc0)
    assert counts[~live].sum() == 0, "sampled an outcome of probability zero"
    stat = ((counts[live] - expected[live]) ** 2 / expected[live]).sum().item()
    return chi2.sf(stat, df=int(live.sum()) - 1)


@pytest.fixture(scope="module")
def dist_models():
    torch.set_num_threads(1)
    return tiny_trio(scales=DIST_SCALES, vocab=3, cvae=4, num_classes=2, std=0.1, seed=8)


SAMPLING = [SampleConfig(cfg=1.0), SampleConfig(cfg=2.0, top_k=2)]


@pytest.mark.parametrize("sc", SAMPLING, ids=["cfg1", "cfg2-top2"])
def test_exact_speculative_matches_target_distribution(dist_models, sc):
    target, draft, quant = dist_models
    spec = SpecConfig(gamma=2)
    p = _chi2_pvalue(
        lambda gd, ga, lab: sample_speculative(target, draft, quant, lab, sc, spec, gd, ga),
        target,
        draft,
        quant,
        sc,
    )
    assert p > 1e-3, f"exact speculative sampler rejected by chi-square, p = {p:.2e}"
    # step-0 per-token acceptance must be sum_v min(p, q) (catches p, q made with different CFG/filters)
    with torch.no_grad():
        label = torch.tensor([1])
        pq = [
            step_probs(m.step_logits(cfg_batch(m, label), None, 0, 1)[0], 0, 3, sc)[0, 0]
            for m in (target, draft)
        ]
        beta = torch.minimum(*pq).sum().item()
    acc, n = _ACCEPT0[-1]
    assert abs(acc / n - beta) < 4 * math.sqrt(beta * (1 - beta) / n) + 1e-9, f"{acc / n=:.4f} vs {beta=:.4f}"


def test_direct_target_sampling_passes(dist_models):
    target, draft, quant = dist_models
    sc = SAMPLING[0]
    p = _chi2_pvalue(lambda gd, ga, lab: sample(target, quant, lab, sc, gd), target, draft, quant, sc)
    assert p > 1e-3


def test_always_accept_fails(dist_models):
    target, draft, quant = dist_models
    sc, spec = SAMPLING[0], SpecConfig(gamma=2, rule="always_accept")
    p = _chi2_pvalue(
        lambda gd, ga, lab: sample_speculative(target, draft, quant, lab, sc, spec, gd, ga),
        target,
        draft,
        quant,
        sc,
    )
    assert p < 1e-3, f"the always-accept rule should be caught, p = {p:.2e}"


def test_collaborative_endpoints():
    """switch = K is the target alone, switch = 0 the draft alone; in between the prefill is exact."""
    target, draft, quant = tiny_trio()
    label = torch.tensor([0, 1])
    k = quant.num_steps
    t_ref, d_ref = sample(target, quant, label, GREEDY), sample(draft, quant, label, GREEDY)
    from engine.var.sample import sample_collaborative

    assert all(
        torch.equal(a, b)
        for a, b in zip(
            sample_collaborative(target, draft, quant, label, GREEDY, k).idx, t_ref.idx, strict=True
        )
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            sample_collaborative(target, draft, quant, label, GREEDY, 0).idx, d_ref.idx, strict=True
        )
    )
    mid = sample_collaborative(target, draft, quant, label, GREEDY, 2)
    assert all(torch.equal(a, b) for a, b in zip(mid.idx[:2], t_ref.idx[:2], strict=True))
    assert mid.stats.target_calls == 2 and mid.stats.draft_calls == k - 2


def test_relaxed_with_zero_delta_equals_exact():
    """relaxed with delta 0 adds no neighbour mass: same tokens as the exact rule at the same seeds."""
    target, draft, quant = tiny_trio()
    label = torch.tensor([2])
    sc = SampleConfig(cfg=1.5)
    runs = []
    for rule in ("exact", "relaxed"):
        gd, ga = torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)
        runs.append(
            sample_speculative(target, draft, quant, label, sc, SpecConfig(2, rule, relax_delta=0.0), gd, ga)
        )
    assert all(torch.equal(a, b) for a, b in zip(runs[0].idx, runs[1].idx, strict=True))


def test_bad_rule_raises():
    target, draft, quant = tiny_trio()
    with pytest.raises(ValueError, match="unknown speculative rule"):
        sample_speculative(target, draft, quant, torch.tensor([0]), GREEDY, SpecConfig(rule="lossy"))

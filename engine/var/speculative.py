"""Speculative decoding for VAR: exact (lossless), greedy, and a relaxed LANTERN-style option.

A round from committed step k, with g = min(gamma, K - k):
1. draft: the draft samples steps k..k+g-1 (KV-cached, same CFG ramp and filtering as the target), keeping
   its probabilities q_s and the next-step inputs (area-downsampled f_hat);
2. verify: the target scores steps k..min(k+g, K-1) in ONE forward under the block-causal mask (queries
   [beg_k, end_last) over its cache [0, beg_k)); step k+g is the bonus step;
3. accept in step order: token i of step s is kept with prob min(1, p/q), else redrawn from
   norm(max(0, p - q)); the first step with any rejection (in any image: batch-minimum commit) is completed
   by those redraws and later draft steps are discarded; if all g steps pass, the bonus step is drawn from p;
4. roll back: f_hat is rebuilt from the saved copy before each committed step; both KV caches are truncated
   to the end of the last committed step (slots past it are overwritten later).
Shapes: label [B]; p, q [B, l, V]; token maps [B, l]; step inputs [B, l, Cv]; f_hat [B, Cv, h, w].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.var.quantizer import MultiScaleQuantizer
from engine.var.sample import (
    Decoded,
    SampleConfig,
    Stats,
    cfg_batch,
    draw,
    dup,
    new_fhat,
    run_model,
    step_probs,
)
from engine.var.transformer import VAR, KVCache

RULES = ("exact", "relaxed", "always_accept")  # always_accept: a deliberately wrong rule for negative tests


@dataclass(frozen=True)
class SpecConfig:
    gamma: int = 2  # draft steps per round
    rule: str = "exact"
    spec_until: int = 99  # speculate on steps < spec_until only; the target samples the rest alone
    relax_delta: float = 0.1  # relaxed: neighbour mass added to p(x) (LANTERN's delta)
    relax_k: int = 32  # relaxed: codebook neighbours considered


@dataclass
class SpecState:
    """Committed state after steps 0..k-1: token maps, f_hat before each step, each step's input."""

    k: int
    idx: list[torch.Tensor]  # k maps [B, l_s]
    fhats: list[torch.Tensor]  # k + 1 entries, fhats[s] = f_hat before step s
    inputs: list[torch.Tensor | None]  # k + 1 entries, inputs[s] = input of step s (None for s = 0)
    tcache: KVCache  # holds [0, beg_k)
    dcache: KVCache  # holds [0, beg_k) or [0, beg_{k-1}) after a bonus step
    stats: Stats


def init_state(target: VAR, draft: VAR, quant: MultiScaleQuantizer, batch: int) -> SpecState:
    f0 = new_fhat(quant, batch, quant.embedding.weight)
    return SpecState(
        0,
        [],
        [f0],
        [None],
        target.new_cache(2 * batch),
        draft.new_cache(2 * batch),
        Stats().init(quant.num_steps),
    )


def codebook_neighbours(quant: MultiScaleQuantizer, k: int) -> torch.Tensor:
    """Nearest codebook rows of every code, self excluded, nearest first: long [V, k]."""
    e = quant.embedding.weight.double()
    d = torch.cdist(e, e)
    d.fill_diagonal_(float("inf"))
    return d.topk(min(k, e.shape[0] - 1), largest=False).indices


def relaxed_p(p: torch.Tensor, r: torch.Tensor, nbrs: torch.Tensor, delta: float) -> torch.Tensor:
    """LANTERN's p~(x) = p(x) + mass of x's longest nearest-neighbour prefix whose cumulative p <= delta.
    p [B, l, V], r [B, l] -> [B, l]."""
    pn = p.gather(-1, nbrs[r])  # [B, l, k] p of x's neighbours, nearest first
    cum = pn.cumsum(-1)
    return p.gather(-1, r[..., None])[..., 0] + (pn * (cum <= delta)).sum(-1)


def accept_tokens(
    p: torch.Tensor,
    q: torch.Tensor,
    r: torch.Tensor,
    sc: SampleConfig,
    spec: SpecConfig,
    gen: torch.Generator | None,
    nbrs: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept/resample one drafted step. Returns (accepted [B, l] bool, committed token map [B, l])."""
    if sc.greedy:
        best = p.argmax(-1)
        return r == best, best
    if spec.rule == "always_accept":
        return torch.ones_like(r, dtype=torch.bool), r
    p_r = p.gather(-1, r[..., None])[..., 0]  # [B, l]
    if spec.rule == "relaxed":
        p_r = relaxed_p(p, r, nbrs, spec.relax_delta).clamp(max=1.0)
    q_r = q.gather(-1, r[..., None])[..., 0]
    u = torch.rand(r.shape, generator=gen, dtype=p.dtype, device=p.device)
    acc = u * q_r < p_r  # accept with probability min(1, p/q)
    if bool(acc.all()):
        return acc, r
    res = (p - q).clamp(min=0)
    mass = res.sum(-1, keepdim=True)
    res = torch.where(mass > 0, res / mass.clamp(min=1e-30), p)  # p == q leaves no residual: never rejected
    return acc, torch.where(acc, r, draw(res, gen))


def _cat(xs: list[torch.Tensor | None]) -> torch.Tensor | None:
    xs = [x for x in xs if x is not None]
    return torch.cat(xs, 1) if xs else None


def spec_round(
    st: SpecState,
    target: VAR,
    draft: VAR,
    quant: MultiScaleQuantizer,
    tcond: torch.Tensor,
    dcond: torch.Tensor,
    sc: SampleConfig,
    spec: SpecConfig,
    gen_draft: torch.Generator | None,
    gen_accept: torch.Generator | None,
    nbrs: torch.Tensor | None = None,
) -> int:
    """One draft-verify-accept round from step st.k; commits 1..g+1 steps. Returns the last committed step."""
    num, k, be = quant.num_steps, st.k, target.begin_ends
    g = min(spec.gamma, num - k, max(spec.spec_until - k, 1))
    # 1. draft steps k..k+g-1; the draft first catches up on committed steps it has not seen
    sd = next(s for s, (b, _) in enumerate(be) if b == st.dcache.n)
    f_d, d_in = st.fhats[k], None
    drafts, qs, d_inputs = [], [], []
    for s in range(k, k + g):
        if s == k:
            logits = draft.step_logits(dcond, dup(_cat(st.inputs[max(sd, 1) : k + 1])), sd, k + 1, st.dcache)[
                -1
            ]
            rows = be[k][1] - be[sd][0]
        else:
            logits = draft.step_logits(dcond, dup(d_in), s, s + 1, st.dcache)[0]
            rows = be[s][1] - be[s][0]
        st.stats.draft_calls += 1
        st.stats.draft_rows += dcond.shape[0] * rows
        q = step_probs(logits, s, num, sc)
        r = q.argmax(-1) if sc.greedy else draw(q, gen_draft)
        f_d, d_in = quant.next_input(s, f_d, r)
        drafts.append(r)
        qs.append(q)
        d_inputs.append(d_in)  # input of step s + 1
    # 2. verify steps k..last in one target forward
    last = min(k + g, num - 1)
    ins = _cat([st.inputs[k]] + d_inputs[: last - k])
    t_logits = target.step_logits(tcond, dup(ins), k, last + 1, st.tcache)
    st.stats.target_calls += 1
    st.stats.target_rows += tcond.shape[0] * (be[last][1] - be[k][0])
    # 3. accept in step order
    j = None
    for i, s in enumerate(range(k, k + g)):
        p = step_probs(t_logits[i], s, num, sc)
        acc, r = accept_tokens(p, qs[i], drafts[i], sc, spec, gen_accept, nbrs)
        st.stats.steps_drafted[s] += 1
        st.stats.tokens_drafted[s] += acc.numel()
        st.stats.tokens_accepted[s] += int(acc.sum())
        st.idx.append(r)
        if not bool(acc.all()):
            j = s
            break
        st.stats.steps_accepted[s] += 1
    if j is None:
        if k + g <= num - 1:  # bonus step from the target's own distribution
            p = step_probs(t_logits[g], k + g, num, sc)
            st.idx.append(p.argmax(-1) if sc.greedy else draw(p, gen_accept))
            j = k + g
        else:
            j = num - 1
    # 4. commit steps k..j from the saved f_hat copies, roll both caches back to end_j
    for s in range(k, j + 1):
        f, nxt = quant.next_input(s, st.fhats[s], st.idx[s])
        st.fhats.append(f)
        st.inputs.append(nxt)
    st.tcache.truncate(be[j][1])
    st.dcache.truncate(min(st.dcache.n, be[j][1]))
    st.k = j + 1
    return j


@torch.no_grad()
def sample_speculative(
    target: VAR,
    draft: VAR,
    quant: MultiScaleQuantizer,
    label_B: torch.Tensor,
    sc: SampleConfig,
    spec: SpecConfig,
    gen_draft: torch.Generator | None = None,
    gen_accept: torch.Generator | None = None,
) -> Decoded:
    """Speculative sampling with a draft VAR sharing the target's tokenizer. With rule "exact" the output
    is distributed exactly as `sample(target, ...)`; with sc.greedy it equals the target's greedy output."""
    if spec.rule not in RULES:
        raise ValueError(f"unknown speculative rule {spec.rule!r}; expected one of {RULES}")
    if spec.gamma < 1:
        raise ValueError(f"gamma must be >= 1, got {spec.gamma}")
    if (target.cfg.vocab, target.cfg.cvae, target.cfg.scales) != (
        draft.cfg.vocab,
        draft.cfg.cvae,
        draft.cfg.scales,
    ):
        raise ValueError("draft and target must share the tokenizer (vocab, cvae, scales)")
    num = quant.num_steps
    st = init_state(target, draft, quant, label_B.shape[0])
    tcond, dcond = cfg_batch(target, label_B), cfg_batch(draft, label_B)
    nbrs = codebook_neighbours(quant, spec.relax_k) if spec.rule == "relaxed" else None
    while st.k < num and st.k < spec.spec_until:
        spec_round(st, target, draft, quant, tcond, dcond, sc, spec, gen_draft, gen_accept, nbrs)
    if st.k < num:  # the rest by the target alone
        f_hat, _ = run_model(
            target,
            quant,
            tcond,
            st.tcache,
            st.k,
            num,
            st.fhats[st.k],
            st.inputs[st.k],
            st.idx,
            sc,
            gen_accept,
            st.stats,
            True,
        )
        return Decoded(st.idx, f_hat, st.stats)
    return Decoded(st.idx, st.fhats[num], st.stats)

"""Plain KV-cached VAR sampling with classifier-free guidance and top-k / top-p filtering.

Shapes: label [B]; CFG runs 2B rows (conditional first); logits [2B, l, V] -> guided [B, l, V];
probs [B, l, V]; token map idx [B, l]; step inputs [B, l, Cv]; f_hat [B, Cv, h, w].
The guidance at step s is t_s = cfg * s / (K - 1) (VAR's ramp): guided = (1 + t) * cond - t * uncond.
`step_probs` is the one place p (target) and q (draft) are made, so speculative decoding uses the very same
guidance and filtering as plain sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from engine.var.quantizer import MultiScaleQuantizer
from engine.var.transformer import VAR, KVCache


@dataclass(frozen=True)
class SampleConfig:
    cfg: float = 1.5  # guidance at the last step (ramped linearly from 0)
    top_k: int = 0  # 0 = off
    top_p: float = 0.0  # 0 = off
    temperature: float = 1.0
    greedy: bool = False  # argmax of the guided logits instead of sampling


@dataclass
class Stats:
    """Counters of one generation call (summed over the batch's rounds, not per image)."""

    target_calls: int = 0
    draft_calls: int = 0
    target_rows: int = 0  # query rows processed by the target (CFG rows included)
    draft_rows: int = 0
    steps_drafted: list[int] = field(default_factory=list)  # per step: rounds in which the step was drafted
    steps_accepted: list[int] = field(default_factory=list)  # per step: ... and accepted for every image
    tokens_drafted: list[int] = field(default_factory=list)  # per step: drafted tokens (all images)
    tokens_accepted: list[int] = field(default_factory=list)

    def init(self, num_steps: int) -> Stats:
        for name in ("steps_drafted", "steps_accepted", "tokens_drafted", "tokens_accepted"):
            setattr(self, name, [0] * num_steps)
        return self


def guide(logits_2B: torch.Tensor, t: float) -> torch.Tensor:
    """CFG on a doubled batch: [2B, l, V] -> [B, l, V]."""
    b = logits_2B.shape[0] // 2
    return (1 + t) * logits_2B[:b] - t * logits_2B[b:]


def filter_logits(
    logits: torch.Tensor, top_k: int = 0, top_p: float = 0.0, temperature: float = 1.0
) -> torch.Tensor:
    """Temperature, then top-k, then top-p (VAR's rule: drop tokens whose ascending cumulative probability is
    <= 1 - top_p; the top token always stays). Returns new logits [..., V] with -inf where removed."""
    x = logits / temperature
    if top_k > 0:
        kth = x.topk(min(top_k, x.shape[-1]), dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        srt, order = x.sort(dim=-1)  # ascending
        remove = srt.softmax(-1).cumsum(-1) <= 1 - top_p
        remove[..., -1] = False
        x = x.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return x


def step_probs(logits_2B: torch.Tensor, si: int, num_steps: int, sc: SampleConfig) -> torch.Tensor:
    """Guided, filtered distribution of step si: [2B, l, V] -> probs [B, l, V]. In greedy mode a one-hot
    of the argmax (ties to the lowest index)."""
    guided = guide(logits_2B, sc.cfg * si / max(num_steps - 1, 1))
    if sc.greedy:
        return torch.nn.functional.one_hot(guided.argmax(-1), guided.shape[-1]).to(guided.dtype)
    return filter_logits(guided, sc.top_k, sc.top_p, sc.temperature).softmax(-1)


def draw(probs: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """One categorical draw per position: probs [B, l, V] -> idx [B, l]."""
    b, n, v = probs.shape
    return torch.multinomial(probs.reshape(b * n, v).float(), 1, generator=gen).view(b, n)


def cfg_batch(model: VAR, label_B: torch.Tensor) -> torch.Tensor:
    """AdaLN condition of the doubled batch [2B, C]: labels then unconditional."""
    null = torch.full_like(label_B, model.cfg.num_classes)
    return model.cond(torch.cat([label_B, null]))


def dup(x: torch.Tensor | None) -> torch.Tensor | None:
    """Repeat step inputs for both CFG halves: [B, l, Cv] -> [2B, l, Cv]."""
    return None if x is None else torch.cat([x, x])


@dataclass
class Decoded:
    """Output of a sampler: token maps (one [B, l_s] per step) and the final f_hat [B, Cv, h, w]."""

    idx: list[torch.Tensor]
    f_hat: torch.Tensor
    stats: Stats


def run_model(
    model: VAR,
    quant: MultiScaleQuantizer,
    cond: torch.Tensor,
    cache: KVCache,
    s0: int,
    s1: int,
    f_hat: torch.Tensor,
    inp: torch.Tensor | None,
    idx: list[torch.Tensor],
    sc: SampleConfig,
    gen: torch.Generator | None,
    stats: Stats,
    is_target: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sample steps s0..s1-1 one forward each (step s0's input is `inp`); appends token maps to idx.
    Returns (f_hat, input of step s1)."""
    k = quant.num_steps
    for si in range(s0, s1):
        logits = model.step_logits(cond, dup(inp), si, si + 1, cache)[0]
        probs = step_probs(logits, si, k, sc)
        r = probs.argmax(-1) if sc.greedy else draw(probs, gen)
        idx.append(r)
        f_hat, inp = quant.next_input(si, f_hat, r)
        if is_target:
            stats.target_calls += 1
            stats.target_rows += logits.shape[0] * logits.shape[1]
        else:
            stats.draft_calls += 1
            stats.draft_rows += logits.shape[0] * logits.shape[1]
    return f_hat, inp


def new_fhat(quant: MultiScaleQuantizer, batch: int, like: torch.Tensor) -> torch.Tensor:
    h, w = quant.scales[-1]
    return like.new_zeros(batch, quant.cvae, h, w)


@torch.no_grad()
def sample(
    model: VAR,
    quant: MultiScaleQuantizer,
    label_B: torch.Tensor,
    sc: SampleConfig,
    gen: torch.Generator | None = None,
) -> Decoded:
    """Plain target-only sampling: K forwards, each on one step under the KV cache."""
    b, k = label_B.shape[0], quant.num_steps
    stats = Stats().init(k)
    cache = model.new_cache(2 * b)
    idx: list[torch.Tensor] = []
    f_hat = new_fhat(quant, b, quant.embedding.weight)
    f_hat, _ = run_model(
        model, quant, cfg_batch(model, label_B), cache, 0, k, f_hat, None, idx, sc, gen, stats, True
    )
    return Decoded(idx, f_hat, stats)


@torch.no_grad()
def sample_collaborative(
    target: VAR,
    draft: VAR,
    quant: MultiScaleQuantizer,
    label_B: torch.Tensor,
    sc: SampleConfig,
    switch: int,
    gen: torch.Generator | None = None,
) -> Decoded:
    """CoDe-style collaborative decoding (lossy): the target samples steps < switch, then the draft prefills
    its cache on those steps' inputs in one forward and samples steps >= switch alone."""
    b, k = label_B.shape[0], quant.num_steps
    stats = Stats().init(k)
    idx: list[torch.Tensor] = []
    f_hat = new_fhat(quant, b, quant.embedding.weight)
    tcache = target.new_cache(2 * b)
    f_hat, inp = run_model(
        target, quant, cfg_batch(target, label_B), tcache, 0, switch, f_hat, None, idx, sc, gen, stats, True
    )
    if switch >= k:
        return Decoded(idx, f_hat, stats)
    cond = cfg_batch(draft, label_B)
    dcache = draft.new_cache(2 * b)
    if switch > 0:  # prefill steps 0..switch-1 and get step `switch` logits in the same forward
        hist = [quant.next_input(si, f, r)[1] for si, f, r in _replay(quant, idx)]
        ins = torch.cat(hist[:switch], 1)  # inputs of steps 1..switch
        logits = draft.step_logits(cond, dup(ins), 0, switch + 1, dcache)[-1]
        stats.draft_calls += 1
        stats.draft_rows += 2 * b * draft.begin_ends[switch][1]
        probs = step_probs(logits, switch, k, sc)
        r = probs.argmax(-1) if sc.greedy else draw(probs, gen)
        idx.append(r)
        f_hat, inp = quant.next_input(switch, f_hat, r)
        switch += 1
    f_hat, _ = run_model(draft, quant, cond, dcache, switch, k, f_hat, inp, idx, sc, gen, stats, False)
    return Decoded(idx, f_hat, stats)


def _replay(quant: MultiScaleQuantizer, idx: list[torch.Tensor]):
    """(si, f_hat before step si, idx_si) for committed token maps."""
    f_hat = new_fhat(quant, idx[0].shape[0], quant.embedding.weight)
    for si, r in enumerate(idx):
        yield si, f_hat, r
        f_hat = f_hat + quant.up_phi(quant.embed_idx(r, si), si)

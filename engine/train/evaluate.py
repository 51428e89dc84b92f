"""Few-step evidence: rollout PSNR of the same weights under different samplers and step lists.

`python -m engine.train eval --config configs/train/doom.yaml [weights=PATH]` runs cached clips
through the streaming session (recorded actions, start frame from the clip) with each sampler variant
and prints PSNR against the VAE-decoded ground truth, plus the two baselines of issue 6 (repeat the
start frame; the mean frame of the clip).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.checkpoint import load_weights_into
from engine.config import SamplerConfig
from engine.model.causal_wan import CausalWanModel
from engine.train.config import WorldTrainConfig
from engine.train.runtime import setup_dist
from engine.train.sampling_video import clip_ground_truth, psnr_uint8, rollout

VARIANTS = {
    "x0_renoise 4 [1000,750,500,250]": SamplerConfig((1000, 750, 500, 250), False, 3.0, kind="x0_renoise"),
    "x0_renoise 3 [1000,666,333] warped (MG2)": SamplerConfig((1000, 666, 333), True, 3.0, kind="x0_renoise"),
    "x0_renoise 2 [1000,500]": SamplerConfig((1000, 500), False, 3.0, kind="x0_renoise"),
    "x0_renoise 1 [1000]": SamplerConfig((1000,), False, 3.0, kind="x0_renoise"),
    "euler 4 [1000,750,500,250]": SamplerConfig((1000, 750, 500, 250), False, 3.0, kind="euler"),
}


def evaluate_samplers(cfg: WorldTrainConfig, weights: str = "", clips: int = 4, blocks: int = 4) -> dict:
    from engine.train.world_trainer import cache_clip_latents, load_or_build_cache, training_preset

    preset = training_preset(cfg)
    cache, vae = load_or_build_cache(cfg, preset, setup_dist(cfg.run), cache_clip_latents(cfg, preset))
    model = CausalWanModel(preset.model)
    load_weights_into(model, weights or str(Path(cfg.run.out_dir) / "ema.safetensors"), preset.model)
    picks = np.linspace(0, cache.num_clips - 1, clips).round().astype(int).tolist()
    results: dict[str, float] = {}
    for name, sampler in VARIANTS.items():
        sampler = replace(sampler, timestep_shift=preset.sampler.timestep_shift)
        p = replace(preset, sampler=sampler)
        scores = [psnr_uint8(*rollout(p, model, vae, cache, c, blocks, seed=i)) for i, c in enumerate(picks)]
        results[name] = float(np.mean(scores))
    repeat, mean = [], []
    for c in picks:
        full = clip_ground_truth(vae, cache, c, blocks * preset.model.num_frame_per_block)
        repeat.append(psnr_uint8(np.repeat(full[:1], len(full), 0), full))
        mean.append(
            psnr_uint8(np.repeat(full.mean(0, keepdims=True).round().astype(np.uint8), len(full), 0), full)
        )
    results["baseline: repeat start frame"] = float(np.mean(repeat))
    results["baseline: mean frame"] = float(np.mean(mean))
    return results

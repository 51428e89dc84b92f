"""Train a world model: `python -m engine.train world --config configs/train/doom.yaml [key=value ...]`.

Modes (`mode=`):
  base            sequences of `clip_latents` frames at a random block offset of a clip; one timestep
                  per block (independent across blocks), every frame trained.
  autoregressive  `context_latents` clean frames (t = 0, as the KV cache holds them at inference) then
                  `clip_latents` noisy target frames. During the first `curriculum_fraction` of the
                  steps the context is noised and trained too, weights context 0.3 / target 0.7.
                  A share `first_block` of the steps trains block 0 alone instead (positions 0..2, the
                  image latent in view, no context): the block a session generates first.
Few-step: a fraction `few_step` of the target blocks is noised at exactly the sampler's timesteps (the
preset's warped step list), the rest from the shifted training table; see docs/training.md.
Everything else (mask, cond, actions, scheduler) is the inference code. EMA weights are what ships.

Under torchrun (DDP) `run.batch_size` is per process: every rank draws the whole global batch of
`batch_size * world` samples (clips, offsets, timesteps, noise) from one generator seeded alike on all
ranks and trains its own rows of it, so N processes train exactly what one process with the global
batch trains (tests/test_train_ddp.py). Self-anchor rollouts and anchor noise run on a rank's own rows
with a per-rank generator (the only draws that differ from one process).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from engine.actions import preset_windowing
from engine.checkpoint import load_weights_into, save_checkpoint
from engine.conditioning import check_condition
from engine.config import Preset, load_preset
from engine.model.causal_wan import CausalWanModel
from engine.model.layers import parse_dtype
from engine.scheduler import sampling_timesteps
from engine.train.ckpt import resume_run, save_train_state
from engine.train.config import WorldTrainConfig, config_to_yaml
from engine.train.ema import EMA
from engine.train.episodes import load_action_episodes
from engine.train.latent_cache import CACHE_FILE, build_latent_cache, load_latent_cache, vae_fingerprint
from engine.train.runtime import (
    Dist,
    MetricsLog,
    Throughput,
    all_reduce_mean,
    autocast,
    barrier,
    lr_at,
    progress,
    setup_dist,
    wrap_ddp,
)  # fmt: skip
from engine.train.self_anchor import own_context
from engine.train.world_batch import block_timesteps, max_start_block, noisy_anchors, sample_batch
from engine.train.world_objective import WorldObjective
from engine.vae.factory import build_vae


def sequence_latents(cfg: WorldTrainConfig) -> int:
    return cfg.clip_latents + (cfg.context_latents if cfg.mode == "autoregressive" else 0)


def cache_clip_latents(cfg: WorldTrainConfig, preset: Preset) -> int:
    """Shortest cached clip a run needs: its sequence plus one block of room for a random offset."""
    return sequence_latents(cfg) + preset.model.num_frame_per_block


def training_preset(cfg: WorldTrainConfig) -> Preset:
    """The preset a run trains, with the config's `condition` override applied."""
    preset = load_preset(cfg.preset)
    if cfg.condition:
        check_condition(cfg.condition)
        preset = replace(preset, condition=cfg.condition)
    return preset


def check_config(cfg: WorldTrainConfig, preset: Preset) -> None:
    fpb = preset.model.num_frame_per_block
    if cfg.mode not in ("base", "autoregressive"):
        raise ValueError(f"mode must be 'base' or 'autoregressive', got {cfg.mode!r}")
    for key in ("clip_latents", "context_latents"):
        if getattr(cfg, key) % fpb or getattr(cfg, key) <= 0:
            raise ValueError(f"{key} must be a positive multiple of num_frame_per_block={fpb}")
    if preset.world != "model":
        raise ValueError(f"preset {preset.name} is not a world model (world: {preset.world})")
    if cfg.anchor_inputs and preset.condition != "last_latent":
        raise ValueError(
            f"anchor_inputs needs condition last_latent; preset {preset.name} has {preset.condition!r}"
        )


def spread(episodes: list, max_frames: int) -> list:
    """Episodes evenly spaced over the list (so every map is used) until `max_frames` are taken."""
    total = sum(len(e.frames) for e in episodes)
    if not max_frames or total <= max_frames:
        return episodes
    stride = total / max_frames
    picked, budget, acc = [], max_frames, 0.0
    for e in episodes:
        acc += 1.0
        if acc >= stride and budget > 0:
            picked.append(e)
            budget -= len(e.frames)
            acc -= stride
    return picked or episodes[:1]


def load_or_build_cache(cfg, preset: Preset, d: Dist, clip_latents: int):
    """The latent cache for this preset's VAE: loaded when present (and checked), else encoded now with
    clips of at least `clip_latents`. cfg: a world or unet training config (data, latents, cache fields)."""
    folder = Path(cfg.latents or Path(cfg.run.out_dir) / "latents")
    torch.manual_seed(cfg.run.seed)  # a preset without VAE weights gets the same random VAE every time
    vae = build_vae(preset.vae).float().eval()
    fp = vae_fingerprint(vae, preset.vae)
    if not (folder / CACHE_FILE).is_file():
        if d.main:
            episodes = spread(load_action_episodes(cfg.data, preset.height, preset.width), cfg.max_frames)
            build_latent_cache(  # encoded on the training device (a GPU when there is one)
                vae.to(d.device), preset.vae, episodes, folder, start_every=cfg.start_every,
                min_latents=clip_latents,
                dtype=parse_dtype(cfg.cache_dtype),
            )  # fmt: skip
            vae.cpu()
        barrier(d)
    return load_latent_cache(folder, fp, preset.height, preset.width), vae


def cache_only(cfg: WorldTrainConfig) -> dict:
    """`python -m engine.train cache`: encode the data and stop."""
    preset = training_preset(cfg)
    check_config(cfg, preset)
    cache, _ = load_or_build_cache(cfg, preset, setup_dist(cfg.run), cache_clip_latents(cfg, preset))
    return {"clips": cache.num_clips, "latents": int(len(cache.latents))}


def make_frame_plan(
    cfg: WorldTrainConfig,
    preset: Preset,
    step: int,
    batch: int,
    gen: torch.Generator,
    n: int,
    few_t: torch.Tensor,
):
    """(t [B, F], frame_weight [B, F]) for this step's sequences of `n` latents; few_t: the sampler's
    timesteps (`sampling_timesteps(preset.sampler)`)."""
    fpb, shift = preset.model.num_frame_per_block, preset.sampler.timestep_shift
    t = block_timesteps(batch, n // fpb, fpb, shift, cfg.few_step, few_t, gen)  # [B, F]
    w = torch.ones(batch, n)
    if cfg.mode == "autoregressive" and n > fpb:
        c = cfg.context_latents
        if step < cfg.curriculum_fraction * cfg.run.steps:
            w[:, :c], w[:, c:] = cfg.context_weight, cfg.target_weight
        else:
            w[:, :c] = 0.0
            t[:, :c] = torch.rand(batch, 1, generator=gen) * cfg.context_noise_max * 1000
    return t, w


def plan_sequence(cfg: WorldTrainConfig, max_block: int, fpb: int, n_seq: int, gen: torch.Generator):
    """(start, latents) of this step's sequences: a random block offset, or block 0 alone."""
    first = cfg.mode == "autoregressive" and cfg.first_block > 0
    if first and float(torch.rand(1, generator=gen)) < cfg.first_block:
        return 0, fpb
    return int(torch.randint(max_block + 1, (1,), generator=gen)) * fpb, n_seq


def train_world(cfg: WorldTrainConfig) -> dict:
    """Run (or resume) world-model training; returns the last logged metrics."""
    run = cfg.run
    d = setup_dist(run)
    preset = training_preset(cfg)
    check_config(cfg, preset)
    out = Path(run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache, vae = load_or_build_cache(cfg, preset, d, cache_clip_latents(cfg, preset))
    fpb, n_seq = preset.model.num_frame_per_block, sequence_latents(cfg)
    max_block = max_start_block(cache, n_seq, fpb)

    torch.manual_seed(run.seed)
    model = CausalWanModel(preset.model).to(d.device)
    if cfg.init:
        load_weights_into(model, cfg.init, preset.model)
    model.train()
    anchor_inputs = preset.model.num_frame_per_block if cfg.anchor_inputs else 0
    objective = WorldObjective(model, preset.sampler.timestep_shift, cfg.use_timestep_weight, anchor_inputs)
    objective = wrap_ddp(objective, d)
    opt = torch.optim.AdamW(model.parameters(), lr=run.lr, betas=run.betas, weight_decay=run.weight_decay)
    ema = EMA(model, cfg.ema, cfg.ema_start)
    b, b_all = run.batch_size, run.batch_size * d.world  # per process, global
    rows = slice(d.rank * b, (d.rank + 1) * b)  # this rank's share of every global draw
    gen = torch.Generator().manual_seed(run.seed * 1000)  # alike on every rank: all draw the global batch
    step = resume_run(out, model, ema, opt, gen, b, d.world)
    log = MetricsLog(out / "metrics.jsonl", d.main, step)
    if d.main:
        (out / "config.yaml").write_text(config_to_yaml(cfg))
    bar = progress(run.steps, step, d.main and run.progress, f"world/{cfg.mode}")
    speed, last_save, last = Throughput(), time.time(), {}
    few_t = sampling_timesteps(preset.sampler)  # the sampler's timesteps, once per run
    windowing = preset_windowing(preset)
    sample_clips = list(range(0, cache.num_clips, max(1, cache.num_clips // 2)))[:2]
    while step < run.steps and not (run.stop_after and step >= run.stop_after):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, run)
        start, n = plan_sequence(cfg, max_block, fpb, n_seq, gen)
        clips = torch.randint(cache.num_clips, (b_all,), generator=gen).tolist()[rows]
        batch = sample_batch(
            cache, b, n, start, gen, clips=clips,
            condition=preset.condition, frames_per_block=fpb, windowing=windowing,
        )  # fmt: skip
        batch = batch.to(d.device)
        last_latent = preset.condition == "last_latent"
        own = gen if d.world == 1 else torch.Generator().manual_seed(run.seed * 10**9 + step * 1000 + d.rank)
        if cfg.self_anchor > 0 and n > fpb:
            with autocast(d.device, run.bf16):
                batch = own_context(model, batch, fpb, cfg.self_anchor, few_t, own, anchors=last_latent)
        if last_latent and cfg.anchor_noise_max > 0:
            batch = noisy_anchors(batch, fpb, cfg.anchor_noise_max, own)
        t, w = (x[rows] for x in make_frame_plan(cfg, preset, step, b_all, gen, n, few_t))
        noise = torch.randn((b_all, *batch.x0.shape[1:]), generator=gen)[rows].to(d.device)
        t, w = t.to(d.device), w.to(d.device)
        keep = (torch.rand(b_all, generator=gen) >= cfg.action_dropout).float()[rows]
        with autocast(d.device, run.bf16):
            loss, _ = objective(batch, t, noise, w, keep.to(d.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), run.grad_clip)
        opt.step()
        step += 1
        ema.update(model, step)
        speed.add(b_all)
        if step % run.log_every == 0 or step == run.steps:
            last = {"loss": float(all_reduce_mean(loss.detach(), d)), "grad_norm": float(gnorm)}
            last.update(samples_per_s=speed.rate(), lr=lr_at(step - 1, run), start=start)
            log.write(step, **last)
            bar.set_postfix(loss=f"{last['loss']:.4f}", sps=f"{last['samples_per_s']:.2f}")
        bar.update(1)
        due = step % run.ckpt_every == 0 or (run.ckpt_every_s and time.time() - last_save > run.ckpt_every_s)
        if due or step == run.steps or step == run.stop_after:
            build = lambda: CausalWanModel(preset.model)  # noqa: E731
            save_run(out, preset, model, ema, opt, gen, step, d, build, {"global_batch": b_all})
            last_save = time.time()
        if run.sample_every and d.main and (step % run.sample_every == 0 or step == run.steps):
            from engine.train.sampling_video import write_samples

            ema_model = ema.copy_to(CausalWanModel(preset.model)).eval()
            res = write_samples(
                out / "samples", step, preset, ema_model, vae, cache, sample_clips, cfg.sample_blocks
            )
            log.write(step, **res)
            last.update(res)
    bar.close()
    return last


def save_run(
    out: Path,
    preset: Preset,
    model,
    ema: EMA,
    opt,
    gen,
    step: int,
    d: Dist,
    build,
    extra: Optional[dict] = None,
) -> None:
    """model.safetensors + ema.safetensors (the preset embedded, as shipped) + the training state (with
    `extra` merged in), written by rank 0 only; build() makes an empty model of the same shape for the
    EMA weights."""
    states = [gen.get_state()]
    if d.world > 1:
        import torch.distributed as dist

        states = [None] * d.world
        dist.all_gather_object(states, gen.get_state())
    if d.main:
        shipped = replace(preset, checkpoint="")
        save_checkpoint(out / "model.safetensors.tmp", model, shipped)
        (out / "model.safetensors.tmp").replace(out / "model.safetensors")
        save_checkpoint(out / "ema.safetensors.tmp", ema.copy_to(build()), shipped)
        (out / "ema.safetensors.tmp").replace(out / "ema.safetensors")
        save_train_state(
            out, {"optimizer": opt.state_dict(), "sampler": states, "step": step, **(extra or {})}
        )

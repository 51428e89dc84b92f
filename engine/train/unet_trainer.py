"""Train a latent U-Net world: `python -m engine.train unet --config configs/train/e1m1_unet.yaml`.

Each step draws frames of the cached episodes (`engine.train.unet_batch`) and noises the target
latent at a log-normal EDM sigma or (share `sampler_share`) at one of the sampler's own levels, and
the context latents at a GameNGen level sigma_c ~ U(0, `context_noise_max`) (an input of the model,
so at play time a small fixed level tells it how far to trust its own frames). The preconditioned
output is regressed on the EDM target (`engine.edm`), weighted sigma^2 / (sigma^2 + `loss_sigma_ref`^2)
so that the levels where the next frame is predicted from context and actions are not drowned by
noise-prediction gradients (`engine.edm.loss_weight`). A share `start_share` of samples are the
first frames after a start image, padded as a session pads them. Under torchrun every rank draws the
global batch (`run.batch_size` x processes) from one generator and trains its own rows, as the
`world` trainer does (tests/test_train_ddp.py). From `own_context_from` of the run
on, a share `own_context` of samples see the model's own rollout as their newest
`own_context_frames` context frames (`engine.train.unet_batch.own_context`). The EMA weights are what ships; a
run folder with state is resumed exactly; a folder without state starts from `init` weights at
`init_step` (a new session going on from the shipped weights, with a fresh optimiser).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from engine.checkpoint import load_unet_weights
from engine.config import Preset, load_preset
from engine.edm import (
    denoise,
    karras_sigmas,
    loss_weight,
    residual_base,
    training_sigmas,
    training_target,
)
from engine.model.latent_unet import LatentUNet
from engine.train.ckpt import resume_run
from engine.train.config import UNetTrainConfig, config_to_yaml
from engine.train.ema import EMA
from engine.train.runtime import (
    MetricsLog,
    Throughput,
    all_reduce_mean,
    autocast,
    lr_at,
    progress,
    setup_dist,
    wrap_ddp,
)  # fmt: skip
from engine.train.unet_batch import UNetBatch, UNetSampler, own_context
from engine.train.world_trainer import load_or_build_cache, save_run


class UNetObjective(torch.nn.Module):
    """One forward per step for DDP: (loss, x0 MSE) of a batch at the given noise."""

    def __init__(self, model: LatentUNet, sigma_ref: float):
        super().__init__()
        self.model, self.sigma_ref = model, sigma_ref

    def forward(
        self, batch: UNetBatch, sigma, noise, level, context_noise, keep
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.model.cfg
        x = batch.target + sigma[:, None, None, None] * noise
        context = batch.context + level[:, None, None, None, None] * context_noise
        actions = batch.actions * keep[:, None, None]
        base = residual_base(context, actions, cfg)
        x0, f = denoise(self.model, x, sigma, context, level, actions, cfg, base)
        target = training_target(batch.target, x, sigma, cfg.sigma_data, base)
        per_sample = (f - target).pow(2).mean(dim=(1, 2, 3))
        loss = (per_sample * loss_weight(sigma, self.sigma_ref)).mean()
        return loss, (x0.detach() - batch.target).pow(2).mean()


def check_preset(preset: Preset) -> None:
    if preset.unet is None:
        raise ValueError(
            f"preset {preset.name} has no `unet` section; `train unet` trains latent U-Net worlds"
        )
    if preset.vae.temporal != 1:
        raise ValueError(
            f"preset {preset.name}: the U-Net world needs vae.temporal 1, got {preset.vae.temporal}"
        )


def train_unet(cfg: UNetTrainConfig) -> dict:
    """Run (or resume) U-Net world training; returns the last logged metrics."""
    run = cfg.run
    d = setup_dist(run)
    preset = load_preset(cfg.preset)
    check_preset(preset)
    ucfg = preset.unet
    out = Path(run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache, _ = load_or_build_cache(cfg, preset, d, ucfg.context_frames + 2)
    own_frames = cfg.own_context_frames if cfg.own_context > 0 else 0
    sampler = UNetSampler(cache, ucfg.context_frames, mouse=ucfg.mouse_dim > 0, history=own_frames)

    def build() -> LatentUNet:
        return LatentUNet(ucfg, preset.vae.z_dim)

    torch.manual_seed(run.seed)
    model = build().to(d.device, memory_format=torch.channels_last).train()
    objective = wrap_ddp(UNetObjective(model, cfg.loss_sigma_ref), d)
    opt = torch.optim.AdamW(model.parameters(), lr=run.lr, betas=run.betas, weight_decay=run.weight_decay)
    ema = EMA(model, cfg.ema, cfg.ema_start)
    b, b_all = run.batch_size, run.batch_size * d.world  # per process, global
    rows = slice(d.rank * b, (d.rank + 1) * b)  # this rank's share of every global draw
    gen = torch.Generator().manual_seed(run.seed * 1000)  # alike on every rank: all draw the global batch
    step = resume_run(out, model, ema, opt, gen, b, d.world)
    if step == 0 and cfg.init:  # no state in the folder: go on from the init weights
        load_unet_weights(model, cfg.init, preset)
        ema = EMA(model, cfg.ema, cfg.ema_start)
        step = cfg.init_step
        gen.manual_seed(run.seed * 1000 + step)  # not the stream of the run that made `init`
    log = MetricsLog(out / "metrics.jsonl", d.main, step)
    if d.main:
        (out / "config.yaml").write_text(config_to_yaml(cfg))
    bar = progress(run.steps, step, d.main and run.progress, "world/unet")
    speed, last_save, last = Throughput(), time.time(), {}
    sampler_sigmas = karras_sigmas(ucfg)
    while step < run.steps and not (run.stop_after and step >= run.stop_after):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, run)
        batch = sampler.sample(b_all, gen, cfg.start_share).rows(rows).to(d.device)
        share = cfg.own_context if step >= cfg.own_context_from * run.steps else 0.0
        own = gen if d.world == 1 else torch.Generator().manual_seed(run.seed * 10**9 + step * 1000 + d.rank)
        with autocast(d.device, run.bf16):
            batch = own_context(model, batch, ucfg.context_frames, share, ucfg, sampler_sigmas, own)
        sigma = training_sigmas(b_all, gen, sampler_sigmas, cfg.sampler_share)[rows]
        noise = torch.randn((b_all, *batch.target.shape[1:]), generator=gen)[rows]
        level = (torch.rand(b_all, generator=gen) * cfg.context_noise_max)[rows]
        context_noise = torch.randn((b_all, *batch.context.shape[1:]), generator=gen)[rows]
        keep = (torch.rand(b_all, generator=gen) >= cfg.action_dropout).float()[rows]
        sigma, noise, level, context_noise, keep = (
            t.to(d.device) for t in (sigma, noise, level, context_noise, keep)
        )  # the batch is on the device already
        with autocast(d.device, run.bf16):
            loss, x0_mse = objective(batch, sigma, noise, level, context_noise, keep)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), run.grad_clip)
        opt.step()
        step += 1
        ema.update(model, step)
        speed.add(b_all)
        if step % run.log_every == 0 or step == run.steps:
            last = {"loss": float(all_reduce_mean(loss.detach(), d)), "x0_mse": float(x0_mse)}
            last.update(grad_norm=float(gnorm), samples_per_s=speed.rate(), lr=lr_at(step - 1, run))
            log.write(step, **last)
            bar.set_postfix(loss=f"{last['loss']:.4f}", sps=f"{last['samples_per_s']:.1f}")
        bar.update(1)
        due = step % run.ckpt_every == 0 or (run.ckpt_every_s and time.time() - last_save > run.ckpt_every_s)
        if due or step == run.steps or step == run.stop_after:
            save_run(out, preset, model, ema, opt, gen, step, d, build, {"global_batch": b_all})
            last_save = time.time()
    bar.close()
    return last

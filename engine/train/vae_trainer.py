"""Train the tiny causal VAE: `python -m engine.train vae --config configs/train/doom_vae.yaml`.

Loss: L1 + L2 + Sobel-edge L1 on the reconstruction, a small L2 on raw latents; the decoder also
learns from noisy latents (z + U(0, latent_noise) * N(0, 1), normalised units) so it stays robust to
world-model errors. With `adversarial` > 0 a patch discriminator (`engine.train.patch_gan`) learns to
tell real frames from decoded ones and, after `adversarial_start` steps, its hinge loss (times
`adversarial`) pushes the decoder to draw texture rather than its mean. Per-channel latent mean/std
are tracked as running statistics and stored in the weights, so `encode` gives roughly unit-variance
latents. Held-out PSNR is logged every `eval_every`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from engine.config import load_preset
from engine.train.ckpt import load_train_state, load_weights, save_train_state, save_weights, set_rng_state
from engine.train.config import VAETrainConfig, config_to_yaml
from engine.train.episodes import load_frame_episodes
from engine.train.frame_clips import FrameClips
from engine.train.losses import psnr, reconstruction_loss
from engine.train.patch_gan import PatchDiscriminator, discriminator_loss, generator_loss
from engine.train.runtime import (
    MetricsLog,
    Throughput,
    all_reduce_mean,
    autocast,
    lr_at,
    progress,
    setup_dist,
    unwrap,
    wrap_ddp,
)
from engine.vae.tiny_vae import SAFETENSORS_KEY, TinyVAE, load_tiny_vae, vae_config_json
from engine.vae.tiny_vae_blocks import interleave_first, nearest_shortcut, soft_clamp


class VAEObjective(torch.nn.Module):
    """encode -> (noisy) decode -> loss, as one module so DDP can wrap it."""

    def __init__(self, vae: TinyVAE, cfg: VAETrainConfig):
        super().__init__()
        self.vae, self.cfg = vae, cfg

    def forward(
        self, video: torch.Tensor, noise_scale: torch.Tensor
    ) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor]:
        """video [B, 1 + rk, 3, H, W] (r = the VAE's temporal ratio); noise_scale [B].
        Returns (loss, parts, raw latents, decoded video aligned with `video`)."""
        vae, cfg, r = self.vae, self.cfg, self.vae.temporal
        raw, _ = vae.encoder(interleave_first(video, r), None)  # [B, 1 + k, C, h, w]; frozen: no graph
        raw = soft_clamp(raw.float())
        z = vae.normalize(raw)
        noisy = z + noise_scale[:, None, None, None, None] * torch.randn_like(z)
        x, _ = vae.decoder(vae.denormalize(noisy))  # [B, r(1 + k), 3, H, W]
        x = x[:, r - 1 :]
        parts = reconstruction_loss(x, video, cfg.l1, cfg.l2, cfg.edge)
        loss = parts["loss"] + cfg.latent_l2 * raw.pow(2).mean()
        return loss, parts, raw.detach(), x


@torch.no_grad()
def init_pca(vae: TinyVAE, video: torch.Tensor) -> float:
    """Start the linear shortcuts as a PCA of 8x8 patches and zero the conv paths' outputs.

    video: [B, T, 3, H, W] sample frames. The VAE then starts as the best linear 16-channel code of a
    patch (a blurry but correct image), and the conv paths learn the detail on top. Returns the scale.
    """
    import torch.nn.functional as F

    z = vae.z_dim
    patches = F.pixel_unshuffle(video.flatten(0, 1).float(), 8)  # [N, 192, h, w]
    x = patches.permute(0, 2, 3, 1).reshape(-1, patches.shape[1]).double()  # [M, 192]
    mean = x.mean(0)
    _, sv, vh = torch.linalg.svd(x - mean, full_matrices=False)
    basis = vh[:z]  # [z, 192]
    scale = float(sv[0] / (len(x) ** 0.5))  # std of the first component -> coefficients ~ unit scale
    enc, dec = vae.encoder, vae.decoder
    enc.shortcut.weight.copy_((basis / scale).float()[:, :, None, None])
    enc.shortcut.bias.copy_(-(basis @ mean / scale).float())
    w = (basis.t() * scale).float()  # [192, z]
    dec.shortcut.weight.copy_(w.repeat(vae.temporal, 1)[:, :, None, None])
    dec.shortcut.bias.copy_(mean.float().repeat(vae.temporal))
    torch.nn.init.zeros_(enc.head.weight)
    torch.nn.init.zeros_(enc.head.bias)
    torch.nn.init.zeros_(dec.head[1].weight)
    torch.nn.init.zeros_(dec.head[1].bias)
    return scale


@torch.no_grad()
def update_latent_stats(vae: TinyVAE, raw: torch.Tensor, momentum: float, first: bool) -> None:
    """Running per-channel mean and one global std of raw latents [B, n, C, h, w].

    One std for all channels keeps the PCA-like energy ordering of the channels, so the world model's
    loss weighs the channels that carry most of the image most (per-channel whitening would make it
    spend capacity on near-empty high-frequency channels).
    """
    mean = raw.float().mean(dim=(0, 1, 3, 4))
    std = (raw.float() - mean[:, None, None]).pow(2).mean().sqrt().clamp(min=1e-3).expand_as(mean)
    m = 0.0 if first else momentum
    vae.latent_mean.mul_(m).add_((1 - m) * mean)
    vae.latent_std.mul_(m).add_((1 - m) * std)


@torch.no_grad()
def calibrate_latents(vae: TinyVAE, clips: torch.Tensor) -> None:
    """Set the stored latent statistics from full clips [N, T, 3, H, W]: per-channel mean, one global std."""
    raws = []
    for i in range(len(clips)):
        raw, _ = vae.encoder(interleave_first(clips[i : i + 1], vae.temporal), None)
        raws.append(soft_clamp(raw.float()))
    raw = torch.cat(raws)
    vae.latent_mean.copy_(raw.mean(dim=(0, 1, 3, 4)))
    vae.latent_std.fill_(float((raw - vae.latent_mean[:, None, None]).pow(2).mean().sqrt()))


def export_vae(
    run_dir: str, preset: str, data: list[str], dest: str, clips: int = 32, calibrate: bool = True
) -> None:
    """Copy a run's VAE to `dest` with latent statistics calibrated on `clips` full-frame clips of `data`.

    calibrate=False keeps the run's statistics (a decoder fine-tune must keep its encoder's latents)."""
    cfg = replace(load_preset(preset).vae, checkpoint="")
    vae = load_tiny_vae(cfg, str(Path(run_dir) / "model.safetensors"))
    if calibrate and cfg.encoder != "pool":  # a pooled encoder's statistics are fixed by its config
        calibrate_latents(vae, FrameClips(load_frame_episodes(data), 9).fixed(clips))
    save_vae(vae, Path(dest))


@torch.no_grad()
def evaluate(vae: TinyVAE, clips: torch.Tensor, bf16: bool) -> float:
    """Held-out PSNR (dB) of encode -> decode, one clip at a time."""
    vae.eval()
    preds = []
    with autocast(clips.device, bf16):
        for i in range(len(clips)):
            preds.append(vae.decode(vae.encode(clips[i : i + 1])).float())
    vae.train()
    return psnr(torch.cat(preds), clips)


def save_vae(vae: TinyVAE, path: Path) -> None:
    save_weights(vae.state_dict(), path, {SAFETENSORS_KEY: vae_config_json(vae.cfg)})


def train_vae(cfg: VAETrainConfig) -> dict:
    """Run (or resume) VAE training; returns the final metrics."""
    run = cfg.run
    d = setup_dist(run)
    preset = load_preset(cfg.preset)
    vae_cfg = replace(preset.vae, checkpoint="")
    if vae_cfg.kind != "tiny":
        raise ValueError(f"preset {cfg.preset}: the VAE trainer trains vae.kind 'tiny', got {vae_cfg.kind!r}")
    r = vae_cfg.temporal
    if (cfg.clip_frames - 1) % r:
        raise ValueError(f"clip_frames must be 1 + {r}k for vae.temporal {r}, got {cfg.clip_frames}")
    pooled = vae_cfg.encoder == "pool"  # a fixed encoder: only the decoder (an upsampler) learns
    if cfg.freeze_encoder and not cfg.init and not pooled:
        raise ValueError("freeze_encoder needs init: the VAE whose encoder to keep")
    out = Path(run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = FrameClips(load_frame_episodes(cfg.data), cfg.clip_frames, tuple(cfg.crop))
    eval_clips = None
    if cfg.eval_data and run.eval_every:
        eval_clips = (
            FrameClips(load_frame_episodes(cfg.eval_data), cfg.clip_frames).fixed(cfg.eval_clips).to(d.device)
        )

    torch.manual_seed(run.seed)
    vae = TinyVAE(vae_cfg).to(d.device)
    if cfg.freeze_encoder:
        vae.encoder.requires_grad_(False)
    objective = wrap_ddp(VAEObjective(vae, cfg), d)
    trained = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=run.lr, betas=run.betas, weight_decay=run.weight_decay)
    gen = torch.Generator().manual_seed(run.seed * 1000 + d.rank)
    step = 0
    state = load_train_state(out)
    if state is not None:
        vae.load_state_dict(load_weights(out / "model.safetensors"))
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["sampler"][d.rank] if d.world > 1 else state["sampler"][0])
        set_rng_state(state["rng"])
        step = state["step"]
    elif cfg.init:
        vae.load_state_dict(load_tiny_vae(vae_cfg, cfg.init).state_dict())
    elif pooled:
        nearest_shortcut(vae.decoder, vae_cfg.pool)
    else:
        init_pca(vae, data.sample(16, torch.Generator().manual_seed(run.seed)))
    gan = Adversary(cfg, d, state) if cfg.adversarial > 0 else None
    log = MetricsLog(out / "metrics.jsonl", d.main, step)
    if d.main:
        (out / "config.yaml").write_text(config_to_yaml(cfg))
    bar = progress(run.steps, step, d.main and run.progress, "vae")
    speed, last_save, last = Throughput(), time.time(), {}
    while step < run.steps and not (run.stop_after and step >= run.stop_after):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, run)
        video = data.sample(run.batch_size, gen).to(d.device)
        noise_scale = torch.rand(run.batch_size, generator=gen).to(d.device) * cfg.latent_noise
        with autocast(d.device, run.bf16):
            loss, parts, raw, decoded = objective(video, noise_scale)
        if gan is not None:
            loss = loss + gan.step(video, decoded, step, parts)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(trained, run.grad_clip)
        opt.step()
        if not (cfg.freeze_encoder or pooled):
            update_latent_stats(vae, raw, cfg.stats_momentum, step == 0)
        step += 1
        speed.add(run.batch_size * d.world)
        if step % run.log_every == 0 or step == run.steps:
            last = {k: float(all_reduce_mean(v.detach().float(), d)) for k, v in parts.items()}
            last.update(samples_per_s=speed.rate(), grad_norm=float(gnorm), lr=lr_at(step - 1, run))
            log.write(step, **last)
            bar.set_postfix(loss=f"{last['loss']:.4f}", sps=f"{last['samples_per_s']:.2f}")
        bar.update(1)
        if eval_clips is not None and d.main and (step % run.eval_every == 0 or step == run.steps):
            psnr_db = evaluate(unwrap(objective).vae, eval_clips, run.bf16)
            last.update(eval_psnr=psnr_db)
            log.write(step, eval_psnr=psnr_db)
        due = step % run.ckpt_every == 0 or (run.ckpt_every_s and time.time() - last_save > run.ckpt_every_s)
        if due or step == run.steps or step == run.stop_after:
            _checkpoint(out, vae, opt, gen, step, d, gan.state() if gan is not None else {})
            last_save = time.time()
    bar.close()
    return last


class Adversary:
    """The patch discriminator, its optimiser and one training step of it per decoder step."""

    def __init__(self, cfg: VAETrainConfig, d, state: Optional[dict]):
        self.cfg, self.d = cfg, d
        with torch.random.fork_rng(devices=[]):  # leave the run's random stream as a resume finds it
            torch.manual_seed(cfg.run.seed + 1)
            self.disc = PatchDiscriminator().to(d.device)
        self.opt = torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
        if state is not None and "disc" in state:
            self.disc.load_state_dict(state["disc"])
            self.opt.load_state_dict(state["disc_opt"])
        self.wrapped = wrap_ddp(self.disc, d)

    def step(self, real: torch.Tensor, decoded: torch.Tensor, step: int, parts: dict) -> torch.Tensor:
        """Train the discriminator on this batch; return the decoder's adversarial loss term.
        real, decoded: [B, T, 3, H, W]; parts gets `disc` and `adv` for the log."""
        real, fake = real.flatten(0, 1), decoded.flatten(0, 1)
        with autocast(self.d.device, self.cfg.run.bf16):
            d_loss = discriminator_loss(self.wrapped(real), self.wrapped(fake.detach()))
        self.opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt.step()
        parts["disc"] = d_loss.detach()
        if step < self.cfg.adversarial_start:
            parts["adv"] = torch.zeros((), device=real.device)
            return parts["adv"]
        self.disc.requires_grad_(False)  # the decoder's gradient only (and no DDP hooks: unwrapped)
        with autocast(self.d.device, self.cfg.run.bf16):
            g_loss = generator_loss(self.disc(fake))
        self.disc.requires_grad_(True)
        parts["adv"] = g_loss.detach()
        return self.cfg.adversarial * g_loss

    def state(self) -> dict:
        return {"disc": self.disc.state_dict(), "disc_opt": self.opt.state_dict()}


def _checkpoint(out: Path, vae: TinyVAE, opt, gen: torch.Generator, step: int, d, extra: dict) -> None:
    if d.world > 1:
        import torch.distributed as dist

        states = [None] * d.world
        dist.all_gather_object(states, gen.get_state())
    else:
        states = [gen.get_state()]
    if d.main:
        save_vae(vae, out / "model.safetensors")
        save_train_state(out, {"optimizer": opt.state_dict(), "sampler": states, "step": step, **extra})

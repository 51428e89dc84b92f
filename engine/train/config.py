"""Training configs: frozen dataclasses filled from YAML (`configs/train/*.yaml`) plus CLI overrides.

YAML and `key=value` overrides are merged over the structured dataclass with OmegaConf, so an
unknown or misspelled key is a ValueError naming it, never a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


@dataclass(frozen=True)
class RunConfig:
    """What every trainer shares: output folder, length, optimiser, logging and checkpoint cadence."""

    out_dir: str = "runs/train"
    steps: int = 1000
    batch_size: int = 2  # per process
    lr: float = 2e-4
    min_lr_ratio: float = 0.1  # cosine decay to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = leave as is
    bf16: bool = True  # autocast matmuls/convs to bf16 (CPU and GPU)
    log_every: int = 10  # JSONL metrics every N steps
    ckpt_every: int = 200  # steps between checkpoints
    ckpt_every_s: float = 600.0  # also checkpoint when this many seconds passed (0 = off)
    sample_every: int = 0  # steps between sample videos (0 = off)
    eval_every: int = 0  # steps between held-out evaluations (0 = off)
    progress: bool = True  # tqdm bar
    stop_after: int = 0  # stop (with a checkpoint) once this step is reached; 0 = run to `steps`


@dataclass(frozen=True)
class VAETrainConfig:
    """`python -m engine.train vae`: the tiny causal VAE on consecutive game frames."""

    preset: str = "doom"  # its `vae` section says which VAE and its size
    data: tuple[str, ...] = ("data/doom2",)  # folders of shards (engine.data) or of frames*.npz
    eval_data: tuple[str, ...] = ()
    clip_frames: int = 9  # 1 + rk video frames per training clip (r = the VAE's temporal ratio)
    crop: tuple[int, int] = (72, 128)  # random crop (H, W), multiples of 8; (0, 0) = full frames
    l1: float = 1.0
    l2: float = 1.0
    edge: float = 0.5  # L1 on Sobel gradients
    latent_l2: float = 1e-4  # keeps raw latents small before the soft clamp
    latent_noise: float = 0.15  # decoder sees z + U(0, latent_noise) * N(0, 1) (normalised units)
    stats_momentum: float = 0.99  # running per-channel latent mean/std stored in the checkpoint
    init: str = ""  # VAE weights to start from (default: a fresh VAE, PCA-initialised)
    freeze_encoder: bool = False  # train the decoder only; the encoder and latent statistics of `init`
    # stay as they are, so latents (and a world model trained on them) stay valid
    adversarial: float = 0.0  # weight of a patch discriminator's hinge loss on the decoded frames
    adversarial_start: int = 0  # steps that train the discriminator alone before the decoder sees it
    disc_lr: float = 2.0e-4
    eval_clips: int = 16
    run: RunConfig = field(default_factory=RunConfig)


@dataclass(frozen=True)
class WorldTrainConfig:
    """`python -m engine.train world`: a CausalWanModel on cached latents and per-frame actions."""

    preset: str = "doom"  # model, VAE, sampler, resolution
    condition: str = ""  # override the preset's condition ("image" | "last_latent"); "" = the preset's
    data: tuple[str, ...] = ("data/doom2",)
    latents: str = ""  # latent cache folder; default <out_dir>/latents
    cache_dtype: str = (
        "fp32"  # the VAE's dtype while encoding the cache ("bf16": as a session, faster on CPU)
    )
    max_frames: int = 0  # cache at most this many video frames (episodes spread evenly); 0 = all
    start_every: int = 3  # latents between clip starts in the cache (a multiple of num_frame_per_block)
    mode: str = "base"  # "base" (one clip) or "autoregressive" (context clip + target clip)
    init: str = ""  # weights to start from (e.g. a base-stage checkpoint)
    clip_latents: int = 6  # latent frames of the (target) clip; multiple of num_frame_per_block
    context_latents: int = 3  # autoregressive: clean context latent frames before the target clip
    curriculum_fraction: float = 1 / 3  # autoregressive: first third also trains the context
    context_weight: float = 0.3
    target_weight: float = 0.7
    few_step: float = 0.5  # fraction of target frames noised at the sampler's few-step timesteps
    context_noise_max: float = 0.0  # autoregressive: context frames get t ~ U(0, this) (0 = clean)
    anchor_noise_max: float = 0.0  # last_latent presets: anchors after block 0 get noise sigma ~ U(0, this)
    anchor_inputs: bool = False  # last_latent: anchors are the previous frames as fed (noise + level)
    self_anchor: float = 0.0  # autoregressive: share of samples whose context is the model's own prediction
    first_block: float = 0.0  # autoregressive: share of steps that train block 0 alone, as played
    action_dropout: float = 0.1  # drop all actions of a sample with this probability
    ema: float = 0.999
    ema_start: int = 100
    use_timestep_weight: bool = False  # FlowMatchScheduler training weights
    sample_blocks: int = 4  # blocks in sample videos / eval rollouts
    run: RunConfig = field(default_factory=RunConfig)


@dataclass(frozen=True)
class UNetTrainConfig:
    """`python -m engine.train unet`: a latent U-Net world (a preset with `unet`) on cached latents."""

    preset: str = "e1m1"
    data: tuple[str, ...] = ("data/e1m1",)
    latents: str = (
        ""  # latent cache folder (shared with `world` runs of the same VAE); default <out_dir>/latents
    )
    cache_dtype: str = "bf16"
    max_frames: int = 0  # cache at most this many video frames (episodes spread evenly); 0 = all
    start_every: int = 7  # latents between clip starts in the cache (the start samples use them)
    context_noise_max: float = 0.7  # context latents get noise sigma ~ U(0, this), the level given (GameNGen)
    start_share: float = 0.05  # samples whose context reaches back past a start frame, padded as in play
    sampler_share: float = 0.5  # samples noised at one of the sampler's levels instead of the log-normal
    loss_sigma_ref: float = 1.0  # loss weight sigma^2 / (sigma^2 + this^2), engine.edm.loss_weight; 0 = EDM's
    own_context: float = 0.0  # share of samples whose newest context frames are the model's own rollout
    own_context_frames: int = 1  # how many newest context frames it generates (DIAMOND: several)
    own_context_from: float = 0.5  # ... from this fraction of run.steps on (the later part of training)
    action_dropout: float = 0.0  # zero all actions of a sample with this probability
    ema: float = 0.999
    ema_start: int = 200
    # a run folder without state starts from these weights (model and EMA; a fresh optimiser) at step
    # `init_step` of the schedule: how training goes on in a new session from shipped weights
    init: str = ""
    init_step: int = 0
    run: RunConfig = field(default_factory=RunConfig)


T = TypeVar("T")


def load_train_config(cls: type[T], path: Optional[str], overrides: Sequence[str] = ()) -> T:
    """Build `cls` from a YAML file (or none) and `key=value` overrides; ValueError on a bad key or value."""
    where = path or "<defaults>"
    try:
        base = OmegaConf.structured(cls)
        parts = [base]
        if path:
            if not Path(path).is_file():
                raise ValueError(f"training config {path} does not exist")
            parts.append(OmegaConf.load(path))
        parts.append(OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(OmegaConf.merge(*parts))
    except OmegaConfBaseException as e:
        raise ValueError(f"invalid training config {where}: {str(e).splitlines()[0]}") from None


def config_to_yaml(cfg) -> str:
    """A training config as YAML that `--config` reads back (the run folder's config.yaml)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))

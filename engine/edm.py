"""EDM (Karras et al. 2022) preconditioning, training noise and the few-step Euler sampler of the
latent U-Net world (as DIAMOND uses them). Latents are normalised, with spread `sigma_data`.

  x_sigma = x0 + sigma * eps
  D(x_sigma) = c_skip x_sigma + c_out F(c_in x_sigma, c_noise = log(sigma) / 4)
Training regresses F on (x0 - c_skip x_sigma) / c_out, a unit-variance target at every sigma, so no
noise level (and no band of frequencies) dominates the loss.

Residual worlds (`UNetConfig.residual`) diffuse the change from a base, the newest context latent b:
x0 - b in place of x0 (x_sigma is the same x0 + sigma * eps; only the centre of the preconditioning
moves to b). A network whose output is 0 then copies the last frame, sharp, instead of predicting the
mean latent: an undertrained model stands still rather than melting into a blur. With `turn_fov` the
base is the newest latent turned by the newest action's yaw (`engine.model.turn_warp`): turns, which are
exact camera rotations in Doom, cost the network nothing.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from engine.config import UNetConfig
from engine.model.turn_warp import turn_warp

Network = Callable[..., torch.Tensor]


def scalings(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """(c_in, c_skip, c_out) for sigma [B], each [B, 1, 1, 1] float32."""
    s = sigma.float()[:, None, None, None]
    norm = (s**2 + sigma_data**2).sqrt()
    return 1 / norm, sigma_data**2 / norm**2, s * sigma_data / norm


def denoise(
    net: Network,
    x: torch.Tensor,
    sigma: torch.Tensor,
    context: torch.Tensor,
    level: torch.Tensor,
    actions: torch.Tensor,
    cfg: UNetConfig,
    base: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0 estimate [B, C, h, w] float32, raw network output F). x: noisy latent; context: raw latents
    [B, K, C, h, w] (oldest first); cfg: the world's `UNetConfig` (sigma_data, the residual base);
    base: `residual_base(context, actions, cfg)` when the caller has it already."""
    c_in, c_skip, c_out = scalings(sigma, cfg.sigma_data)
    if base is None:
        base = residual_base(context, actions, cfg)
    x = x.float() - base
    f = net(c_in * x, context.float() / cfg.sigma_data, sigma.float().log() / 4, level, actions).float()
    return base + c_skip * x + c_out * f, f


def residual_base(context: torch.Tensor, actions: torch.Tensor, cfg: UNetConfig) -> torch.Tensor:
    """The centre of the preconditioning [B, C, h, w]: 0 for a plain world, else the newest context
    latent, turned by the yaw of the newest action (mouse [pitch, yaw] after the keys) with `turn_fov`."""
    if not cfg.residual:
        return torch.zeros((), device=context.device)
    last = context[:, -1].float()
    if cfg.turn_fov <= 0 or cfg.mouse_dim < 2:
        return last
    yaw = actions[:, -1, cfg.keyboard_dim + 1].float() * math.radians(cfg.turn_degrees)
    return turn_warp(last, yaw, cfg.turn_fov, cfg.turn_patch)


def loss_weight(sigma: torch.Tensor, sigma_ref: float) -> torch.Tensor:
    """Per-sample loss weight sigma^2 / (sigma^2 + sigma_ref^2) [B] (1 for all when sigma_ref is 0).

    EDM's preconditioning gives every level a unit-variance target, but at small sigma that target is
    mostly the noise itself, which no model predicts: those samples add large, useless gradients. With
    Adam they drown the small, consistent gradients of the high levels, where the model must predict the
    next frame from context and actions (on the synthetic world, mixing in 25% of samples at sigma 0.3
    stopped a model from learning which way a key moves the picture in 600 steps; weighting them by
    ~0.1 restored it). Small levels still train, with a weight that fades like sigma^2."""
    if sigma_ref <= 0:
        return torch.ones_like(sigma, dtype=torch.float32)
    s2 = sigma.float() ** 2
    return s2 / (s2 + sigma_ref**2)


def training_target(
    x0: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor, sigma_data: float, base=0.0
) -> torch.Tensor:
    """What F should output for noisy x at sigma: (x0 - b - c_skip (x - b)) / c_out, b the
    `residual_base` (0 for a plain world)."""
    _, c_skip, c_out = scalings(sigma, sigma_data)
    return (x0.float() - base - c_skip * (x.float() - base)) / c_out


def training_sigmas(
    n: int,
    gen: torch.Generator,
    sampler_sigmas: torch.Tensor,
    sampler_share: float,
    mean: float = -0.4,
    std: float = 1.2,
) -> torch.Tensor:
    """Noise levels [n]: log-normal (EDM's P_mean, P_std), or with probability `sampler_share` one of the
    sampler's own levels (`karras_sigmas` without the final 0).

    The log-normal alone puts ~7% of samples at sigma >= 4, where the model must predict the next frame
    from the context and actions alone: that is where the world's dynamics are learned, and the level the
    sampler's first step runs at."""
    sigmas = (torch.randn(n, generator=gen) * std + mean).exp()
    levels = sampler_sigmas[sampler_sigmas > 0]
    pick = levels[torch.randint(len(levels), (n,), generator=gen)]
    use = torch.rand(n, generator=gen) < sampler_share
    return torch.where(use, pick, sigmas)


def karras_sigmas(cfg: UNetConfig) -> torch.Tensor:
    """The sampler's `steps` noise levels from sigma_max down to sigma_min, then 0: [steps + 1]."""
    if cfg.steps < 1:
        raise ValueError(f"unet.steps must be >= 1, got {cfg.steps}")
    ramp = torch.linspace(0, 1, cfg.steps) if cfg.steps > 1 else torch.zeros(1)
    lo, hi = cfg.sigma_min ** (1 / cfg.rho), cfg.sigma_max ** (1 / cfg.rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** cfg.rho, torch.zeros(1)])


@torch.no_grad()
def sample_next(
    net: Network,
    context: torch.Tensor,
    level: torch.Tensor,
    actions: torch.Tensor,
    cfg: UNetConfig,
    sigmas: torch.Tensor,
    gen: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """The next latent [B, C, h, w] (float32) by Euler steps down `sigmas` (`karras_sigmas`).

    Noise is drawn on the CPU from `gen`, so a seed gives the same frames on every device."""
    b, _, c, h, w = context.shape
    noise = torch.randn(b, c, h, w, generator=gen).to(context.device)
    return euler_sample(net, noise, context, level, actions, cfg, [float(s) for s in sigmas])


def euler_sample(
    net: Network,
    noise: torch.Tensor,
    context: torch.Tensor,
    level: torch.Tensor,
    actions: torch.Tensor,
    cfg: UNetConfig,
    sigmas: list[float],
) -> torch.Tensor:
    """`sample_next` from given unit noise [B, C, h, w]; sigmas as plain floats (constants when traced)."""
    b = context.shape[0]
    base = residual_base(context, actions, cfg)  # once a frame, not once a step
    x = noise * sigmas[0] + base
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        sigma = torch.full((b,), s, device=context.device)
        x0, _ = denoise(net, x, sigma, context, level, actions, cfg, base)
        x = x0 if s_next == 0 else x + (x - x0) / s * (s_next - s)
    return x

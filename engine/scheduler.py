"""Flow-matching schedule and samplers as pure functions (Matrix-Game 2.0 / Self-Forcing conventions).

Notation: sigma in [0, 1] is the noise level, timestep t = sigma * 1000. The forward process is
x_t = (1 - sigma) x0 + sigma * noise, and the model predicts the velocity v = noise - x0, so
x0 = x_t - sigma * v. The official wrapper builds the table with shift 5, sigma_min 0 and one extra
step: s = 1.000, 0.999, ..., 0.001 and sigma = shift * s / (1 + (shift - 1) s).

Every function here is pure; with 3-4 fixed sampling steps the whole schedule is a constant table.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from engine.config import SamplerConfig

NUM_TRAIN_TIMESTEPS = 1000


def shift_sigmas(s: torch.Tensor, shift: float) -> torch.Tensor:
    """The timestep shift: sigma = shift * s / (1 + (shift - 1) * s)."""
    return shift * s / (1 + (shift - 1) * s)


def make_sigmas(
    num_steps: int = NUM_TRAIN_TIMESTEPS,
    shift: float = 5.0,
    sigma_min: float = 0.0,
    sigma_max: float = 1.0,
    extra_one_step: bool = True,
) -> torch.Tensor:
    """Shifted sigma table, float64 [num_steps], from sigma_max down (as FlowMatchScheduler.set_timesteps)."""
    if extra_one_step:
        s = torch.linspace(sigma_max, sigma_min, num_steps + 1, dtype=torch.float64)[:-1]
    else:
        s = torch.linspace(sigma_max, sigma_min, num_steps, dtype=torch.float64)
    return shift_sigmas(s, shift)


def make_timesteps(shift: float = 5.0, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """The training timestep table, float64 [1000]: sigma * 1000 for the shifted sigma table."""
    return make_sigmas(num_train_timesteps, shift) * num_train_timesteps


def warp_timesteps(
    step_list: Sequence[float], shift: float = 5.0, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS
) -> torch.Tensor:
    """Map a denoising step list such as [1000, 666, 333] onto the shifted table (warp_denoising_step).

    Returns float32 [n]: table'[1000 - step] with table' = [timesteps..., 0]; e.g. [1000, 908.84, 713.98].
    """
    table = torch.cat([make_timesteps(shift, num_train_timesteps), torch.zeros(1, dtype=torch.float64)])
    idx = torch.tensor([num_train_timesteps - int(round(s)) for s in step_list])
    return table[idx].float()


def sampling_timesteps(cfg: SamplerConfig) -> torch.Tensor:
    """The timesteps a preset's sampler visits: its step list warped onto the shifted table (when
    `warp_denoising_step`) or taken as given. float32 [n]; compute it once per preset and keep it."""
    if cfg.warp_denoising_step:
        return warp_timesteps(cfg.denoising_step_list, cfg.timestep_shift, cfg.num_train_timesteps)
    return torch.tensor([float(s) for s in cfg.denoising_step_list], dtype=torch.float32)


def sigma_of(t: torch.Tensor, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """sigma for timesteps t; equals the official table lookup for every table (and warped) timestep."""
    return t.double() / num_train_timesteps


def _expand(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sigma [B, F] (or scalar) -> broadcastable to x [B, F, C, H, W]."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
    while sigma.dim() < x.dim():
        sigma = sigma.unsqueeze(-1)
    return sigma


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - sigma) x0 + sigma noise, per element of t [B, F]; x0/noise [B, F, C, H, W]."""
    s = _expand(sigma_of(torch.as_tensor(t)), x0)
    return ((1 - s) * x0.double() + s * noise.double()).to(noise.dtype)


def x0_from_velocity(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0 = x_t - sigma v (computed in float64 like the official wrapper, returned in x_t's dtype)."""
    s = _expand(sigma_of(torch.as_tensor(t)), x_t)
    return (x_t.double() - s * v.double()).to(x_t.dtype)


def training_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The flow-matching regression target: velocity = noise - x0."""
    return noise - x0


def training_weights(shift: float = 5.0, num_steps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """Per-table-entry loss weights (FlowMatchScheduler linear_timesteps_weights), float64 [num_steps]."""
    t = make_timesteps(shift, num_steps)
    y = torch.exp(-2 * ((t - num_steps / 2) / num_steps) ** 2)
    y = y - y.min()
    return y * num_steps / y.sum()


def training_weight(
    t: torch.Tensor, shift: float = 5.0, num_steps: int = NUM_TRAIN_TIMESTEPS
) -> torch.Tensor:
    """Loss weight of each timestep in t (nearest table entry), float32, same shape as t."""
    table = make_timesteps(shift, num_steps).to(t.device)
    idx = (t.double().unsqueeze(-1) - table).abs().argmin(-1)
    return training_weights(shift, num_steps).to(t.device)[idx].float()


def sample_train_timesteps(
    shape: Sequence[int],
    shift: float = 5.0,
    generator: Optional[torch.Generator] = None,
    num_steps: int = NUM_TRAIN_TIMESTEPS,
) -> torch.Tensor:
    """Timesteps drawn uniformly from the shifted training table, float32 of `shape` (e.g. [B, F])."""
    table = make_timesteps(shift, num_steps).float()
    idx = torch.randint(0, num_steps, tuple(shape), generator=generator)
    return table[idx]


# --- samplers -----------------------------------------------------------------------------------------

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t [B,F,C,H,W], t [B,F]) -> v


def sample_x0_renoise(
    velocity: VelocityFn,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Distilled few-step loop: predict x0, then re-noise it with fresh noise to the next timestep.

    noise: [B, F, C, H, W]; timesteps: [n] float (e.g. warped [1000, 908.84, 713.98]). Returns x0.
    """
    x = noise
    b, f = noise.shape[:2]
    x0 = noise
    for i, t in enumerate(timesteps.tolist()):
        tt = torch.full((b, f), t, dtype=torch.float32, device=noise.device)
        x0 = x0_from_velocity(x, velocity(x, tt), tt)
        if i + 1 < len(timesteps):
            # drawn on the CPU so a seed gives the same noise on every device
            fresh = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0.device, x0.dtype)
            x = add_noise(x0, fresh, torch.full_like(tt, float(timesteps[i + 1])))
    return x0


def sample_euler(velocity: VelocityFn, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """Plain Euler integration of the velocity field over `timesteps`, then to t = 0 (undistilled models)."""
    x = noise
    b, f = noise.shape[:2]
    ts = timesteps.tolist() + [0.0]
    for t, t_next in zip(ts[:-1], ts[1:], strict=True):
        tt = torch.full((b, f), t, dtype=torch.float32, device=noise.device)
        v = velocity(x, tt)
        x = (x.double() + v.double() * ((t_next - t) / NUM_TRAIN_TIMESTEPS)).to(x.dtype)
    return x


SAMPLERS = ("x0_renoise", "euler")


def check_sampler(kind: str) -> None:
    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler kind {kind!r}; expected one of: {', '.join(SAMPLERS)}")


def sample(
    kind: str,
    velocity: VelocityFn,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """The preset's sampler (`SamplerConfig.kind`) from `noise` [B, F, C, H, W]: clean x0, same shape."""
    check_sampler(kind)
    if kind == "euler":
        return sample_euler(velocity, noise, timesteps)
    return sample_x0_renoise(velocity, noise, timesteps, generator)

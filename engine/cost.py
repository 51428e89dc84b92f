"""What a preset costs before anything is built: parameters, FLOPs per block, and a CPU time estimate.

A full-size Matrix-Game preset on a CPU runs, but at minutes per block; the app uses
`cpu_block_seconds` to say so up front instead of sitting at 0 frames for a quarter of an hour.
The estimate is 2 x parameters x tokens x passes FLOPs for the DiT (matmuls dominate) over a measured
bf16 matmul rate, so it is a lower bound on the time (attention and the VAE come on top).
"""

from __future__ import annotations

import time

import torch

from engine.config import Preset

VAE_SPATIAL = 8  # both VAEs (Wan and tiny) downsample by 8


def model_parameters(preset: Preset) -> int:
    """Parameters of the preset's world model, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        if preset.unet is not None:
            from engine.model.latent_unet import LatentUNet

            model = LatentUNet(preset.unet, preset.vae.z_dim)
        else:
            from engine.model.causal_wan import CausalWanModel

            model = CausalWanModel(preset.model)
    return sum(p.numel() for p in model.parameters())


def block_flops(preset: Preset) -> float:
    """Matmul FLOPs of one streaming block of a Matrix-Game model (all denoising passes + the context
    pass): 2 x parameters x tokens x passes."""
    m = preset.model
    tokens = (
        m.num_frame_per_block
        * (preset.height // VAE_SPATIAL // m.patch_size[1])
        * (preset.width // VAE_SPATIAL // m.patch_size[2])
    )
    passes = len(preset.sampler.denoising_step_list) + 1
    return 2.0 * model_parameters(preset) * tokens * passes


def cpu_matmul_rate(seconds: float = 0.2, n: int = 1024) -> float:
    """bf16 matmul FLOP/s of this CPU with the current torch threads (measured for ~`seconds`)."""
    a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
    a @ b  # warm-up
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
    return 2.0 * n**3 * count / (time.perf_counter() - t0)


def cpu_block_seconds(preset: Preset) -> tuple[float, float]:
    """(estimated seconds per block on this CPU, measured FLOP/s) for a Matrix-Game preset; the U-Net
    world is small by construction and estimated at 0."""
    if preset.unet is not None or preset.world != "model":
        return 0.0, 0.0
    rate = cpu_matmul_rate()
    return block_flops(preset) / rate, rate

"""Sample videos and rollout metrics through the real streaming pipeline (engine.worlds.session).

A rollout starts a `WorldModelSession` from the decoded start latent of a cached clip and steps it
with that clip's recorded actions, block by block, exactly as the app would. Ground truth is the same
clip's cached latents decoded by the VAE. Used for sample videos during training and for evaluation.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from engine.actions import ActionBlock, preset_windowing
from engine.conditioning import frames_to_uint8
from engine.config import Preset
from engine.train.latent_cache import LatentCache
from engine.worlds.session import WorldModelSession


@torch.no_grad()
def clip_ground_truth(vae, cache: LatentCache, clip: int, num_latents: int) -> np.ndarray:
    """VAE-decoded cached latents of a clip: uint8 [1 + r(n - 1), H, W, 3]."""
    ep, j0 = cache.starts[clip].tolist()
    l0 = int(cache.ep_latent0[ep])
    z = torch.cat([cache.start_cond[clip, :1], cache.latents[l0 + j0 + 1 : l0 + j0 + num_latents]]).float()
    return frames_to_uint8(vae.decode(z[None].to(next(vae.parameters()).device)))


def clip_actions(cache: LatentCache, clip: int, frames: int) -> ActionBlock:
    f = cache.clip_frame0(clip)
    return ActionBlock(cache.keyboard[f : f + frames].numpy(), cache.mouse[f : f + frames].numpy())


@torch.no_grad()
def rollout(
    preset: Preset,
    model: torch.nn.Module,
    vae,
    cache: LatentCache,
    clip: int,
    blocks: int,
    seed: int = 0,
    dtype: str = "bf16",
) -> tuple[np.ndarray, np.ndarray]:
    """(generated, ground truth) uint8 [T, H, W, 3] for `blocks` blocks of a cached clip."""
    fpb = preset.model.num_frame_per_block
    frames = sum(preset_windowing(preset).block_frames(b, fpb) for b in range(blocks))
    gt = clip_ground_truth(vae, cache, clip, blocks * fpb)
    session = WorldModelSession(preset, copy.deepcopy(model), copy.deepcopy(vae), None, dtype=dtype)
    gen = session.generate(gt[0], clip_actions(cache, clip, frames), seed)
    return gen, gt[:frames]


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def save_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """mp4 via imageio-ffmpeg (falls back to an .npy of the frames when no encoder is available)."""
    try:
        import imageio.v2 as imageio

        imageio.mimsave(str(path), list(frames), fps=fps, macro_block_size=1)
    except Exception:  # noqa: BLE001 - any encoder problem: keep the frames anyway
        np.save(path.with_suffix(".npy"), frames)


def save_strip(path: Path, rows: list[np.ndarray], every: int = 4) -> None:
    """PNG grid: one row per video (e.g. real, generated), every `every`-th frame."""
    from PIL import Image

    n = min(len(r) for r in rows)
    grid = np.concatenate([np.concatenate(list(r[:n:every]), axis=1) for r in rows], axis=0)
    Image.fromarray(grid).save(path)


def write_samples(
    out: Path,
    step: int,
    preset: Preset,
    model,
    vae,
    cache: LatentCache,
    clips: list[int],
    blocks: int,
    fps: Optional[float] = None,
) -> dict:
    """Rollouts of `clips`; writes samples/step_N.mp4 (real | generated) and a PNG strip; returns PSNRs."""
    out.mkdir(parents=True, exist_ok=True)
    scores, strips = [], []
    for i, c in enumerate(clips):
        gen, gt = rollout(preset, model, vae, cache, c, blocks, seed=i)
        scores.append(psnr_uint8(gen, gt))
        strips += [gt, gen]
        save_video(out / f"step_{step:07d}_clip{c}.mp4", np.concatenate([gt, gen], axis=2), fps or preset.fps)
    save_strip(out / f"step_{step:07d}.png", strips)
    return {"sample_psnr": float(np.mean(scores))}

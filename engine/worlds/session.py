"""Streaming world-model session: start from an image, then step one block of actions at a time.

This is the engine object the app drives (it implements `engine.worlds.World`). Per block, exactly as
the Matrix-Game 2.0 streaming pipeline:
  1. fresh Gaussian noise for the block's latent frames (drawn on the CPU from the session seed);
  2. N denoising passes at the sampler's timesteps through the KV-cached model (`x0_renoise`: predict
     x0, re-noise to the next timestep; or `euler`), all writing the same cache slots;
  3. one context pass at timestep `context_noise`, which leaves the block in the caches: the clean x0
     (Matrix-Game: context_noise 0), or x0 noised to that level with fresh noise (GameNGen-style);
  4. streaming VAE decode of the block's latents (1 + r(F - 1) video frames for block 0, r F later; 9
     and 12 for the VAE ratio r = 4 and F = 3 latents per block).
With one-frame blocks and `last_latent`, block 0 is the start image's latent itself (nothing to
generate: training sees position 0 as that exact latent), so the first new frame is anchored on it.
cond_concat is the preset's `condition`: Matrix-Game's [image, gray...] stream ("image"), or the last
latent of the previous block as its context pass saw it, with that noise level in the mask
("last_latent"; the start image's latent, level 0, for block 0).
Actions arrive per video frame; latent frame f sees frames [r f - r w, r f) (`engine.actions.Windowing`,
[4f - 12, 4f) for Matrix-Game). Only one block plus one window of actions is kept, so memory is flat
however long a session runs.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Union

import numpy as np
import torch

from engine.actions import ActionBlock, gather_windows, preset_windowing
from engine.conditioning import (
    anchor_latents,
    build_condition,
    check_condition,
    frames_to_uint8,
    image_to_tensor,
)
from engine.config import Preset
from engine.model.fast_path import PATHS, Choice, FastStreamer, choose_path
from engine.model.layers import parse_dtype
from engine.scheduler import add_noise, check_sampler, sample, sampling_timesteps
from engine.vae.protocol import VideoVAE
from engine.worlds import NonFiniteLatents, WorldSpec, play, weights_preset


class WorldModelSession:
    """A neural world (CausalWanModel + VideoVAE [+ CLIP]) behind the World API."""

    def __init__(
        self,
        preset: Preset,
        model: torch.nn.Module,
        vae: VideoVAE,
        image_encoder: Optional[torch.nn.Module] = None,
        device: Union[str, torch.device] = "cpu",
        dtype: Union[str, torch.dtype] = "bf16",
        checkpoint: str = "",
        dit_path: str = "reference",
    ):
        cfg = preset.model
        act = cfg.action
        self.preset, self.checkpoint = preset, checkpoint
        self.device, self.dtype = torch.device(device), parse_dtype(dtype)
        self.model = model.to(self.device, self.dtype).eval()
        self.vae = vae.to(self.device, self.dtype).eval()
        self.image_encoder = (
            None if image_encoder is None else image_encoder.to(self.device, self.dtype).eval()
        )
        if cfg.image_context_dim is not None and self.image_encoder is None:
            raise ValueError(f"preset {preset.name} has an image-context branch but no image encoder")
        keyboard_dim = act.keyboard_dim_in if act is not None and act.enable_keyboard else 0
        has_mouse = bool(act is not None and act.enable_mouse)
        self.frames_per_block = cfg.num_frame_per_block
        self.windowing = preset_windowing(preset)  # the VAE's temporal ratio r and windows_size w
        block_frames = self.windowing.block_frames(1, self.frames_per_block)
        self.spec = WorldSpec(
            preset.name, preset.mode, preset.height, preset.width, preset.fps, keyboard_dim, has_mouse,
            block_frames,
        )  # fmt: skip
        self.temporal = self.windowing.temporal
        if vae.temporal != self.temporal:
            raise ValueError(
                f"preset {preset.name}: vae.temporal is {self.temporal} but the VAE built has {vae.temporal}"
            )
        self.history = self.windowing.history_frames(self.frames_per_block)  # video frames of actions kept
        self.latent_hw = (preset.height // vae.spatial, preset.width // vae.spatial)
        self.timesteps = sampling_timesteps(preset.sampler)  # float32 [n], once per session
        check_sampler(preset.sampler.kind)
        check_condition(preset.condition)
        self._anchor: Optional[torch.Tensor] = None  # last clean latent (condition: last_latent)
        self._block = -1  # not started
        if dit_path not in PATHS:
            raise ValueError(f"unknown DiT path {dit_path!r}; choose one of: {', '.join(PATHS)}")
        self.dit_path = dit_path  # requested; `dit_choice` is what runs (chosen by the first start())
        self.dit_choice: Optional[Choice] = None

    # --- World API ---------------------------------------------------------------------------------

    @property
    def block_index(self) -> int:
        return max(self._block, 0)

    @property
    def actions_needed(self) -> int:
        return self.windowing.block_frames(self.block_index, self.frames_per_block)

    @torch.no_grad()
    def start(self, image: Optional[np.ndarray], seed: int = 0) -> None:
        """Begin a session from a start image uint8 [H, W, 3] at the preset's size."""
        shape = (self.spec.height, self.spec.width, 3)
        if image is None or image.shape != shape or image.dtype != np.uint8:
            got = None if image is None else (image.shape, image.dtype)
            raise ValueError(
                f"start image must be uint8 {shape} (see engine.conditioning.load_image), got {got}"
            )
        pixels = image_to_tensor(image).to(self.device, self.dtype)  # [1, 3, H, W]
        condition = build_condition(self.vae, pixels, self.image_encoder)
        self._context = condition.visual_context
        cfg = self.preset.model
        self._condition = condition if cfg.in_dim > cfg.out_dim else None
        if self._condition is not None and self.preset.condition == "last_latent":
            self._anchor = condition.stream.next(1)  # the start image's latent; the stream is done
            self._condition = None
        h, w = self.latent_hw
        fast = self._fast_path()
        if fast is None:
            self._cache = self.model.new_cache(1, h, w, self.device, self.dtype)
        else:
            fast.opt.start_session(self._context)  # the optimised path keeps its caches across sessions
        self._vae_cache: Any = self.vae.new_decode_cache()
        self._gen = torch.Generator().manual_seed(int(seed))
        self._keyboard = torch.zeros(0, max(self.spec.keyboard_dim, 1))
        self._mouse = torch.zeros(0, 2)
        self._first_index = 0  # absolute video frame of _keyboard[0]
        self._block = 0

    @torch.no_grad()
    def step(self, actions: ActionBlock) -> np.ndarray:
        """Generate the next block from per-video-frame actions; returns uint8 [T, H, W, 3]."""
        if self._block < 0:
            raise RuntimeError("call start() before step()")
        actions.check(self.spec.keyboard_dim, self.spec.has_mouse, frames=self.actions_needed)
        start = self._block * self.frames_per_block
        mouse_w, keyboard_w = self._action_windows(actions, start)
        context_noise = float(self.preset.sampler.context_noise)
        if self._anchor is not None:
            level = context_noise / 1000.0 if self._block > 0 else 0.0
            cond = anchor_latents(self._anchor, start, self.frames_per_block, level)
        else:
            cond = None if self._condition is None else self._condition.next(self.frames_per_block)
        fast = self._fast_path()
        if fast is not None:
            fast.opt.begin_block(start, cond, mouse_w, keyboard_w)
            velocity = fast.sampler_velocity(len(self.timesteps))
        else:
            velocity = self._velocity_fn(cond, mouse_w, keyboard_w, start)
        if start == 0 and self.frames_per_block == 1 and self._anchor is not None:
            x0 = self._anchor.clone()  # one-frame blocks: block 0 is the start image, exactly
        else:
            x0 = self._denoise(velocity)
        if not bool(torch.isfinite(x0).all()):  # one sync per block; NaN weights would play black frames
            raise NonFiniteLatents(
                f"block {self._block}: the world model produced NaN/Inf latents; the weights "
                f"({self.checkpoint or 'random'}) or the actions are broken, so no frames were made"
            )
        context_t = torch.full(x0.shape[:2], context_noise, device=self.device)
        x_ctx = x0
        if context_noise > 0:  # GameNGen-style: the context is held at a small noise level
            eps = torch.randn(x0.shape, generator=self._gen).to(self.device, self.dtype)
            x_ctx = add_noise(x0, eps, context_t).to(self.dtype)
        if self._anchor is not None:
            self._anchor = x_ctx[:, -1:]
        # context pass: leaves the block (clean or at context_noise) in the caches
        if fast is not None:
            fast.velocity(x_ctx, len(self.timesteps))  # the last pass timestep is context_noise
            fast.opt.end_block()
        else:
            velocity(x_ctx, context_t)
        video, self._vae_cache = self.vae.decode_stream(x0, self._vae_cache)
        self._block += 1
        return frames_to_uint8(video)

    def close(self) -> None:
        self._cache = self._vae_cache = self._condition = self._anchor = None
        self._block = -1

    # --- batch mode --------------------------------------------------------------------------------

    def generate(self, image: np.ndarray, actions: ActionBlock, seed: int = 0) -> np.ndarray:
        """Run a whole action sequence: uint8 [T, H, W, 3] with T = len(actions).

        The last block is padded by repeating the last action and the surplus frames are dropped.
        """
        self.start(image, seed)
        return play(self, actions)

    # --- internals ---------------------------------------------------------------------------------

    def _fast_path(self) -> Optional[FastStreamer]:
        """The optimised streamer this session runs, or None for the reference. Chosen (built, compiled
        and checked against the reference) on first use, on the thread that generates: compiled CPU
        code keeps the thread count it was built with."""
        if self.dit_path == "reference":
            return None
        if self.dit_choice is None:
            h, w = self.latent_hw
            steps = self.timesteps.tolist() + [float(self.preset.sampler.context_noise)]
            self.dit_choice = choose_path(self.model, 1, h, w, steps, self.dit_path)
            if self.dit_choice.fell_back:  # one line: why the faster path is not used
                print(f"worldplayer: {self.dit_choice.note}", file=sys.stderr)
        return self.dit_choice.fast

    def _action_windows(self, actions: ActionBlock, start: int):
        """Append the block's actions to the history; windows [1, F, r w, C] for latents start..start+F-1."""
        kb = torch.from_numpy(actions.keyboard) if self.spec.keyboard_dim else torch.zeros(len(actions), 1)
        self._keyboard = torch.cat([self._keyboard, kb])
        if self.spec.has_mouse:
            self._mouse = torch.cat([self._mouse, torch.from_numpy(actions.mouse)])
        drop = max(0, len(self._keyboard) - self.history)
        if drop:
            self._keyboard, self._first_index = self._keyboard[drop:], self._first_index + drop
            if self.spec.has_mouse:
                self._mouse = self._mouse[drop:]
        f = self.frames_per_block

        def windows(hist: torch.Tensor) -> torch.Tensor:
            w = gather_windows(hist[None], self._first_index, start, f, self.windowing)
            return w.to(self.device, self.dtype)

        keyboard_w = windows(self._keyboard) if self.spec.keyboard_dim else None
        mouse_w = windows(self._mouse) if self.spec.has_mouse else None
        return mouse_w, keyboard_w

    def _velocity_fn(self, cond, mouse_w, keyboard_w, start: int):
        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.model(
                x,
                cond,
                t.to(self.device),
                self._context,
                mouse_w,
                keyboard_w,
                cache=self._cache,
                start_frame=start,
            )

        return velocity

    def _denoise(self, velocity) -> torch.Tensor:
        """Fresh noise (drawn on the CPU from the session seed) -> clean latents [1, F, C, h, w]."""
        h, w = self.latent_hw
        shape = (1, self.frames_per_block, self.preset.model.out_dim, h, w)
        noise = torch.randn(shape, generator=self._gen).to(self.device, self.dtype)
        return sample(self.preset.sampler.kind, velocity, noise, self.timesteps, self._gen)


def load_session(
    preset: Union[str, Preset],
    checkpoint: Optional[str] = None,
    device: str = "cpu",
    dtype: str = "bf16",
    dit_path: str = "reference",
) -> WorldModelSession:
    """The neural world a preset describes (`engine.worlds.build_world` dispatches here).

    dit_path: "reference", "optimised", "compiled" or "auto" (the fastest that passes the self-check;
    `engine.model.fast_path`).

    checkpoint: world-model weights (official Matrix-Game 2.0 `.safetensors` or ours) instead of the
    preset's `checkpoint`; random weights when both are empty (tests and benchmarks), seeded with 0 so
    every process gets the same ones.
    """
    from engine.checkpoint import check_conditioning, load_weights_into
    from engine.model.causal_wan import CausalWanModel
    from engine.model.clip import build_image_encoder
    from engine.vae.factory import build_vae

    preset = weights_preset(preset, checkpoint)
    model = CausalWanModel(preset.model)
    if preset.checkpoint:
        check_conditioning(load_weights_into(model, preset.checkpoint, preset), preset, preset.checkpoint)
    vae, encoder = build_vae(preset.vae), build_image_encoder(preset.image_encoder)
    return WorldModelSession(
        preset, model, vae, encoder, device, dtype, checkpoint=preset.checkpoint, dit_path=dit_path
    )

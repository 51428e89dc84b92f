"""The latent U-Net world (`engine.model.latent_unet`) behind the World API.

Block 0 is the start frame (its latent, decoded): one action in, one frame out. Every later block
generates `unet.block_frames` frames, one at a time: frame p is sampled (`engine.edm.sample_next`)
from the latents of frames p - K .. p - 1 and the actions held on them (actions[i] takes frame i to
i + 1, so the action given with frame p - 1 is the one that makes frame p), then decoded by the
streaming VAE decoder. Before frame 0 the context is the start latent repeated and the actions are
zero, exactly as in training. With `unet.context_noise` > 0 the context is noised to that sigma with
fresh noise per frame and the level is given to the model (GameNGen). Only K latents and K actions
are kept, so memory is flat however long a session runs.

`net_path` picks how a frame is sampled (`engine.model.unet_fast_path`): "reference" (`sample_next`),
"optimised", "compiled" or "auto"; a faster path is chosen on the first frame, which it must reproduce.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Union

import numpy as np
import torch

from engine.actions import ActionBlock
from engine.conditioning import frames_to_uint8, image_to_tensor
from engine.config import Preset
from engine.edm import karras_sigmas, sample_next
from engine.model.layers import parse_dtype
from engine.model.unet_fast_path import PATHS, UNetChoice, choose_unet_path
from engine.vae.protocol import VideoVAE
from engine.worlds import NonFiniteLatents, WorldSpec, weights_preset


class UNetWorldSession:
    """A neural world (LatentUNet + VideoVAE) behind the World API."""

    def __init__(
        self,
        preset: Preset,
        model: torch.nn.Module,
        vae: VideoVAE,
        device: Union[str, torch.device] = "cpu",
        dtype: Union[str, torch.dtype] = "bf16",
        checkpoint: str = "",
        net_path: str = "reference",
    ):
        if preset.unet is None:
            raise ValueError(f"preset {preset.name} has no `unet` section")
        if vae.temporal != 1:
            raise ValueError(
                f"preset {preset.name}: the U-Net world needs a VAE with temporal 1, got {vae.temporal}"
            )
        self.preset, self.cfg, self.checkpoint = preset, preset.unet, checkpoint
        self.device, self.dtype = torch.device(device), parse_dtype(dtype)
        self.model = model.to(self.device, self.dtype).eval()
        self.vae = vae.to(self.device, self.dtype).eval()
        cfg = self.cfg
        self.spec = WorldSpec(
            preset.name, preset.mode, preset.height, preset.width, preset.fps, cfg.keyboard_dim,
            cfg.mouse_dim > 0, cfg.block_frames,
        )  # fmt: skip
        self.sigmas = karras_sigmas(cfg)
        self._block = -1
        if net_path not in PATHS:
            raise ValueError(f"unknown U-Net path {net_path!r}; choose one of: {', '.join(PATHS)}")
        self.net_path = net_path  # requested; `net_choice` is what runs (chosen on the first frame)
        self.net_choice: Optional[UNetChoice] = None

    @property
    def block_index(self) -> int:
        return max(self._block, 0)

    @property
    def actions_needed(self) -> int:
        return 1 if self.block_index == 0 else self.cfg.block_frames

    @torch.no_grad()
    def start(self, image: Optional[np.ndarray], seed: int = 0) -> None:
        """Begin a session from a start image uint8 [H, W, 3] at the preset's size."""
        shape = (self.spec.height, self.spec.width, 3)
        if image is None or image.shape != shape or image.dtype != np.uint8:
            got = None if image is None else (image.shape, image.dtype)
            raise ValueError(
                f"start image must be uint8 {shape} (see engine.conditioning.load_image), got {got}"
            )
        pixels = image_to_tensor(image).to(self.device, self.dtype)
        latent = self.vae.encode(pixels[:, None]).float()  # [1, 1, C, h, w]
        k = self.cfg.context_frames
        self._latents = latent.expand(-1, k, -1, -1, -1).clone()  # [1, K, C, h, w], oldest first
        self._actions = torch.zeros(1, k, self.cfg.keyboard_dim + self.cfg.mouse_dim)
        self._pending: Optional[torch.Tensor] = None  # the action that makes the next frame
        self._vae_cache: Any = self.vae.new_decode_cache()
        self._gen = torch.Generator().manual_seed(int(seed))
        self._block = 0

    @torch.no_grad()
    def step(self, actions: ActionBlock) -> np.ndarray:
        """The next block of frames from per-frame actions; uint8 [T, H, W, 3], T = len(actions)."""
        if self._block < 0:
            raise RuntimeError("call start() before step()")
        actions.check(self.spec.keyboard_dim, self.spec.has_mouse, frames=self.actions_needed)
        rows = self._action_rows(actions)
        if self._block == 0:
            latents = self._latents[:, -1:]  # the start frame
            self._pending = rows[0]
        else:
            out = []
            for row in rows:
                out.append(self._next_latent())
                self._pending = row
            latents = torch.stack(out, dim=1)
        video, self._vae_cache = self.vae.decode_stream(latents.to(self.dtype), self._vae_cache)
        self._block += 1
        return frames_to_uint8(video)

    def close(self) -> None:
        self._vae_cache = self._latents = None
        self._block = -1

    def _action_rows(self, actions: ActionBlock) -> torch.Tensor:
        """[T, keyboard + mouse] float32, the training layout."""
        parts = [torch.from_numpy(np.asarray(actions.keyboard, dtype=np.float32))]
        if self.cfg.mouse_dim:
            parts.append(torch.from_numpy(np.asarray(actions.mouse, dtype=np.float32)))
        return torch.cat(parts, dim=1)

    def _next_latent(self) -> torch.Tensor:
        """Sample the frame after the context, then slide the context and action windows by one."""
        self._actions = torch.cat([self._actions[:, 1:], self._pending[None, None]], dim=1)
        context, sigma = self._latents, self.cfg.context_noise
        if sigma > 0:
            context = context + sigma * torch.randn(context.shape, generator=self._gen).to(self.device)
        level = torch.full((1,), float(sigma), device=self.device)
        x = self._sample(context, level, self._actions.to(self.device))
        if not bool(torch.isfinite(x).all()):  # NaN weights would play black frames
            raise NonFiniteLatents(
                f"frame {self._block}: the world model produced NaN/Inf latents; the weights "
                f"({self.checkpoint or 'random'}) or the actions are broken, so no frames were made"
            )
        self._latents = torch.cat([self._latents[:, 1:], x[:, None]], dim=1)
        return x

    def _sample(self, context: torch.Tensor, level: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The next latent [1, C, h, w] float32 on the session's path; the first frame of a faster path
        is the reference's, computed while checking that path against it (`choose_unet_path`)."""
        if self.net_path == "reference" or (self.net_choice is not None and self.net_choice.frame is None):
            return sample_next(self.model, context, level, actions, self.cfg, self.sigmas, self._gen)
        if self.net_choice is None:
            self.net_choice = choose_unet_path(
                self.model, self.cfg, self.sigmas, context, level, actions, self._gen, self.net_path
            )
            if self.net_choice.fell_back:  # one line: why the faster path is not used
                print(f"worldplayer: {self.net_choice.note}", file=sys.stderr)
            return self.net_choice.first
        noise = torch.randn(context[:, 0].shape, generator=self._gen).to(self.device)  # as sample_next
        return self.net_choice.frame(context, level, actions, noise)


def load_unet_session(
    preset: Union[str, Preset],
    checkpoint: Optional[str] = None,
    device: str = "cpu",
    dtype: str = "bf16",
    net_path: str = "reference",
) -> UNetWorldSession:
    """The U-Net world a preset describes (`engine.worlds.build_world` dispatches here); random weights,
    seeded with 0, when neither the preset nor `checkpoint` names a file. net_path: see the module."""
    from engine.checkpoint import load_unet_weights
    from engine.model.latent_unet import LatentUNet
    from engine.vae.factory import build_vae

    preset = weights_preset(preset, checkpoint)
    model = LatentUNet(preset.unet, preset.vae.z_dim)
    if preset.checkpoint:
        load_unet_weights(model, preset.checkpoint, preset)
    vae = build_vae(preset.vae)
    return UNetWorldSession(
        preset, model, vae, device, dtype, checkpoint=preset.checkpoint, net_path=net_path
    )

"""The latent U-Net world (`engine.model.latent_unet`) behind the World API.

Block 0 is the start frame (its latent, decoded): one action in, one frame out. Every later block
generates `unet.block_frames` frames, one at a time: frame p is sampled (`engine.edm.sample_next`)
from the latents of frames p - K .. p - 1 and the actions held on them (actions[i] takes frame i to
i + 1, so the action given with frame p - 1 is the one that makes frame p), then decoded by the
streaming VAE decoder. Before frame 0 the context is the start latent repeated and the actions are
zero, exactly as in training. With `unet.context_noise` > 0 the context is noised to that sigma with
fresh noise per frame and the level is given to the model (GameNGen). Only K latents and K actions
are kept, so memory is flat however long a session runs.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch

from engine.actions import ActionBlock
from engine.conditioning import frames_to_uint8, image_to_tensor
from engine.config import Preset
from engine.edm import karras_sigmas, sample_next
from engine.model.layers import parse_dtype
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
        x = sample_next(
            self.model, context, level, self._actions.to(self.device), self.cfg, self.sigmas, self._gen
        )
        if not bool(torch.isfinite(x).all()):  # NaN weights would play black frames
            raise NonFiniteLatents(
                f"frame {self._block}: the world model produced NaN/Inf latents; the weights "
                f"({self.checkpoint or 'random'}) or the actions are broken, so no frames were made"
            )
        self._latents = torch.cat([self._latents[:, 1:], x[:, None]], dim=1)
        return x


def load_unet_session(
    preset: Union[str, Preset], checkpoint: Optional[str] = None, device: str = "cpu", dtype: str = "bf16"
) -> UNetWorldSession:
    """The U-Net world a preset describes (`engine.worlds.build_world` dispatches here); random weights,
    seeded with 0, when neither the preset nor `checkpoint` names a file."""
    from engine.checkpoint import load_unet_weights
    from engine.model.latent_unet import LatentUNet
    from engine.vae.factory import build_vae

    preset = weights_preset(preset, checkpoint)
    model = LatentUNet(preset.unet, preset.vae.z_dim)
    if preset.checkpoint:
        load_unet_weights(model, preset.checkpoint, preset)
    return UNetWorldSession(preset, model, build_vae(preset.vae), device, dtype, checkpoint=preset.checkpoint)

"""Worlds: what the app (and the data recorder) sees of any world, neural or real, and the one factory.

Modules: `session` (the Matrix-Game `WorldModelSession`), `unet_session` (the latent U-Net world),
`vizdoom` (the real game through ViZDoom), `synthetic` (a scrolling-texture world for tests).
`build_world(preset)` dispatches on `preset.world` and `preset.unet`.

A world starts from a start image (worlds with their own start state, such as the ViZDoom world,
may ignore it) and then advances one block at a time: `step` takes the actions for exactly
`actions_needed` video frames and returns that many decoded frames as uint8 [T, H, W, 3].
For a Matrix-Game-style model with 3 latent frames per block this is 9 frames for block 0 and
12 for every later block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Union

import numpy as np

from engine.actions import ActionBlock
from engine.config import Preset, load_preset


@dataclass(frozen=True)
class WorldSpec:
    name: str  # preset name
    mode: str  # action space: universal | gta_drive | templerun
    height: int
    width: int
    fps: float
    keyboard_dim: int
    has_mouse: bool
    block_frames: int = 12  # video frames of every block after the first (r F; 12 for Matrix-Game)


class World(Protocol):
    spec: WorldSpec

    @property
    def actions_needed(self) -> int:
        """Video frames (and actions) the next `step` consumes and returns."""
        ...

    @property
    def block_index(self) -> int:
        """Blocks generated since `start`."""
        ...

    def start(self, image: Optional[np.ndarray], seed: int = 0) -> None:
        """Begin a session. image: uint8 [H, W, 3] at the spec's size (see engine.conditioning)."""
        ...

    def step(self, actions: ActionBlock) -> np.ndarray:
        """Advance one block. Returns uint8 [T, H, W, 3] with T == len(actions) == actions_needed."""
        ...

    def close(self) -> None: ...


WORLDS = ("model", "vizdoom")


class NonFiniteLatents(ValueError):
    """A block's latents hold NaN or Inf (broken weights or inputs): stop rather than show black frames."""


def preset_block_frames(preset: Preset, block_index: int) -> int:
    """Video frames of a block of the preset's neural world (its real-game twin uses the same layout):
    a U-Net world's block 0 is the start frame, later blocks `unet.block_frames`; a Matrix-Game model's
    blocks follow its latent blocks and VAE ratio (`engine.actions.Windowing.block_frames`)."""
    if preset.unet is not None:
        return 1 if block_index == 0 else preset.unet.block_frames
    from engine.actions import preset_windowing

    return preset_windowing(preset).block_frames(block_index, preset.model.num_frame_per_block)


def play(world: World, actions: ActionBlock) -> np.ndarray:
    """Continue a started world through `actions` in its block sizes: uint8 [T, H, W, 3], T = len(actions).

    The last block is padded by repeating the last action and the surplus frames are dropped."""
    frames, used = [], 0
    while used < len(actions):
        n = world.actions_needed
        block = actions.slice(used, used + n)
        if len(block) < n:
            pad = block.slice(len(block) - 1, len(block))
            block = ActionBlock.concat([block] + [pad] * (n - len(block)))
        frames.append(world.step(block))
        used += n
    return np.concatenate(frames)[: len(actions)]


def weights_preset(preset: Union[str, Preset], checkpoint: Optional[str] = None) -> Preset:
    """The preset (a name or a Preset) with `checkpoint` applied (`engine.config.with_weights`), for a
    neural world's loader: a named file must exist; without one the caller builds random weights, so
    torch is seeded with 0 here and every process (and a replay) builds the same ones."""
    import os

    import torch

    from engine.config import with_weights

    preset = with_weights(load_preset(preset) if isinstance(preset, str) else preset, checkpoint)
    if preset.checkpoint and not os.path.isfile(preset.checkpoint):
        raise ValueError(f"checkpoint not found: {preset.checkpoint}")
    if not preset.checkpoint:
        torch.manual_seed(0)
    return preset


def build_world(
    preset: Union[str, Preset],
    checkpoint: Optional[str] = None,
    device: str = "cpu",
    dtype: str = "bf16",
    dit_path: str = "reference",
) -> World:
    """The world a preset describes: the real game for `world: vizdoom`, the latent U-Net world for a
    preset with a `unet` section, else the Matrix-Game streaming session.

    checkpoint: world-model weights instead of the preset's (`engine.config.with_weights`); a preset
    without weights runs random ones, seeded so every process (and a replay) gets the same ones.
    dit_path: the neural world's network path: the Matrix-Game session's DiT path
    (`engine.model.fast_path.PATHS`) or the U-Net world's (`engine.model.unet_fast_path.PATHS`, same names);
    the real game ignores it.
    """
    if isinstance(preset, str):
        preset = load_preset(preset)
    if preset.world == "vizdoom":
        try:
            from engine.worlds.vizdoom import VizDoomWorld
        except ImportError as e:
            message = f"preset {preset.name!r} needs the ViZDoom world: {e} (pip install vizdoom)"
            raise ValueError(message) from None
        return VizDoomWorld(preset)
    if preset.world != "model":
        raise ValueError(f"preset {preset.name}: unknown world {preset.world!r}; expected one of {WORLDS}")
    if preset.unet is not None:
        from engine.worlds.unet_session import load_unet_session

        return load_unet_session(preset, checkpoint, device=device, dtype=dtype, net_path=dit_path)
    from engine.worlds.session import load_session

    return load_session(preset, checkpoint, device=device, dtype=dtype, dit_path=dit_path)

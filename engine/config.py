"""Configuration dataclasses for every engine component, and the preset loader.

A preset is one YAML file in `configs/` that fills a `Preset`. YAML is merged over the structured
dataclass with OmegaConf, so an unknown or misspelled key is an error, not a silent default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
REPO_DIR = CONFIG_DIR.parent


@dataclass(frozen=True)
class ActionConfig:
    """Action module (Matrix-Game 2.0 `action_config`); names follow the official config.json."""

    blocks: tuple[int, ...] = ()  # transformer blocks that carry an action module
    enable_keyboard: bool = True
    enable_mouse: bool = True
    heads_num: int = 16
    hidden_size: int = 128  # keyboard embedding width
    img_hidden_size: int = 1536  # must equal ModelConfig.dim
    keyboard_dim_in: int = 4
    keyboard_hidden_dim: int = 1024
    mouse_dim_in: int = 2
    mouse_hidden_dim: int = 1024
    mouse_qk_dim_list: tuple[int, ...] = (8, 28, 28)
    rope_dim_list: tuple[int, ...] = (8, 28, 28)
    rope_theta: float = 256.0
    patch_size: tuple[int, int, int] = (1, 2, 2)
    qk_norm: bool = True
    qkv_bias: bool = False
    vae_time_compression_ratio: int = 4
    windows_size: int = 3


@dataclass(frozen=True)
class ModelConfig:
    """CausalWanModel. `image_context_dim` None means no CLIP cross-attention branch."""

    dim: int = 1536
    ffn_dim: int = 8960
    freq_dim: int = 256
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 36  # noisy latent 16 + mask 4 + image latent 16
    out_dim: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    local_attn_size: int = 6  # latent frames kept in the self-attention window
    sink_size: int = 0  # latent frames never evicted from the window
    num_frame_per_block: int = 3
    image_context_dim: Optional[int] = 1280
    cross_attn_norm: bool = True
    qk_norm: bool = True
    action: Optional[ActionConfig] = None


@dataclass(frozen=True)
class SamplerConfig:
    """Streaming sampler; names follow the official inference YAML."""

    denoising_step_list: tuple[float, ...] = (1000, 666, 333)
    warp_denoising_step: bool = True
    timestep_shift: float = 5.0
    num_train_timesteps: int = 1000
    context_noise: float = 0.0
    kind: str = "x0_renoise"  # "x0_renoise" (distilled) or "euler" (plain velocity loop)


@dataclass(frozen=True)
class VAEConfig:
    """Which VAE a preset decodes with. kind: "wan" (Wan 2.1) or "tiny" (our tiny causal VAE)."""

    kind: str = "wan"
    z_dim: int = 16
    base_dim: int = 96
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal: int = 4  # video frames per latent frame (tiny VAE: 4 or 1; the Wan VAE is always 4)
    checkpoint: str = ""  # path, relative to the repo root or absolute; empty = random weights


@dataclass(frozen=True)
class ImageEncoderConfig:
    """CLIP vision tower for the cross-attention context. kind: "clip" or "none".

    Defaults are ViT-H/14 as used by Matrix-Game 2.0 (tokens after `use_layers` of `layers` blocks);
    tiny presets shrink width/layers for tests.
    """

    kind: str = "none"
    checkpoint: str = ""
    image_size: int = 224
    patch_size: int = 14
    width: int = 1280
    layers: int = 32
    heads: int = 16
    mlp_ratio: float = 4.0
    use_layers: int = 31


@dataclass(frozen=True)
class GameConfig:
    """A real game as a world (world: vizdoom): which WAD and maps, and game tics per video frame."""

    wad: str = "freedoom2.wad"
    maps: tuple[str, ...] = ("MAP01",)
    tics_per_frame: int = 2  # Doom runs 35 tics/s: 2 tics per frame = 17.5 fps
    auto_use: bool = False  # press USE while W is held: walking into a door opens it (no use key)
    episode_timeout_s: float = 600.0


@dataclass(frozen=True)
class Preset:
    """Everything needed to build and run one world model."""

    name: str = ""
    world: str = "model"  # "model" (a neural world model) or "vizdoom" (the real game)
    mode: str = "universal"  # action space: universal | gta_drive | templerun
    height: int = 352  # video frame size in pixels
    width: int = 640
    fps: float = 12.0
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    checkpoint: str = ""  # default world-model weights; empty = random weights
    start_images: tuple[str, ...] = ()  # default start images, relative to the repo root
    # What fills cond_concat's latent channels (engine.conditioning): "image" = Matrix-Game 2.0's
    # [start image, gray, ...]; "last_latent" = the latest clean latent before each block.
    condition: str = "image"
    game: GameConfig = field(default_factory=GameConfig)


def list_presets() -> list[str]:
    """Names of the presets in `configs/`."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def preset_from_dict(data: dict, name: str = "") -> Preset:
    """Build a `Preset` from plain data, rejecting unknown keys and wrong types with a ValueError."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Preset), OmegaConf.create(data))
        preset = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ValueError(f"invalid preset {name or '<dict>'}: {str(e).splitlines()[0]}") from None
    if not preset.name:
        preset = _replace(preset, name=name)
    preset = _resolve_paths(preset)
    act = preset.model.action
    if preset.world == "model" and act is not None and act.vae_time_compression_ratio != preset.vae.temporal:
        raise ValueError(
            f"invalid preset {preset.name}: model.action.vae_time_compression_ratio "
            f"{act.vae_time_compression_ratio} != vae.temporal {preset.vae.temporal} (the action windows "
            "span the VAE's video frames per latent)"
        )
    return preset


def _preset_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown preset {name_or_path!r}; choose one of: {', '.join(list_presets())}")
    return path


def _preset_data(path: Path, seen: tuple[str, ...] = ()) -> dict:
    """A preset file's data with its `base` chain merged under it (the file's own keys win)."""
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}
    base = data.pop("base", None)
    if base is None:
        return data
    if base in seen:
        raise ValueError(f"preset {path.stem}: `base` chain loops ({' -> '.join(seen + (base,))})")
    parent = _preset_data(_preset_path(base), seen + (path.stem,))
    parent.pop("name", None)  # a variant is named after its own file
    return OmegaConf.to_container(OmegaConf.merge(parent, data), resolve=True)


def load_preset(name_or_path: str) -> Preset:
    """Load a preset by name (`configs/NAME.yaml`) or by path to a YAML file.

    `base: OTHER` in a preset file merges that preset under it, so a variant states only what differs;
    weight and start-image paths come back resolved (absolute)."""
    path = _preset_path(name_or_path)
    return preset_from_dict(_preset_data(path), name=path.stem)


def with_weights(
    preset: Preset,
    checkpoint: Optional[str] = None,
    vae: Optional[str] = None,
    image_encoder: Optional[str] = None,
) -> Preset:
    """The preset with weight files replaced (absolute paths; kept in meta.json, so replay finds them).

    The one place a `--checkpoint` / `--vae-checkpoint` / `--image-encoder-checkpoint` override
    enters; everything downstream reads the preset's fields only."""
    if checkpoint:
        preset = _replace(preset, checkpoint=os.path.abspath(checkpoint))
    if vae:
        preset = _replace(preset, vae=_replace(preset.vae, checkpoint=os.path.abspath(vae)))
    if image_encoder:
        enc = _replace(preset.image_encoder, checkpoint=os.path.abspath(image_encoder))
        preset = _replace(preset, image_encoder=enc)
    return preset


def preset_to_dict(preset: Preset) -> dict:
    """Plain-data form of a preset (for embedding in checkpoints and meta.json)."""
    return OmegaConf.to_container(OmegaConf.structured(preset), resolve=True)


def resolve_path(path: str) -> str:
    """Resolve a path from a preset: absolute, or relative to the repository root."""
    if not path or os.path.isabs(path):
        return path
    return str(REPO_DIR / path)


def _resolve_paths(preset: Preset) -> Preset:
    """Weight files and start images made absolute (relative ones are relative to the repo root)."""
    enc = preset.image_encoder
    return _replace(
        preset,
        checkpoint=resolve_path(preset.checkpoint),
        vae=_replace(preset.vae, checkpoint=resolve_path(preset.vae.checkpoint)),
        image_encoder=_replace(enc, checkpoint=resolve_path(enc.checkpoint)),
        start_images=tuple(resolve_path(p) for p in preset.start_images),
    )


def _replace(obj, **changes):
    from dataclasses import replace

    return replace(obj, **changes)

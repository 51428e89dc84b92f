"""Configuration dataclasses for every engine component, and the preset loader.

A preset is one YAML file in `configs/` that fills a `Preset`. YAML is merged over the structured
dataclass with OmegaConf, so an unknown or misspelled key is an error, not a silent default.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
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
    # tiny VAE only: "learned" (a conv encoder) or "pool" (fixed: each frame average-pooled by `pool`, the
    # coarse image folded onto the x8 latent grid, z_dim = 3 (8 / pool)^2; only the decoder learns, as
    # an upsampler; `pool_mean` (RGB) and `pool_std` fix the latent normalisation)
    encoder: str = "learned"
    pool: int = 4
    pool_mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    pool_std: float = 1.0
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
class UNetConfig:
    """A DIAMOND-style latent U-Net world (`engine.model.latent_unet`): each video frame's latent is
    denoised from the last `context_frames` latents and their actions, EDM-preconditioned, in `steps`
    Euler steps from `sigma_max` down a Karras schedule. A preset with this section plays it instead of
    the CausalWanModel (whose `model` section it then ignores)."""

    channels: tuple[int, ...] = (96, 160, 224)  # widths per resolution (x1, /2, /4 of the latent grid)
    res_blocks: int = 2  # residual blocks per resolution on the way down (and up)
    cond_dim: int = 256  # the embedding of noise level, context level and actions
    context_frames: int = 4  # latents (and actions) the next frame is predicted from
    keyboard_dim: int = 4
    mouse_dim: int = 2  # 0 = no mouse
    sigma_data: float = 0.75  # std of the normalised latents (EDM preconditioning)
    steps: int = 2
    sigma_min: float = 0.3  # the last level before 0: the final step is x0 from here
    sigma_max: float = 5.0
    rho: float = 7.0
    context_noise: float = 0.0  # sigma of the noise put on the context at play time (its level is given)
    block_frames: int = 1  # video frames per `step` after block 0 (block 0 is the start frame)
    residual: bool = False  # denoise the change from the newest context latent, not the latent itself
    # residual worlds only: centre on the newest latent turned by the newest action's yaw (a camera
    # rotation warp, `engine.model.turn_warp`); 0 = off, else the view's horizontal field of view (deg)
    turn_fov: float = 0.0
    turn_degrees: float = 15.0  # degrees of yaw per unit of mouse yaw (the world's mouse scale)
    turn_patch: int = 1  # latent channels are pixel_unshuffle(image, turn_patch): warp the image


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
    start_images: tuple[str, ...] = ()  # default start images (relative paths: see `resolve_path`)
    # What fills cond_concat's latent channels (engine.conditioning): "image" = Matrix-Game 2.0's
    # [start image, gray, ...]; "last_latent" = the latest clean latent before each block.
    condition: str = "image"
    game: GameConfig = field(default_factory=GameConfig)
    unet: Optional[UNetConfig] = None  # set: the world is a latent U-Net (engine.model.latent_unet)


def list_presets() -> list[str]:
    """Names of the presets in `configs/`."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def preset_from_dict(data: dict, name: str = "", folder: Optional[Path] = None) -> Preset:
    """Build a `Preset` from plain data, rejecting unknown keys and wrong types with a ValueError.

    folder: where relative weight and image paths are looked for first (`resolve_path`)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Preset), OmegaConf.create(data))
        preset = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ValueError(f"invalid preset {name or '<dict>'}: {str(e).splitlines()[0]}") from None
    if not preset.name:
        preset = _replace(preset, name=name)
    preset = _resolve_paths(preset, folder)
    problem = preset_problem(preset)
    if problem:
        raise ValueError(f"invalid preset {preset.name}: {problem}")
    return preset


def preset_problem(preset: Preset) -> str:
    """What makes a preset unusable, in one phrase ("" when it is fine); checked before anything is built,
    so a bad value fails at once instead of after building a large model."""
    if preset.world not in ("model", "vizdoom"):
        return f"world {preset.world!r} is not 'model' or 'vizdoom'"
    if preset.mode not in ("universal", "gta_drive", "templerun"):
        return f"mode {preset.mode!r} is not universal, gta_drive or templerun"
    if preset.height < 1 or preset.width < 1:
        return f"height and width must be >= 1, got {preset.height}x{preset.width}"
    if not (math.isfinite(preset.fps) and preset.fps > 0):
        return f"fps must be a finite number > 0, got {preset.fps}"
    if preset.world != "model":
        return ""
    if preset.unet is not None:
        return unet_problem(preset)
    m, s = preset.model, preset.sampler
    for key in ("dim", "ffn_dim", "freq_dim", "num_heads", "num_layers", "in_dim", "out_dim"):
        if getattr(m, key) < 1:
            return f"model.{key} must be >= 1, got {getattr(m, key)}"
    if m.dim % m.num_heads:
        return f"model.dim {m.dim} is not a multiple of model.num_heads {m.num_heads}"
    if m.num_frame_per_block < 1 or m.local_attn_size < m.num_frame_per_block:
        return (
            f"model.num_frame_per_block ({m.num_frame_per_block}) must be >= 1 and <= "
            f"model.local_attn_size ({m.local_attn_size})"
        )
    steps = list(s.denoising_step_list)
    if not steps or any(not (0 < t <= s.num_train_timesteps) for t in steps) or steps != sorted(steps)[::-1]:
        return (
            f"sampler.denoising_step_list must be decreasing timesteps in (0, {s.num_train_timesteps}], "
            f"got {steps}"
        )
    if len(set(steps)) != len(steps):
        return f"sampler.denoising_step_list repeats a timestep: {steps}"
    if preset.vae.kind not in ("wan", "tiny"):
        return f"vae.kind {preset.vae.kind!r} is not 'wan' or 'tiny'"
    if preset.vae.temporal not in (1, 4):
        return f"vae.temporal must be 1 or 4, got {preset.vae.temporal}"
    act = m.action
    if act is not None and act.vae_time_compression_ratio != preset.vae.temporal:
        return (
            f"model.action.vae_time_compression_ratio {act.vae_time_compression_ratio} != vae.temporal "
            f"{preset.vae.temporal} (the action windows span the VAE's video frames per latent)"
        )
    return ""


def unet_problem(preset: Preset) -> str:
    """What makes a latent U-Net world preset unusable ("" when fine)."""
    u = preset.unet
    if not u.channels or min(u.channels) < 8 or any(c % 4 for c in u.channels):
        return f"unet.channels must be multiples of 4 and >= 8, got {list(u.channels)}"
    for key in ("res_blocks", "cond_dim", "context_frames", "steps", "block_frames"):
        if getattr(u, key) < 1:
            return f"unet.{key} must be >= 1, got {getattr(u, key)}"
    if not (0 < u.sigma_min < u.sigma_max) or u.sigma_data <= 0 or u.rho <= 0 or u.context_noise < 0:
        return "unet needs 0 < sigma_min < sigma_max, sigma_data > 0, rho > 0 and context_noise >= 0"
    if preset.vae.temporal != 1:
        return f"a unet world needs vae.temporal 1 (one latent per frame), got {preset.vae.temporal}"
    if preset.height % 8 or preset.width % 8:
        return f"a unet world needs height and width multiples of 8, got {preset.height}x{preset.width}"
    return ""


def image_context_problem(preset: Preset) -> str:
    """A neural preset's CLIP branch and image encoder must agree ("" when they do, or for the game).

    Checked for preset files (`load_preset`), whose dataclass defaults would otherwise build a 1.6 B
    model before the session refuses the missing encoder."""
    m, enc = preset.model, preset.image_encoder
    if preset.world != "model" or preset.unet is not None or m.image_context_dim is None:
        return ""
    if enc.kind != "clip":
        return "model.image_context_dim is set but image_encoder.kind is not 'clip' (set one or the other)"
    if enc.width != m.image_context_dim:
        return f"model.image_context_dim {m.image_context_dim} != image_encoder.width {enc.width}"
    return ""


def _preset_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown preset {name_or_path!r}; choose one of: {', '.join(list_presets())}")
    return path


def _preset_data(path: Path, seen: tuple[str, ...] = ()) -> dict:
    """A preset file's data with its `base` chain merged under it (the file's own keys win)."""
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}
    except (OmegaConfBaseException, yaml.YAMLError) as e:
        where = getattr(getattr(e, "problem_mark", None), "line", None)
        at = "" if where is None else f" (line {where + 1})"
        raise ValueError(f"preset {path}: not valid YAML{at}; fix the file") from None
    if not isinstance(data, dict):
        raise ValueError(f"preset {path}: expected a mapping of keys (height: ..., model: ...), got a list")
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
    weight and start-image paths come back resolved (absolute). In a file outside `configs/` (a world
    made by `engine.make_world`) a relative path names a file beside the preset when one is there, so
    the folder can be moved; otherwise it is relative to the repository root, as in `configs/`."""
    path = _preset_path(name_or_path)
    folder = path.resolve().parent
    own = None if folder.is_relative_to(CONFIG_DIR) else folder
    preset = preset_from_dict(_preset_data(path), name=path.stem, folder=own)
    problem = image_context_problem(preset)
    if problem:
        raise ValueError(f"invalid preset {preset.name} ({path}): {problem}")
    return preset


# The Hugging Face repo Skywork/Matrix-Game-2.0 as downloaded: one distilled DiT per mode, one VAE and
# one CLIP file for all (docs: shared reference matrix-game-2.md, section 11).
MG2_DIT_FILES = {
    "universal": "base_distilled_model/base_distill.safetensors",
    "gta_drive": "gta_distilled_model/gta_keyboard2dim.safetensors",
    "templerun": "templerun_distilled_model/templerun_7dim_onlykey.safetensors",
}
MG2_VAE_FILE = "Wan2.1_VAE.pth"
MG2_CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
MG2_PRESETS = {"universal": "mg2-universal", "gta_drive": "mg2-gta-drive", "templerun": "mg2-templerun"}


def model_dir_files(
    preset: Preset, model_dir: str, given: tuple[Optional[str], ...] = (None, None, None)
) -> tuple[str, str, str]:
    """(DiT, VAE, CLIP) paths in a Skywork/Matrix-Game-2.0 folder for an mg2 preset, or a one-line
    ValueError naming the missing file and what the folder should hold.

    An mg2 preset is one that builds the official model of its mode (same `model`, a Wan VAE and a CLIP
    encoder as `mg2-<mode>`), so a renamed copy of an mg2 YAML qualifies and `tiny` does not. `given`:
    (DiT, VAE, CLIP) files passed on their own, which the folder then need not hold."""
    official = MG2_PRESETS.get(preset.mode)
    if (
        official is None
        or preset.world != "model"
        or preset.unet is not None
        or preset.vae.kind != "wan"
        or preset.image_encoder.kind != "clip"
        or preset.model != load_preset(official).model
    ):
        raise ValueError(
            f"--model-dir is for the Matrix-Game 2.0 presets ({', '.join(MG2_PRESETS.values())}); "
            f"preset {preset.name} is not one (pass --checkpoint FILE instead)"
        )
    wanted = (MG2_DIT_FILES[preset.mode], MG2_VAE_FILE, MG2_CLIP_FILE)
    should = (
        f"it should hold the Hugging Face repo Skywork/Matrix-Game-2.0: {', '.join(wanted)} for {preset.name}"
    )
    if not os.path.isdir(model_dir):
        raise ValueError(f"--model-dir {model_dir}: folder not found; {should}")
    paths = tuple(os.path.join(model_dir, name) for name in wanted)
    for name, path, own in zip(wanted, paths, given, strict=True):
        if not own and not os.path.isfile(path):
            raise ValueError(f"--model-dir {model_dir}: {name} is missing; {should}")
    return paths


def with_weights(
    preset: Preset,
    checkpoint: Optional[str] = None,
    vae: Optional[str] = None,
    image_encoder: Optional[str] = None,
    model_dir: Optional[str] = None,
) -> Preset:
    """The preset with weight files replaced (absolute paths; kept in meta.json, so replay finds them).

    The one place a `--checkpoint` / `--vae-checkpoint` / `--image-encoder-checkpoint` / `--model-dir`
    override enters; everything downstream reads the preset's fields only. `model_dir` (an mg2 preset
    only, `model_dir_files`) supplies the three files; a file given on its own wins over the folder's."""
    if model_dir:
        dit_file, vae_file, clip_file = model_dir_files(preset, model_dir, (checkpoint, vae, image_encoder))
        checkpoint, vae, image_encoder = checkpoint or dit_file, vae or vae_file, image_encoder or clip_file
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


def resolve_path(path: str, folder: Optional[Path] = None) -> str:
    """Resolve a path from a preset: absolute; relative to `folder` when that file exists there (a preset
    file's own folder, outside `configs/`); else relative to the repository root."""
    if not path or os.path.isabs(path):
        return path
    if folder is not None and (folder / path).exists():
        return str(folder / path)
    return str(REPO_DIR / path)


def _resolve_paths(preset: Preset, folder: Optional[Path] = None) -> Preset:
    """Weight files and start images made absolute (`resolve_path`)."""
    enc = preset.image_encoder

    def res(path: str) -> str:
        return resolve_path(path, folder)

    return _replace(
        preset,
        checkpoint=res(preset.checkpoint),
        vae=_replace(preset.vae, checkpoint=res(preset.vae.checkpoint)),
        image_encoder=_replace(enc, checkpoint=res(enc.checkpoint)),
        start_images=tuple(res(p) for p in preset.start_images),
    )


def _replace(obj, **changes):
    from dataclasses import replace

    return replace(obj, **changes)

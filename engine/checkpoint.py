"""Loading and saving CausalWanModel weights.

Two formats, both safetensors:
- official Matrix-Game 2.0 files: keys prefixed `model.` (a `WanDiffusionWrapper` state dict), strict;
- our own: unprefixed keys, with the preset embedded as JSON under the metadata key `worldplayer_preset`.

Every failure raises `CheckpointError` (a ValueError) with one line that names the file and the problem,
e.g. "templerun.safetensors does not fit preset mg2-universal: keyboard_dim_in 7 != 4".
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Optional, Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.config import ModelConfig, Preset, preset_to_dict

PRESET_KEY = "worldplayer_preset"
OFFICIAL_PREFIX = "model."
MAX_LISTED = 10


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the preset."""


def load_model_state(path: Union[str, Path]) -> tuple[dict[str, torch.Tensor], Optional[dict]]:
    """Read a checkpoint: (state dict with unprefixed keys, embedded preset dict or None)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; pass the .safetensors file inside it")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for truncated or foreign files
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path.name}: not a readable safetensors file ({first})") from None
    if not state:
        raise CheckpointError(f"{path.name}: holds no tensors")
    preset = None
    if PRESET_KEY in metadata:
        try:
            preset = json.loads(metadata[PRESET_KEY])
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path.name}: metadata {PRESET_KEY} is not valid JSON ({e})") from None
    prefixed = [k.startswith(OFFICIAL_PREFIX) for k in state]
    if all(prefixed):
        state = {k[len(OFFICIAL_PREFIX) :]: v for k, v in state.items()}
    elif any(prefixed):
        raise CheckpointError(f"{path.name}: mixes `model.`-prefixed and unprefixed keys")
    return state, preset


def save_checkpoint(path: Union[str, Path], model: torch.nn.Module, preset: Preset) -> None:
    """Write our format: unprefixed safetensors + the preset as JSON metadata."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={PRESET_KEY: json.dumps(preset_to_dict(preset))})


def load_weights_into(
    model: torch.nn.Module, path: Union[str, Path], cfg: Union[Preset, ModelConfig]
) -> Optional[dict]:
    """Load a checkpoint into `model` (built from `cfg`) strictly; returns the embedded preset dict or None.

    A file for another mode or size raises CheckpointError naming the mismatch, e.g. `keyboard_dim_in 7 != 4`.
    """
    path = Path(path)
    name = cfg.name if isinstance(cfg, Preset) else ""
    mcfg = cfg.model if isinstance(cfg, Preset) else cfg
    state, preset = load_model_state(path)
    diffs = _config_diffs(state, mcfg)
    if preset is not None:
        diffs += _head_diffs(preset.get("model", {}), mcfg)
    _load_strict(model, state, diffs, path, f"preset {name}" if name else "the model config")
    return preset


def load_unet_weights(model: torch.nn.Module, path: Union[str, Path], preset: Preset) -> None:
    """Load a latent U-Net checkpoint (ours, with the preset embedded) into `model` strictly.

    A DiT file or a U-Net of another shape raises CheckpointError naming what differs."""
    path = Path(path)
    state, file_preset = load_model_state(path)
    trained = (file_preset or {}).get("unet")
    if not trained:
        raise CheckpointError(
            f"{path.name} is not a latent U-Net world (no `unet` section in its preset); "
            f"preset {preset.name} plays only those"
        )
    ours = preset_to_dict(preset)["unet"]
    keys = ("channels", "res_blocks", "cond_dim", "context_frames", "keyboard_dim", "mouse_dim")
    diffs = [
        f"unet.{k} {_plain(trained.get(k))} != {_plain(ours[k])}"
        for k in keys
        if _plain(trained.get(k)) != _plain(ours[k])
    ]
    if diffs:  # the shapes that follow from them add nothing
        raise CheckpointError(f"{path.name} does not fit preset {preset.name}: " + "; ".join(diffs))
    _load_strict(model, state, diffs, path, f"preset {preset.name}")


def _trained_preset(file_preset: dict) -> str:
    """ ", --preset NAME" for a checkpoint's embedded preset when that preset ships, else ""."""
    from engine.config import list_presets

    name = file_preset.get("name", "")
    return f", --preset {name}" if name in list_presets() else f" ({name})" if name else ""


def _plain(value):
    """JSON and dataclass forms of a config value compare equal (lists vs tuples)."""
    return list(value) if isinstance(value, (list, tuple)) else value


def _load_strict(model: torch.nn.Module, state: dict, diffs: list[str], path: Path, target: str) -> None:
    """load_state_dict(strict) after listing every way `state` does not fit (CheckpointError)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong or diffs:
        parts = list(diffs)
        if missing:
            parts.append(_listed("missing keys", missing))
        if unexpected:
            parts.append(_listed("unexpected keys", unexpected))
        if wrong:
            shapes = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}" for k in wrong]
            parts.append(_listed("shape mismatches", shapes))
        raise CheckpointError(f"{path.name} does not fit {target}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def check_conditioning(file_preset: Optional[dict], preset: Preset, path: Union[str, Path]) -> None:
    """Our checkpoints record what their cond_concat channels held in training (`condition`); running
    them with another conditioning gives plausible-looking garbage, so it is a CheckpointError. Files of
    the retired anchor-warp experiment (tag experiments/doom-v1) are refused too. Files without an
    embedded preset (official ones) are not checked."""
    if file_preset is None:
        return
    trained, used = file_preset.get("condition", "image"), preset.condition
    if trained != used:
        raise CheckpointError(
            f"{Path(path).name} was trained with other conditioning than preset {preset.name} "
            f"(file != preset: condition {trained} != {used}); play it with the preset it was trained "
            f"with{_trained_preset(file_preset)}"
        )
    warp = file_preset.get("anchor_warp", {})
    if any(float(v) != 0.0 for v in warp.values()):
        raise CheckpointError(
            f"{Path(path).name} was trained with anchor_warp {warp}, an experiment this version no longer "
            "runs (git tag experiments/doom-v1)"
        )


def _listed(what: str, items: list[str]) -> str:
    more = f", ... (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return f"{len(items)} {what}: " + ", ".join(items[:MAX_LISTED]) + more


def infer_config(state: dict[str, torch.Tensor], patch_size=(1, 2, 2), action_window: int = 12) -> dict:
    """Architecture values readable from tensor shapes alone (num_heads is not)."""
    info: dict = {}
    if "patch_embedding.weight" in state:
        dim, in_dim = state["patch_embedding.weight"].shape[:2]
        info.update(dim=dim, in_dim=in_dim)
    if "time_embedding.0.weight" in state:
        info["freq_dim"] = state["time_embedding.0.weight"].shape[1]
    if "head.head.weight" in state:
        info["out_dim"] = state["head.head.weight"].shape[0] // math.prod(patch_size)
    if "blocks.0.ffn.0.weight" in state:
        info["ffn_dim"] = state["blocks.0.ffn.0.weight"].shape[0]
    layers = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    info["num_layers"] = max(layers) + 1 if layers else 0
    info["image_context_dim"] = (
        state["img_emb.proj.0.weight"].shape[0] if "img_emb.proj.0.weight" in state else None
    )
    action = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.action_model\.", k))})
    info["action_blocks"] = tuple(action)
    if action:
        pre = f"blocks.{action[0]}.action_model."
        kb = state.get(pre + "keyboard_embed.0.weight")
        info["keyboard_dim_in"] = None if kb is None else kb.shape[1]
        info["mouse"] = pre + "mouse_mlp.0.weight" in state
        if info["mouse"] and "dim" in info:
            values = state[pre + "mouse_mlp.0.weight"].shape[1] - info["dim"]  # mouse_dim_in * 12 + dim
            info["mouse_dim_in"] = values // action_window
    return info


def _config_diffs(state: dict[str, torch.Tensor], cfg: ModelConfig) -> list[str]:
    """'field file != preset' for every architecture value the file's shapes contradict."""
    act = cfg.action
    window = act.vae_time_compression_ratio * act.windows_size if act else 12
    got = infer_config(state, cfg.patch_size, window)
    want: dict = dict(
        dim=cfg.dim, in_dim=cfg.in_dim, freq_dim=cfg.freq_dim, out_dim=cfg.out_dim, ffn_dim=cfg.ffn_dim,
        num_layers=cfg.num_layers, image_context_dim=cfg.image_context_dim,
        action_blocks=tuple(sorted(act.blocks)) if act else (),
    )  # fmt: skip
    if act and act.blocks:
        want["keyboard_dim_in"] = act.keyboard_dim_in if act.enable_keyboard else None
        want["mouse"] = act.enable_mouse
        if act.enable_mouse:
            want["mouse_dim_in"] = act.mouse_dim_in
    diffs = []
    for key, w in want.items():
        if key not in got or got[key] == w:
            continue
        g = got[key]
        if key == "mouse":
            diffs.append(f"mouse {'present' if g else 'absent'} != {'present' if w else 'absent'}")
        elif key == "action_blocks":
            diffs.append(f"action blocks {_span(g)} != {_span(w)}")
        else:
            diffs.append(f"{key} {g} != {w}")
    return diffs


def _head_diffs(file_model: dict, cfg: ModelConfig) -> list[str]:
    """Head counts are invisible in shapes; compare them with the preset embedded in our own files."""
    diffs = []
    if "num_heads" in file_model and file_model["num_heads"] != cfg.num_heads:
        diffs.append(f"num_heads {file_model['num_heads']} != {cfg.num_heads}")
    file_act = file_model.get("action") or {}
    if cfg.action and "heads_num" in file_act and file_act["heads_num"] != cfg.action.heads_num:
        diffs.append(f"action heads_num {file_act['heads_num']} != {cfg.action.heads_num}")
    return diffs


def _span(blocks: tuple[int, ...]) -> str:
    if not blocks:
        return "none"
    if list(blocks) == list(range(blocks[0], blocks[-1] + 1)):
        return f"{blocks[0]}..{blocks[-1]}"
    return ",".join(map(str, blocks))

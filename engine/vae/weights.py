"""Read a weights file (.pth/.pt/.bin via torch.load(weights_only=True), or .safetensors) as a state dict.

Every failure is one `WeightsFileError` line that names the file and what was expected.
"""

from __future__ import annotations

import os
from typing import Iterable

import torch


class WeightsFileError(ValueError):
    """A weights file is missing, unreadable, or holds a different model than expected."""


def read_state_dict(path: str, expected: str) -> dict[str, torch.Tensor]:
    """All tensors in `path`, on the CPU. `expected` names the file we want (for error messages)."""
    if not os.path.isfile(path):
        raise WeightsFileError(f"{path}: file not found; expected {expected}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            obj = load_file(path, device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any reader failure means the same thing to the user
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise WeightsFileError(f"{path}: cannot read weights ({reason}); expected {expected}") from None
    # accept a raw state dict or one wrapped once, e.g. {"state_dict": {...}}
    if isinstance(obj, dict) and len(obj) == 1:
        (inner,) = obj.values()
        if isinstance(inner, dict):
            obj = inner
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsFileError(f"{path}: not a state dict of tensors; expected {expected}")
    return obj


def guess_model(keys: Iterable[str]) -> str:
    """A short description of the model a state dict belongs to, judged by its key names."""
    keys = list(keys)
    has = lambda prefix: any(k.startswith(prefix) for k in keys)
    if has("visual.") or has("textual."):
        return "a CLIP model (visual.*/textual.* keys)"
    if has("encoder.") and has("decoder."):
        return "a video VAE (encoder.*/decoder.* keys)"
    if has("model.blocks.") or has("blocks.") or any("self_attn" in k for k in keys):
        return "a diffusion transformer (blocks.*/self_attn keys)"
    return f"an unknown model (first keys: {', '.join(sorted(keys)[:3]) or 'none'})"


def check_keys(
    path: str, expected: str, sd: dict[str, torch.Tensor], model_sd: dict[str, torch.Tensor]
) -> None:
    """Raise a one-line WeightsFileError unless `sd` has exactly the keys and shapes of `model_sd`."""
    missing = [k for k in model_sd if k not in sd]
    if len(missing) == len(model_sd):
        raise WeightsFileError(f"{path}: holds {guess_model(sd)}, not {expected}")
    if missing:
        raise WeightsFileError(
            f"{path}: {len(missing)} tensors missing (first: {missing[0]}); expected {expected}"
        )
    unexpected = [k for k in sd if k not in model_sd]
    if unexpected:
        raise WeightsFileError(
            f"{path}: {len(unexpected)} unexpected tensors (first: {unexpected[0]}); expected {expected}"
        )
    for k, v in model_sd.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise WeightsFileError(
                f"{path}: {k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)} for {expected} "
                "(does the preset's size match the file?)"
            )

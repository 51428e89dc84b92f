"""Training checkpoints: weights in safetensors (with their config), training state for exact resume.

A run folder holds:
  model.safetensors  the trained weights (world models: the preset JSON under `worldplayer_preset`)
  ema.safetensors    EMA weights (world models)
  state.pt           optimiser, LR schedule, step, data-sampler and RNG states (torch/numpy/python)
Files are written to a temporary name and renamed, so a crash mid-save leaves the previous one intact.
state.pt is read with `torch.load(weights_only=True)`: tensors, containers and numbers, plus numpy's
array reconstruction for the numpy RNG state, and nothing else, so a planted pickle cannot run code.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_weights(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Safetensors file of plain contiguous CPU tensors plus string metadata, written atomically
    (the folder is made if missing)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_train_state(out_dir: Path, state: dict) -> None:
    """Write state.pt (optimiser, step, sampler/RNG states, ...) plus the global RNG states."""
    atomic_save({**state, "rng": rng_state()}, out_dir / "state.pt")


def load_train_state(out_dir: Path) -> Optional[dict]:
    """The saved training state of a run folder, or None when it has none (a fresh run)."""
    path = out_dir / "state.pt"
    if not path.is_file():
        return None
    try:
        with _numpy_globals():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # a global outside the allow-list: refuse, never execute it
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"refusing training state {path}: it holds objects other than tensors and numbers ({reason}); "
            "delete it to start the run afresh"
        ) from None
    except (OSError, RuntimeError, EOFError) as e:
        raise ValueError(f"cannot read training state {path}: {e}") from None


def _numpy_globals():
    """Allow exactly what `np.random.get_state()` pickles to (an ndarray of uint32 and its dtype)."""
    import contextlib

    multiarray = getattr(np, "_core", None) or np.core
    allowed = [multiarray.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:  # torch 2.4: a process-wide allow-list
        torch.serialization.add_safe_globals(allowed)
        return contextlib.nullcontext()
    return safe_globals(allowed)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (OSError, RuntimeError) as e:
        raise ValueError(f"cannot read weights {path}: {e}") from None


def export_weights(src: Path, dst: Path, dtype: torch.dtype = torch.bfloat16) -> None:
    """Copy a safetensors checkpoint with its metadata, floating tensors cast to `dtype` (for shipping)."""
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata() or {}
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_weights(src).items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_weights(state, dst, meta)


def check_global_batch(out: Path, state: dict, batch: int, world: int) -> None:
    """A run resumes only with the global batch it was trained with (any split over processes)."""
    saved = state.get("global_batch", batch * world)
    if saved != batch * world:
        raise ValueError(
            f"{out} was trained with a global batch of {saved} (run.batch_size x processes); this run "
            f"has {batch} x {world} = {batch * world}: set run.batch_size to {saved} / processes to resume"
        )


def resume_run(out: Path, model, ema, opt, gen: torch.Generator, batch: int, world: int) -> int:
    """Restore a run folder's weights, EMA, optimiser, data generator and global RNGs into the given
    objects (checking the global batch); returns the step to continue from (0 for a fresh folder)."""
    state = load_train_state(out)
    if state is None:
        return 0
    check_global_batch(out, state, batch, world)
    model.load_state_dict(load_weights(out / "model.safetensors"))
    ema.load_state_dict(load_weights(out / "ema.safetensors"))
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["sampler"][0])
    set_rng_state(state["rng"])
    return int(state["step"])

"""Dream a start frame for a Freedoom 2 level with the VAR generator (optionally exact speculative decoding).

    image = dream_start_image("MAP07", seed=3)   # uint8 [144, 256, 3]

Weights: assets/var/{tokenizer,var_target,var_draft}.safetensors (see docs/var.md for the commands that
make them). Missing weights raise a one-line ValueError.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import torch

from engine.var.frames import FREEDOOM2_MAPS
from engine.var.sample import SampleConfig, sample
from engine.var.speculative import SpecConfig, sample_speculative
from engine.var.transformer import VAR, load_var
from engine.var.vqvae import VQVAE, load_vqvae

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets" / "var"
DEFAULT_SAMPLING = SampleConfig(cfg=2.0, top_k=0, top_p=0.96)


def level_class(level: str) -> int:
    """'MAP07' (any case) -> class 6. Raises ValueError for anything but MAP01..MAP20."""
    m = re.fullmatch(r"MAP(\d\d)", level.strip().upper())
    if not m or level.strip().upper() not in FREEDOOM2_MAPS:
        raise ValueError(f"var: unknown level {level!r}; expected one of MAP01..MAP20 (Freedoom 2)")
    return FREEDOOM2_MAPS.index(level.strip().upper())


@functools.lru_cache(maxsize=2)
def load_generator(assets_dir: str = str(ASSETS_DIR)) -> tuple[VQVAE, VAR, VAR | None]:
    """(tokenizer, target, draft or None) from `assets_dir`, loaded once per process."""
    d = Path(assets_dir)
    for name in ("tokenizer", "var_target"):
        if not (d / f"{name}.safetensors").is_file():
            raise ValueError(f"VAR weights missing: {d / name}.safetensors (make them: see docs/var.md)")
    draft = load_var(d / "var_draft.safetensors") if (d / "var_draft.safetensors").is_file() else None
    return load_vqvae(d / "tokenizer.safetensors"), load_var(d / "var_target.safetensors"), draft


@torch.no_grad()
def dream_start_image(
    level: str,
    seed: int = 0,
    *,
    height: int = 144,
    width: int = 256,
    sampling: SampleConfig = DEFAULT_SAMPLING,
    gamma: int = 2,
    speculative: bool = False,
    assets_dir: str | Path = ASSETS_DIR,
) -> np.ndarray:
    """A new start frame for `level` ('MAP01'..'MAP20') at a fixed `seed`: uint8 [height, width, 3].

    speculative=True uses exact speculative decoding with the draft (same distribution as the target alone);
    it is off by default because it measured slower than the target alone on CPU (docs/var.md)."""
    label = torch.tensor([level_class(level)])
    vae, target, draft = load_generator(str(assets_dir))
    gd, ga = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1_000_003)
    if speculative and draft is not None:
        out = sample_speculative(
            target, draft, vae.quantize, label, sampling, SpecConfig(gamma=gamma), gd, ga
        )
    else:
        out = sample(target, vae.quantize, label, sampling, gd)
    img = vae.fhat_to_img(out.f_hat)[0]  # [3, H, W] in [-1, 1]
    arr = ((img.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    if arr.shape[:2] != (height, width):
        from PIL import Image

        arr = np.asarray(Image.fromarray(arr).resize((width, height), Image.BICUBIC), np.uint8)
    return arr

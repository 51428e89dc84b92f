"""Start images for the app: `--image PATH`, `--image var:MAP07` (dreamed by the VAR generator,
`engine.var.dream_start_image`), or the preset's `start_images`; when none can be read the session starts
from a plain gray frame and says so. Worlds themselves come from `engine.worlds.build_world`.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from engine.config import REPO_DIR, Preset

GRAY = 128


@dataclass
class StartImage:
    label: str  # what the HUD and meta.json call it: a path, "var:MAP07" or "gray"
    path: Optional[str] = None  # file to read, or None
    image: Optional[np.ndarray] = None  # uint8 [H, W, 3] once loaded


def file_sha256(path: str) -> Optional[str]:
    """sha256 of a file, or None for no path / missing file."""
    if not path or not os.path.isfile(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def start_image_choices(
    preset: Preset, image_arg: Optional[str], log: Callable[[str], None] = lambda m: None
) -> list[StartImage]:
    """The start images Tab/`]` cycles through: --image first, then the preset's defaults."""
    choices = []
    if image_arg:
        if image_arg.startswith("var:"):
            choices.append(StartImage(image_arg))
        else:
            if not os.path.isfile(image_arg):
                raise ValueError(f"start image not found: {image_arg}")
            choices.append(StartImage(image_arg, image_arg))
        return choices
    for path in preset.start_images:  # absolute (load_preset resolves them)
        rel = os.path.relpath(path, REPO_DIR) if path.startswith(str(REPO_DIR)) else path
        if os.path.isfile(path):
            choices.append(StartImage(rel, path))
        else:
            log(f"worldplayer: start image {rel} of preset {preset.name!r} is missing; skipping it")
    return choices


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def load_start_image(
    choice: Optional[StartImage], preset: Preset, seed: int = 0, log: Callable[[str], None] = _stderr
) -> tuple[StartImage, np.ndarray]:
    """Read (or dream) a start image at the preset's size; falls back to gray with a message."""
    h, w = preset.height, preset.width
    if choice is None:
        log(
            f"worldplayer: preset {preset.name!r} has no start image; "
            "starting from a gray frame (pass --image PATH)"
        )
        choice = StartImage("gray")
    if choice.image is not None:
        return choice, choice.image
    if choice.label.startswith("var:"):
        choice.image = dream_start_image(preset, choice.label[4:], seed)
    elif choice.path is not None:
        choice.image = read_image(choice.path, h, w)
    else:
        choice.image = np.full((h, w, 3), GRAY, np.uint8)
    return choice, choice.image


def read_image(path: str, height: int, width: int) -> np.ndarray:
    """uint8 [H, W, 3] through the engine's conditioning adapter (one-line ValueError on bad files)."""
    try:
        from engine.conditioning import load_image
    except ImportError:
        load_image = _load_image_pil
    return load_image(path, height, width)


def _load_image_pil(path: str, height: int, width: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((width, height), Image.BICUBIC)
            return np.asarray(im, np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"cannot read start image {path}: {e}") from None


VAR_WAD = "freedoom2.wad"  # the shipped VAR generator was trained on Freedoom 2 MAP01-MAP20 (docs/var.md)


def dream_start_image(preset: Preset, level: str, seed: int = 0) -> np.ndarray:
    """A start scene for `level` from the VAR generator (`engine.var.dream_start_image`), uint8 [H, W, 3]."""
    from engine.var import dream_start_image as dream

    if preset.game.wad != VAR_WAD:
        raise ValueError(
            f"no start-scene generator for {preset.name}: the VAR generator dreams {VAR_WAD} levels, not "
            f"{preset.game.wad} {'/'.join(preset.game.maps)}; use ] for the preset's start images or --image"
        )
    try:
        image = np.asarray(dream(preset, level, seed))
    except ImportError as e:
        raise ValueError(f"the start-scene generator is not available: {e}") from None
    if image.shape != (preset.height, preset.width, 3) or image.dtype != np.uint8:
        raise ValueError(
            f"dreamed start image has {image.shape=} {image.dtype=}, "
            f"expected uint8 {(preset.height, preset.width, 3)}"
        )
    return image


def default_level(preset: Preset, choice: Optional[StartImage]) -> str:
    """Level class for dreaming: a `var:` label or a MAPxx in the image name, else the preset's map."""

    if choice is not None:
        if choice.label.startswith("var:"):
            return choice.label[4:]
        m = re.search(r"(MAP\d\d|E\dM\d)", choice.label, re.IGNORECASE)
        if m:
            return m.group(1).upper()
    return preset.game.maps[0] if preset.game.maps else "MAP01"


class StartImages:
    """The start images a live session cycles through (`]` next), and dreamed ones (`N`)."""

    def __init__(
        self,
        preset: Preset,
        image_arg: Optional[str] = None,
        seed: int = 0,
        log: Callable[[str], None] = _stderr,
    ):
        self.preset = preset
        self.seed = seed
        self.log = log
        self.choices = start_image_choices(preset, image_arg, log)
        self.index = 0
        self.current_choice: Optional[StartImage] = None
        self.own_start = preset.world == "vizdoom"  # worlds that start from their own state (the game)

    def current(self) -> tuple[str, Optional[np.ndarray]]:
        """(label, uint8 [H, W, 3]) of the current start image; None for worlds with their own start."""
        if self.own_start:
            return (self.preset.game.maps[0] if self.preset.game.maps else "game"), None
        choice = self.choices[self.index] if self.choices else None
        self.current_choice, image = load_start_image(choice, self.preset, self.seed, self.log)
        return self.current_choice.label, image

    def advance(self) -> tuple[str, Optional[np.ndarray]]:
        if self.choices:
            self.index = (self.index + 1) % len(self.choices)
        return self.current()

    def dream(self, seed: int) -> tuple[str, np.ndarray]:
        """A new start scene for the current level from the VAR generator (ValueError if unavailable)."""
        level = default_level(self.preset, self.current_choice)
        return f"var:{level}", dream_start_image(self.preset, level, seed)

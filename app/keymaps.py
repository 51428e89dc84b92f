"""Keymaps per action mode, as data.

A keymap turns the set of held key names (pygame key names: "w", "up", "left shift", ...) into one row of
model actions: a keyboard multi-hot in the mode's key order and, for modes with a camera, a mouse row
[pitch, yaw] in model units (1.0 = 15 degrees per video frame; up and right positive).

- universal: W S A D = forward, back, strafe left, strafe right; mouse looks; I/K pitch and J/L yaw are
  keyboard camera alternatives (CAM_VALUE = 0.1 per frame, as the official interactive maps).
- gta_drive: W S = throttle, brake/reverse; A D steer (yaw -/+ CAM_VALUE); no mouse look.
- templerun: one-hot [nomove, jump, slide, turnleft, turnright, leftside, rightside]; W jump, S slide,
  A/D side step, Q/E and the left/right arrows turn; nothing held = nomove.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

CAM_VALUE = 0.1  # camera step per video frame of the official interactive maps


@dataclass(frozen=True)
class KeyMap:
    mode: str
    keyboard: tuple[tuple[str, ...], ...]  # per keyboard dimension, the key names that set it
    labels: tuple[str, ...]  # per keyboard dimension, a short name for the HUD
    camera: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (pitch, yaw) per frame
    mouse_look: bool = False  # relative mouse motion drives [pitch, yaw]
    has_mouse: bool = False  # the world takes a mouse row at all
    one_hot_idle: Optional[int] = None  # one-hot modes: index set when no key is held

    @property
    def keyboard_dim(self) -> int:
        return len(self.keyboard)

    def keyboard_row(self, held: Iterable[str]) -> np.ndarray:
        """Keyboard row float32 [K] for the held keys (one-hot modes keep the first held dimension)."""
        held = set(held)
        row = np.zeros(self.keyboard_dim, np.float32)
        for i, keys in enumerate(self.keyboard):
            if i != self.one_hot_idle and held.intersection(keys):
                row[i] = 1.0
        if self.one_hot_idle is not None:
            hot = np.flatnonzero(row)
            row[:] = 0.0
            row[hot[0] if len(hot) else self.one_hot_idle] = 1.0
        return row

    def camera_row(self, held: Iterable[str]) -> np.ndarray:
        """Camera [pitch, yaw] float32 [2] from the held keyboard camera keys, at sensitivity 1."""
        row = np.zeros(2, np.float32)
        for key in set(held):
            if key in self.camera:
                row += np.asarray(self.camera[key], np.float32)
        return row

    def action_keys(self) -> set[str]:
        """Every key name this map reads (the HUD shows only these)."""
        keys = {k for group in self.keyboard for k in group}
        return keys | set(self.camera)


KEYMAPS: dict[str, KeyMap] = {
    "universal": KeyMap(
        mode="universal",
        keyboard=(("w",), ("s",), ("a",), ("d",)),
        labels=("W", "S", "A", "D"),
        camera={
            "i": (CAM_VALUE, 0.0),
            "k": (-CAM_VALUE, 0.0),
            "j": (0.0, -CAM_VALUE),
            "l": (0.0, CAM_VALUE),
        },
        mouse_look=True,
        has_mouse=True,
    ),
    "gta_drive": KeyMap(
        mode="gta_drive",
        keyboard=(("w", "up"), ("s", "down")),
        labels=("W", "S"),
        camera={
            "a": (0.0, -CAM_VALUE),
            "left": (0.0, -CAM_VALUE),
            "d": (0.0, CAM_VALUE),
            "right": (0.0, CAM_VALUE),
        },
        mouse_look=False,
        has_mouse=True,
    ),
    "templerun": KeyMap(
        mode="templerun",
        keyboard=((), ("w", "up"), ("s", "down"), ("q", "left"), ("e", "right"), ("a",), ("d",)),
        labels=("idle", "jump", "slide", "turnL", "turnR", "sideL", "sideR"),
        one_hot_idle=0,
    ),
}


def keymap_for(mode: str) -> KeyMap:
    """The keymap of an action mode; ValueError naming the known modes otherwise."""
    if mode not in KEYMAPS:
        raise ValueError(f"no keymap for action mode {mode!r}; known modes: {', '.join(KEYMAPS)}")
    return KEYMAPS[mode]


# Window controls (app.window), as data for the help text: (keys, what they do).
APP_KEYS: tuple[tuple[str, str], ...] = (
    ("Tab", "capture/release the mouse"),
    ("+/-", "mouse sensitivity"),
    ("P", "pause"),
    ("R", "record on/off"),
    ("Backspace", "restart"),
    ("]", "next start image"),
    ("N", "dream a new start scene"),
    ("H", "HUD"),
    ("F11", "fullscreen"),
    ("F12", "screenshot"),
    ("Esc", "release the mouse, then quit"),
)


def _key_names(keys: Iterable[str]) -> str:
    return "/".join(k.upper() if len(k) == 1 else k for k in keys)


def keys_help() -> str:
    """The window's key help (CLI epilog), generated from `KEYMAPS` and `APP_KEYS`."""
    lines = ["window keys:"]
    for mode, km in KEYMAPS.items():
        keys = []
        for k, label in zip(km.keyboard, km.labels, strict=True):
            name = _key_names(k)
            keys += [name if name.split("/")[0] == label else f"{name} {label}"] if k else []
        look = ["mouse look"] if km.mouse_look else []
        if km.camera:
            look.append(f"{_key_names(km.camera)} camera")
        lines.append(f"  {mode}: " + ", ".join(keys + look))
    app = [f"{k} {what}" for k, what in APP_KEYS]
    lines += ["  " + "   ".join(app[i : i + 4]) for i in range(0, len(app), 4)]
    return "\n".join(lines)

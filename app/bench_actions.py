"""Scripted action sequences for `--actions bench:NAME`, after the official benchmark generators.

Matrix-Game 2.0's `utils/conditions.py` draws frame 0 from a random action and then one random action
per 12-frame segment from a per-mode list (Python `random`, seeded). `bench:random` does the same with
our seed; `bench:NAME` holds one named action for the whole sequence, e.g. `bench:forward`,
`bench:forward_left+camera_r`, `bench:jump`.
"""

from __future__ import annotations

import random

import numpy as np

from engine.actions import ActionBlock

CAM = 0.1
SEGMENT = 12

UNIVERSAL_KEYS = {
    "none": [],
    "forward": [0],
    "back": [1],
    "left": [2],
    "right": [3],
    "forward_left": [0, 2],
    "forward_right": [0, 3],
    "back_left": [1, 2],
    "back_right": [1, 3],
}
UNIVERSAL_CAMERA = {
    "camera_none": [0.0, 0.0],
    "camera_up": [CAM, 0.0],
    "camera_down": [-CAM, 0.0],
    "camera_l": [0.0, -CAM],
    "camera_r": [0.0, CAM],
    "camera_ur": [CAM, CAM],
    "camera_ul": [CAM, -CAM],
    "camera_dr": [-CAM, CAM],
    "camera_dl": [-CAM, -CAM],
}
GTA_KEYS = {"none": [], "forward": [0], "back": [1]}
GTA_CAMERA = {"camera_none": [0.0, 0.0], "camera_l": [0.0, -CAM], "camera_r": [0.0, CAM]}
TEMPLERUN = ["nomove", "jump", "slide", "turnleft", "turnright", "leftside", "rightside"]


def _universal_list() -> list[str]:
    """The official universal test list: double, single camera, single action, action x camera."""
    double = ["forward_left", "forward_right", "back_left", "back_right"]
    cameras = [
        "camera_up",
        "camera_down",
        "camera_l",
        "camera_r",
        "camera_ur",
        "camera_ul",
        "camera_dr",
        "camera_dl",
    ]
    singles = ["forward", "back", "left", "right"]
    combos = [
        f"{a}+{c}"
        for a in ["forward", "left", "right", "forward_left", "forward_right"]
        for c in ["camera_l", "camera_r"]
    ]
    return double * 5 + cameras * 5 + singles * 5 + combos


def _gta_list() -> list[str]:
    return ["forward", "back", "camera_l", "camera_r", "forward+camera_l", "forward+camera_r", "none"]


def _row(mode: str, name: str, keyboard_dim: int) -> tuple[np.ndarray, np.ndarray]:
    kb = np.zeros(keyboard_dim, np.float32)
    mouse = np.zeros(2, np.float32)
    if mode == "templerun":
        if name not in TEMPLERUN:
            raise ValueError(
                f"unknown templerun bench action {name!r}; choose one of {', '.join(TEMPLERUN)}, random"
            )
        kb[TEMPLERUN.index(name)] = 1.0
        return kb, mouse
    keys, cams = (UNIVERSAL_KEYS, UNIVERSAL_CAMERA) if mode == "universal" else (GTA_KEYS, GTA_CAMERA)
    for part in name.split("+"):
        if part in keys:
            kb[keys[part]] = 1.0
        elif part in cams:
            mouse += np.asarray(cams[part], np.float32)
        else:
            known = ", ".join(list(keys) + list(cams) + ["random"])
            raise ValueError(f"unknown {mode} bench action {part!r}; choose from {known} (join with '+')")
    return kb, mouse


class ScriptedActions:
    """A scripted sequence of `frames` rows made on demand (`rows`), so `--frames 100000000` costs nothing
    up front: random segments are drawn in order, as far as the run has got."""

    def __init__(self, name: str, mode: str, frames: int, keyboard_dim: int, has_mouse: bool, seed: int = 0):
        if mode not in ("universal", "gta_drive", "templerun"):
            raise ValueError(f"no benchmark actions for mode {mode!r}")
        self.name, self.mode, self.frames = name, mode, frames
        self.keyboard_dim, self.has_mouse = keyboard_dim, has_mouse
        self._rng = random.Random(seed)
        pool = _universal_list() if mode == "universal" else _gta_list() if mode == "gta_drive" else TEMPLERUN
        self._pool = pool
        self._names: list[str] = []  # random: frame 0's action, then one per SEGMENT frames
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if name != "random":
            self._row(name)  # an unknown name fails now, not at the first block

    def __len__(self) -> int:
        return self.frames

    def _row(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._cache:
            self._cache[name] = _row(self.mode, name, self.keyboard_dim)
        return self._cache[name]

    def _name(self, frame: int) -> str:
        if self.name != "random":
            return self.name
        segment = 0 if frame == 0 else 1 + (frame - 1) // SEGMENT
        while len(self._names) <= segment:
            self._names.append(self._rng.choice(self._pool))
        return self._names[segment]

    def rows(self, idx: np.ndarray) -> ActionBlock:
        """The rows of frames `idx` (int [T]) as an ActionBlock."""
        rows = [self._row(self._name(int(f))) for f in idx]
        keyboard = np.stack([r[0] for r in rows]).reshape(len(rows), self.keyboard_dim)
        mouse = np.stack([r[1] for r in rows]).reshape(len(rows), 2) if self.has_mouse else None
        return ActionBlock(keyboard, mouse)


def bench_actions(
    name: str, mode: str, frames: int, keyboard_dim: int, has_mouse: bool, seed: int = 0
) -> ActionBlock:
    """`frames` rows of the scripted sequence `name` ("random" or a named action) for an action mode."""
    return ScriptedActions(name, mode, frames, keyboard_dim, has_mouse, seed).rows(np.arange(frames))

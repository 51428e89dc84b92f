"""Action files: JSON Lines, one object per video frame, in the model's action space.

    {"keyboard": [K numbers], "mouse": [pitch, yaw]}

`mouse` is absent for worlds without mouse input. Extra fields (raw key names, frame numbers,
timestamps) are allowed and ignored. worldplayer writes the same format (see `app.recorder`).

Ranges: keyboard values lie in [0, 1] (1 = held); mouse values in [-MOUSE_LIMIT, MOUSE_LIMIT]
(1.0 = 15 degrees per frame, so the limit is 150 degrees per frame; 0.1 is typical). Values outside
them are refused: the models were never trained near them and answer with black frames.
"""

from __future__ import annotations

import json
from array import array
from typing import Optional

import numpy as np

from engine.actions import ActionBlock

KEYBOARD_RANGE = (0.0, 1.0)
MOUSE_LIMIT = 10.0


def load_action_file(path: str, keyboard_dim: int, has_mouse: bool) -> ActionBlock:
    """Read every line of an action file; ValueError naming the file and line number on bad input."""
    try:
        with open(path) as f:
            return _parse(f, path, keyboard_dim, has_mouse)
    except OSError as e:
        raise ValueError(f"cannot read action file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"action file {path} is not UTF-8 text (expected JSON Lines)") from None


def _parse(lines, path: str, keyboard_dim: int, has_mouse: bool) -> ActionBlock:
    """Line by line into float32 arrays (4 bytes a value), so a large file is not held as Python lists."""
    keyboard, mouse = array("f"), array("f")
    rows = 0
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
        except (RecursionError, ValueError) as e:  # 100k-deep nesting, an integer of 5,000 digits
            raise ValueError(f"{where}: not a usable JSON line ({type(e).__name__})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        keyboard.extend(_numbers(obj.get("keyboard"), keyboard_dim, "keyboard", where))
        rows += 1
        if has_mouse:
            if "mouse" not in obj:
                raise ValueError(f'{where}: missing "mouse": [pitch, yaw] (this world has mouse input)')
            mouse.extend(_numbers(obj["mouse"], 2, "mouse", where))
        elif obj.get("mouse") is not None:
            raise ValueError(f'{where}: this world has no mouse input; drop "mouse"')
    if not rows:
        raise ValueError(f"action file {path} has no actions")
    kb = np.frombuffer(keyboard, np.float32).reshape(rows, keyboard_dim)  # [T, K]
    return ActionBlock(kb, np.frombuffer(mouse, np.float32).reshape(rows, 2) if has_mouse else None)


def _numbers(value, n: int, key: str, where: str) -> list[float]:
    if value is None:
        raise ValueError(f'{where}: missing "{key}" (expected a list of {n} numbers)')
    if not isinstance(value, list) or len(value) != n:
        raise ValueError(f'{where}: "{key}" must be a list of {n} numbers, got {_show(value)}')
    lo, hi = KEYBOARD_RANGE if key == "keyboard" else (-MOUSE_LIMIT, MOUSE_LIMIT)
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f'{where}: "{key}" must hold finite numbers, got {_show(value)}')
        if not lo <= v <= hi:  # also NaN and Infinity; no float(): an integer of 400 digits overflows
            raise ValueError(f'{where}: "{key}" values must lie in [{lo:g}, {hi:g}], got {_show(value)}')
        out.append(float(v))
    return out


def _show(value) -> str:
    """A short JSON rendering of a bad value for an error message."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


class LoopedActions:
    """`frames` rows that repeat `base` (made per block, never tiled out in memory)."""

    def __init__(self, base: ActionBlock, frames: int):
        self.base, self.frames = base, frames

    def __len__(self) -> int:
        return self.frames

    def rows(self, idx: np.ndarray) -> ActionBlock:
        i = idx % len(self.base)
        return ActionBlock(self.base.keyboard[i], None if self.base.mouse is None else self.base.mouse[i])


def fit_actions(actions: ActionBlock, frames: int, loop: bool, source: str = "actions"):
    """Exactly `frames` rows: a shorter sequence is an error unless `loop` (then it repeats lazily)."""
    if len(actions) >= frames:
        return actions.slice(0, frames)
    if not loop:
        raise ValueError(
            f"{source} has {len(actions)} frames of actions but --frames is {frames}; "
            "pass --loop-actions to repeat them"
        )
    return LoopedActions(actions, frames)


def block_slice(actions, start: int, count: int) -> ActionBlock:
    """Rows [start, start + count) of an ActionBlock or a lazy source with `rows(idx)`; rows past the
    end repeat the last row (surplus frames get dropped)."""
    idx = np.minimum(np.arange(start, start + count), len(actions) - 1)
    if hasattr(actions, "rows"):
        return actions.rows(idx)
    mouse: Optional[np.ndarray] = None if actions.mouse is None else actions.mouse[idx]
    return ActionBlock(actions.keyboard[idx], mouse)

"""A session's action and block-hash history, kept compactly for as long as the session runs.

`R` can start a recording mid-session, and the recording then carries every earlier action and block
hash (so a replay reproduces it from the start image). Kept as Python dicts that history cost ~770
bytes per frame, which a 1-frame-per-block world at 17.5 fps turns into ~50 MB an hour (an hour-long
soak of the tiny preset grew ~230 MB/h this way). Here a frame costs its action values (float32) and
a block its hash (32 bytes) and a few integers; `rows()` / `blocks()` expand them when a recorder asks.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from app.recorder import action_rows
from engine.actions import ActionBlock


class Grow:
    """An append-only array with amortised O(1) appends (capacity doubles)."""

    def __init__(self, width: int, dtype):
        self._data = np.zeros((64, width), dtype)
        self.n = 0

    def extend(self, rows: np.ndarray) -> None:
        need = self.n + len(rows)
        if need > len(self._data):
            grown = np.zeros((max(need, 2 * len(self._data)), self._data.shape[1]), self._data.dtype)
            grown[: self.n] = self._data[: self.n]
            self._data = grown
        self._data[self.n : need] = rows
        self.n = need

    def view(self) -> np.ndarray:
        return self._data[: self.n]


class History:
    def __init__(self):
        self._keyboard: Optional[Grow] = None
        self._mouse: Optional[Grow] = None
        self._keys: list[Optional[tuple[str, ...]]] = []  # raw keys per block (the window's), or None
        self._blocks = Grow(4, np.int64)  # block, first_frame, frames generated, frames recorded
        self._ms = Grow(1, np.float64)
        self._sha = Grow(32, np.uint8)

    def add(self, actions: ActionBlock, info: dict, keep: int, keys: Optional[list[str]]) -> None:
        """One block: its first `keep` actions (those recorded) and its info {block, first_frame, ...}."""
        if self._keyboard is None:
            self._keyboard = Grow(actions.keyboard.shape[1], np.float32)
            self._mouse = None if actions.mouse is None else Grow(2, np.float32)
        self._keyboard.extend(actions.keyboard[:keep])
        if self._mouse is not None:
            self._mouse.extend(actions.mouse[:keep])
        self._keys.append(None if keys is None else tuple(keys))
        self._blocks.extend(np.array([[info["block"], info["first_frame"], info["frames"], keep]], np.int64))
        self._ms.extend(np.array([[info["ms"]]]))
        self._sha.extend(np.frombuffer(bytes.fromhex(info["sha256"]), np.uint8)[None])

    def rows(self) -> list[dict]:
        """The action lines of every recorded frame so far (the recorder's format)."""
        out: list[dict] = []
        if self._keyboard is None:
            return out
        kb, ms = self._keyboard.view(), None if self._mouse is None else self._mouse.view()
        pos = 0
        for (block, first, _, n), keys in zip(self._blocks.view().tolist(), self._keys, strict=True):
            acts = ActionBlock(kb[pos : pos + n], None if ms is None else ms[pos : pos + n])
            out += action_rows(acts, first, block, None if keys is None else list(keys))
            pos += n
        return out

    def __len__(self) -> int:
        """Blocks so far."""
        return self._blocks.n

    def blocks(self) -> list[dict]:
        """Per block {block, first_frame, frames, sha256, ms}, as `Rollout.step` made them."""
        b, ms, sha = self._blocks.view(), self._ms.view(), self._sha.view()
        return [
            {"block": int(b[i, 0]), "first_frame": int(b[i, 1]), "frames": int(b[i, 2]),
             "sha256": sha[i].tobytes().hex(), "ms": float(ms[i, 0])}
            for i in range(len(b))
        ]  # fmt: skip

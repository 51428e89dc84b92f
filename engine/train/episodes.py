"""Episodes with per-frame actions for world-model training, from shards or plain `*.npz` files.

An episode is frames uint8 [N, H, W, 3] with keyboard float32 [N, K] and mouse float32 [N, 2];
`keyboard[i]`/`mouse[i]` is the action held while frame i is shown (it leads to frame i + 1), as in
`engine.actions`. Sources per folder: an `engine.data` shard folder (index.json, read through
`engine.data.loader.DatasetShards`), else every `*.npz` holding `frames`, `keyboard` and `mouse`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np


@dataclass
class ActionEpisode:
    frames: np.ndarray  # uint8 [N, H, W, 3]
    keyboard: np.ndarray  # float32 [N, K]
    mouse: np.ndarray  # float32 [N, 2]
    name: str = ""

    def __post_init__(self):
        n = len(self.frames)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise ValueError(
                f"episode {self.name}: frames must be uint8 [N, H, W, 3], got {self.frames.shape}"
            )
        if len(self.keyboard) != n or len(self.mouse) != n:
            raise ValueError(
                f"episode {self.name}: {n} frames but {len(self.keyboard)} keyboard and {len(self.mouse)} "
                "mouse rows (one action per frame expected)"
            )


def _npz_episodes(folder: Path) -> Iterator[ActionEpisode]:
    for f in sorted(folder.rglob("*.npz")):
        with np.load(f) as d:
            if {"frames", "keyboard", "mouse"} <= set(d.files):
                yield ActionEpisode(
                    d["frames"], d["keyboard"].astype(np.float32), d["mouse"].astype(np.float32), str(f)
                )


def _shard_episodes(folder: Path) -> list[ActionEpisode]:
    """Episodes of an `engine.data` shard folder (index.json + shards); frames stay memory-mapped."""
    if not (folder / "index.json").is_file():
        return []
    from engine.data.loader import DatasetShards

    data = DatasetShards(folder)
    out = []
    for sh, ep, s, n in data.runs():
        shard = data.shards[sh]
        out.append(
            ActionEpisode(
                shard.frames[s : s + n],
                np.asarray(shard.keyboard[s : s + n], np.float32),
                np.asarray(shard.mouse[s : s + n], np.float32),
                f"{folder}/{shard.name}/episode{ep}",
            )
        )
    return out


def load_action_episodes(folders: Sequence[str], height: int, width: int) -> list[ActionEpisode]:
    """All episodes under `folders`, checked against the preset's frame size; ValueError when none."""
    eps: list[ActionEpisode] = []
    for name in folders:
        folder = Path(name)
        if not folder.is_dir():
            raise ValueError(f"data folder {name} does not exist")
        found = _shard_episodes(folder) or list(_npz_episodes(folder))
        if not found:
            raise ValueError(
                f"data folder {name} holds no episodes (shards, or *.npz with frames/keyboard/mouse)"
            )
        for ep in found:
            if ep.frames.shape[1:3] != (height, width):
                raise ValueError(
                    f"episode {ep.name}: frames are {ep.frames.shape[1:3]}; preset: {(height, width)}"
                )
        eps.extend(found)
    return eps

"""The one reader of training data: episodes from shard folders or plain `*.npz` files.

An episode is frames uint8 [N, H, W, 3] with keyboard float32 [N, K] and mouse float32 [N, 2];
`keyboard[i]`/`mouse[i]` is the action held while frame i is shown (it leads to frame i + 1), as in
`engine.actions`. Sources per folder: an `engine.data` shard folder (index.json; format in
`engine.data.shards`, frames stay memory-mapped), else every `*.npz` holding `frames` (and, for the
world trainer, `keyboard` and `mouse`) and every worldplayer recording (`--record DIR` or
`--headless --out DIR`: video.mp4 + actions.jsonl + meta.json, one episode each; `engine.data.recording`)
in it or below it. Episodes come in index order (shards, then runs within a shard) or in sorted file
order (npz files, then recordings), and never cross an episode boundary.

The world trainer reads `load_action_episodes` (size-checked, actions required); the VAE trainer
reads `load_frame_episodes` (frames only, so `*.npz` files without actions count too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from engine.data.recording import find_recordings, read_recording
from engine.data.shards import load_shard, read_index


@dataclass
class ActionEpisode:
    frames: np.ndarray  # uint8 [N, H, W, 3]
    keyboard: Optional[np.ndarray]  # float32 [N, K]; None for a frames-only *.npz
    mouse: Optional[np.ndarray]  # float32 [N, 2]; None for a frames-only *.npz
    name: str = ""

    def __post_init__(self):
        n = len(self.frames)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise ValueError(
                f"episode {self.name}: frames must be uint8 [N, H, W, 3], got {self.frames.shape}"
            )
        if (self.keyboard is None) != (self.mouse is None):
            raise ValueError(f"episode {self.name}: keyboard and mouse must both be given or both be None")
        if self.keyboard is not None and (len(self.keyboard) != n or len(self.mouse) != n):
            raise ValueError(
                f"episode {self.name}: {n} frames but {len(self.keyboard)} keyboard and {len(self.mouse)} "
                "mouse rows (one action per frame expected)"
            )


def _shard_episodes(folder: Path) -> list[ActionEpisode]:
    """Episodes of an `engine.data` shard folder (index.json + shards); frames stay memory-mapped."""
    index = read_index(folder)
    height, width = int(index["height"]), int(index["width"])
    out = []
    for entry in index["shards"]:
        shard = load_shard(folder, entry, height, width)
        for ep, s, n in shard.episodes():
            out.append(
                ActionEpisode(
                    shard.frames[s : s + n],
                    np.asarray(shard.keyboard[s : s + n], np.float32),
                    np.asarray(shard.mouse[s : s + n], np.float32),
                    f"{folder}/{shard.name}/episode{ep}",
                )
            )
    return out


def _npz_episodes(folder: Path, actions: bool) -> list[ActionEpisode]:
    out = []
    for f in sorted(folder.rglob("*.npz")):
        with np.load(f) as d:
            if "frames" not in d.files:
                continue
            if {"keyboard", "mouse"} <= set(d.files):
                kb, ms = d["keyboard"].astype(np.float32), d["mouse"].astype(np.float32)
            elif actions:
                continue
            else:
                kb = ms = None
            out.append(ActionEpisode(d["frames"], kb, ms, str(f)))
    return out


def _recording_episodes(folder: Path) -> list[ActionEpisode]:
    """One episode per recording folder at or below `folder` (frames decoded from video.mp4)."""
    out = []
    for rec in find_recordings(folder):
        frames, keyboard, mouse = read_recording(rec)
        if len(frames):
            out.append(ActionEpisode(frames, keyboard, mouse, str(rec)))
    return out


def read_episodes(folders: Sequence[str], actions: bool = True) -> list[ActionEpisode]:
    """All episodes under `folders` (ValueError for a missing folder or one without episodes).

    actions=False also takes `*.npz` files that hold frames only (their keyboard and mouse are None)."""
    eps: list[ActionEpisode] = []
    for name in folders:
        folder = Path(name)
        if not folder.is_dir():
            raise ValueError(f"data folder {name} does not exist")
        if (folder / "index.json").is_file():
            found = _shard_episodes(folder)
        else:
            found = _npz_episodes(folder, actions) + _recording_episodes(folder)
        if not found:
            need = "frames/keyboard/mouse" if actions else "a 'frames' array"
            raise ValueError(
                f"data folder {name} holds no episodes (shards, *.npz with {need}, or worldplayer "
                "recordings: video.mp4 + actions.jsonl + meta.json)"
            )
        eps.extend(found)
    return eps


def load_action_episodes(folders: Sequence[str], height: int, width: int) -> list[ActionEpisode]:
    """Episodes with actions under `folders` (world trainer), checked against the preset's frame size."""
    eps = read_episodes(folders, actions=True)
    for ep in eps:
        if ep.frames.shape[1:3] != (height, width):
            raise ValueError(
                f"episode {ep.name}: frames are {ep.frames.shape[1:3]}; preset: {(height, width)}"
            )
    return eps


def load_frame_episodes(folders: Sequence[str]) -> list[np.ndarray]:
    """Frames uint8 [N, H, W, 3] of every episode under `folders` (VAE trainer; actions not needed)."""
    return [ep.frames for ep in read_episodes(folders, actions=False)]

"""The on-disk gameplay format: shards of frames with per-frame actions, and an index.

A dataset is a folder:
  index.json                 header (size, fps, mode, keys, source, action convention) + list of shards
  NAME.frames.npy            uint8 [N, H, W, 3] RGB video frames (memory-mapped when read)
  NAME.actions.npz           keyboard float32 [N, K] (multi-hot, universal [W, S, A, D]),
                             mouse float32 [N, 2] ([pitch, yaw], 1.0 = 15 degrees per frame, up/right +),
                             episode int32 [N], tic int32 [N] (game tic of the frame since its episode
                             began), pose float32 [N, 5] (x, y, z, angle, pitch; optional), meta (JSON str)
Convention: actions[i] is held while frame i is shown and takes frame i to frame i+1. A shard holds one
or more whole episodes, contiguous; clips never cross an episode boundary.

Writers put a shard's files down atomically (temporary name, then rename) and the index last, so a
folder is always readable; `rebuild_index` recovers the index from the shards alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

FORMAT = "worldplayer-shards/1"
CONVENTION = (
    "actions[i] is held while frame i is shown and takes frame i to frame i+1; keyboard multi-hot in the "
    "mode's key order; mouse [pitch, yaw], 1.0 = 15 degrees per video frame, up and right positive"
)


@dataclass
class Shard:
    """One shard, read and validated. frames is memory-mapped uint8 [N, H, W, 3]."""

    name: str
    frames: np.ndarray  # uint8 [N, H, W, 3]
    keyboard: np.ndarray  # float32 [N, K]
    mouse: np.ndarray  # float32 [N, 2]
    episode: np.ndarray  # int32 [N]
    tic: np.ndarray  # int32 [N]
    pose: Optional[np.ndarray]  # float32 [N, 5] or None
    meta: dict

    def __len__(self) -> int:
        return len(self.frames)

    def episodes(self) -> list[tuple[int, int, int]]:
        """(episode id, first frame, frame count) for each contiguous episode run in the shard."""
        cuts = np.flatnonzero(np.diff(self.episode)) + 1
        starts = np.concatenate([[0], cuts]).astype(int)
        ends = np.concatenate([cuts, [len(self.episode)]]).astype(int)
        return [(int(self.episode[s]), int(s), int(e - s)) for s, e in zip(starts, ends, strict=False)]


def write_shard(
    root: str | Path,
    name: str,
    frames: np.ndarray,
    keyboard: np.ndarray,
    mouse: np.ndarray,
    episode: Optional[np.ndarray] = None,
    tic: Optional[np.ndarray] = None,
    pose: Optional[np.ndarray] = None,
    meta: Optional[dict] = None,
) -> dict:
    """Write one shard (frames uint8 [N, H, W, 3], keyboard [N, K], mouse [N, 2]); returns its index entry."""
    root = Path(root)
    n = len(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"shard {name}: frames must be uint8 [N, H, W, 3], got {frames.dtype} {frames.shape}"
        )
    episode = np.zeros(n, np.int32) if episode is None else np.asarray(episode, np.int32)
    tic = np.arange(n, dtype=np.int32) if tic is None else np.asarray(tic, np.int32)
    for key, arr in (("keyboard", keyboard), ("mouse", mouse), ("episode", episode), ("tic", tic)):
        if len(arr) != n:
            raise ValueError(f"shard {name}: {n} frames but {len(arr)} {key} rows")
    meta = dict(meta or {})
    arrays = dict(keyboard=np.asarray(keyboard, np.float32), mouse=np.asarray(mouse, np.float32))
    arrays.update(episode=episode, tic=tic, meta=np.array(json.dumps(meta)))
    if pose is not None:
        arrays["pose"] = np.asarray(pose, np.float32)
    root.mkdir(parents=True, exist_ok=True)
    tmp_frames, tmp_actions = root / f".{name}.frames.tmp", root / f".{name}.actions.tmp"
    with open(tmp_frames, "wb") as f:
        np.save(f, np.ascontiguousarray(frames))
    with open(tmp_actions, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp_frames, root / f"{name}.frames.npy")
    os.replace(tmp_actions, root / f"{name}.actions.npz")  # last: its presence marks a complete shard
    return shard_entry(name, episode, meta)


def shard_entry(name: str, episode: np.ndarray, meta: dict) -> dict:
    cuts = np.flatnonzero(np.diff(episode)) + 1
    bounds = np.concatenate([[0], cuts, [len(episode)]]).astype(int)
    eps = [
        dict(episode=int(episode[s]), start=int(s), frames=int(e - s))
        for s, e in zip(bounds[:-1], bounds[1:], strict=False)
    ]
    return dict(name=name, frames=int(len(episode)), episodes=eps, meta=meta)


def write_index(root: str | Path, header: dict, shards: list[dict]) -> Path:
    """Write index.json atomically: {format, convention, **header, shards: [...] sorted by name}."""
    root = Path(root)
    data = dict(format=FORMAT, convention=CONVENTION, **header)
    data["shards"] = sorted(shards, key=lambda s: s["name"])
    data["total_frames"] = sum(s["frames"] for s in shards)
    tmp = root / ".index.json.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, root / "index.json")
    return root / "index.json"


def read_index(root: str | Path) -> dict:
    """Read and check index.json of a dataset folder; a clear ValueError for a missing or empty dataset."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"data folder not found: {root}")
    path = root / "index.json"
    if not path.is_file():
        what = "is empty" if not any(root.iterdir()) else "has no index.json"
        raise ValueError(
            f"data folder {root} {what}; record data with `python -m engine.data.record --out {root}`"
        )
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{path}: format {index.get('format')!r}, expected {FORMAT!r}")
    if not index.get("shards"):
        raise ValueError(f"{path} lists no shards; the data folder {root} holds no recorded frames")
    return index


def load_shard(root: str | Path, entry: dict, height: int, width: int, mmap: bool = True) -> Shard:
    """Open one shard of a dataset and validate it against its index entry and the dataset's frame size."""
    root = Path(root)
    name = entry["name"]
    fpath, apath = root / f"{name}.frames.npy", root / f"{name}.actions.npz"
    for p in (fpath, apath):
        if not p.is_file():
            raise ValueError(f"shard {name}: missing file {p}")
    frames = np.load(fpath, mmap_mode="r" if mmap else None)
    with np.load(apath) as a:
        keyboard, mouse = a["keyboard"], a["mouse"]
        episode, tic = a["episode"], a["tic"]
        pose = a["pose"] if "pose" in a.files else None
        meta = json.loads(str(a["meta"])) if "meta" in a.files else {}
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (height, width, 3):
        raise ValueError(
            f"shard {name}: frames {frames.dtype} {frames.shape}, expected uint8 [N, {height}, {width}, 3]"
        )
    n = len(frames)
    counts = dict(keyboard=len(keyboard), mouse=len(mouse), episode=len(episode), tic=len(tic))
    if pose is not None:
        counts["pose"] = len(pose)
    bad = {k: v for k, v in counts.items() if v != n}
    if bad:
        raise ValueError(f"shard {name}: {n} frames but {', '.join(f'{v} {k} rows' for k, v in bad.items())}")
    if entry.get("frames", n) != n:
        raise ValueError(f"shard {name}: index.json says {entry['frames']} frames, the shard has {n}")
    if mouse.ndim != 2 or mouse.shape[1] != 2:
        raise ValueError(f"shard {name}: mouse must be [N, 2], got {mouse.shape}")
    return Shard(name, frames, keyboard, mouse, episode, tic, pose, meta)


def rebuild_index(root: str | Path, header: dict) -> Path:
    """Recreate index.json from the shards in a folder (after an interrupted recording)."""
    root = Path(root)
    entries = []
    for apath in sorted(root.glob("*.actions.npz")):
        name = apath.name[: -len(".actions.npz")]
        if name.startswith(".") or not (root / f"{name}.frames.npy").is_file():
            continue
        with np.load(apath) as a:
            entries.append(shard_entry(name, a["episode"], json.loads(str(a["meta"]))))
    return write_index(root, header, entries)

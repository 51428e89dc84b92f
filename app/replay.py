"""Replay: regenerate a recorded session headless from its meta.json, start.png and actions.jsonl.

The MP4 is lossy, so exactness is checked on the raw frames: every recording keeps `blocks.jsonl`
with the sha256 of each block's uint8 frames. A replay with the same preset config, checkpoint, device
and dtype must reproduce every hash; `replay_recording` reports how many blocks match.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from app.action_file import load_action_file
from app.errors import require_vizdoom
from app.headless import run_headless
from app.start_images import file_sha256, read_image
from engine.config import Preset, preset_from_dict, with_weights
from engine.worlds import build_world

# meta.json keys that describe how a recording ended: the replay's own recorder writes its own
RECORDING_STATUS = ("frames", "complete", "created", "action_frames", "frames_lost", "error", "session_error")


@dataclass
class ReplayResult:
    out_dir: str
    frames: int
    blocks: int
    matched: int  # blocks whose frame hash equals the recording's
    compared: int  # blocks the recording has a hash for
    first_mismatch: Optional[int] = None  # the first block whose frames differ
    recording_error: str = ""  # the replay's own recording lost frames

    @property
    def identical(self) -> bool:
        return self.compared > 0 and self.matched == self.compared


def read_meta(rec_dir: str) -> dict:
    path = os.path.join(rec_dir, "meta.json")
    if not os.path.isfile(path):
        raise ValueError(f"{rec_dir} is not a worldplayer recording (no meta.json)")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg})") from None


def recording_preset(meta: dict) -> Preset:
    if "preset_config" in meta:
        return preset_from_dict(meta["preset_config"], name=meta.get("preset", ""))
    from engine.config import load_preset

    return load_preset(meta["preset"])


def replay_recording(
    rec_dir: str,
    out_dir: str,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    progress: bool = True,
    world_factory: Optional[Callable] = None,
    log: Callable[[str], None] = print,
) -> ReplayResult:
    """Regenerate `rec_dir` into `out_dir` and compare frame hashes block by block."""
    meta = read_meta(rec_dir)
    recorded = _hashes(os.path.join(rec_dir, "blocks.jsonl"))  # read before anything is written
    preset = with_weights(recording_preset(meta), meta.get("checkpoint_arg"))  # older recordings
    device = device or meta.get("device", "cpu")
    dtype = dtype or meta.get("dtype", "bf16")
    if (device, dtype) != (meta.get("device"), meta.get("dtype")):
        log(
            f"worldplayer: replaying a {meta.get('device')}/{meta.get('dtype')} recording "
            f"on {device}/{dtype}; "
            "frames may differ"
        )
    ckpt = meta.get("checkpoint") or None
    if ckpt and meta.get("checkpoint_sha256") and file_sha256(ckpt) != meta["checkpoint_sha256"]:
        raise ValueError(f"checkpoint {ckpt} does not match the recording's sha256")
    if world_factory is None and (preset.world == "vizdoom" or meta.get("compare_preset")):
        require_vizdoom(f"replaying {rec_dir}")
    if world_factory is not None:
        world = world_factory(preset)
    elif meta.get("compare_preset"):
        from app.compare import compare_world
        from engine.config import load_preset

        real = load_preset(meta["compare_preset"])
        world = compare_world(preset, real, device, dtype)
    else:
        world = build_world(preset, device=device, dtype=dtype, dit_path=meta.get("dit_path", "reference"))
    spec = world.spec
    image = None
    if meta.get("start_image_file"):
        image = read_image(_inside(rec_dir, meta["start_image_file"]), spec.height, spec.width)
    actions = load_action_file(os.path.join(rec_dir, "actions.jsonl"), spec.keyboard_dim, spec.has_mouse)
    keys = _keys(os.path.join(rec_dir, "actions.jsonl"))
    replay_meta = {k: v for k, v in meta.items() if k not in RECORDING_STATUS}
    replay_meta.update(
        replay_of=os.path.abspath(rec_dir),
        replayed_recording_complete=meta.get("complete"),
        device=device,
        dtype=dtype,
    )
    metrics, rollout = run_headless(
        world,
        image,
        actions,
        len(actions),
        out_dir,
        int(meta.get("seed", 0)),
        replay_meta,
        video_start_frame=int(meta.get("video_start_frame", 0)),
        progress=progress,
        keys=keys,
    )
    world.close()
    matched = sum(1 for b in rollout.blocks if recorded.get(b["block"]) == b["sha256"])
    compared = sum(1 for b in rollout.blocks if b["block"] in recorded)
    differ = [
        b["block"] for b in rollout.blocks if b["block"] in recorded and recorded[b["block"]] != b["sha256"]
    ]
    return ReplayResult(
        out_dir,
        metrics["frames"],
        metrics["blocks"],
        matched,
        compared,
        differ[0] if differ else None,
        metrics["recording_error"],
    )


def _inside(rec_dir: str, name: str) -> str:
    """A file named in meta.json, which must lie in the recording folder (a recording is self-contained)."""
    path = os.path.realpath(os.path.join(rec_dir, name))
    if os.path.dirname(path) != os.path.realpath(rec_dir):
        raise ValueError(f"{rec_dir}/meta.json: start_image_file {name!r} is outside the recording folder")
    return path


def _hashes(path: str) -> dict[int, str]:
    """Recorded frame hashes by block; ValueError when the file is missing or unreadable."""
    if not os.path.isfile(path):
        raise ValueError(f"{path} is missing, so the replay cannot be checked; restore it from the recording")
    try:
        with open(path) as f:
            return {int(b["block"]): str(b["sha256"]) for b in map(json.loads, filter(str.strip, f))}
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a block-hash file ({type(e).__name__}: {e})") from None


def _keys(path: str) -> Optional[list[list[str]]]:
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows or "keys" not in rows[0]:
        return None
    return [r.get("keys", []) for r in rows]


def frames_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))

"""One world session from one start image: steps blocks, keeps the action and frame-hash history, and
feeds an optional recorder. Used by the live generation thread, headless runs and replay alike, so the
three write recordings the same way.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from app.history import History
from app.recorder import Recorder, action_rows, frames_sha256
from engine.actions import ActionBlock
from engine.worlds import World


class Rollout:
    def __init__(self, world: World, image: Optional[np.ndarray], seed: int = 0):
        self.world = world
        self.seed = seed
        self.frame = 0  # video frames generated so far
        self.history = History()  # every block's actions and hash so far, compact
        self.recorder: Optional[Recorder] = None
        world.start(image, seed=seed)
        if image is None:  # a world with its own start (the game): its first frame is the start image
            image = getattr(world, "frame", None)
        self.image = image  # the start image, uint8 [H, W, 3] (recorded as start.png); None if unknown

    @property
    def actions_needed(self) -> int:
        return self.world.actions_needed

    @property
    def block_index(self) -> int:
        return len(self.history)

    @property
    def blocks(self) -> list[dict]:
        """Per block {block, first_frame, frames, sha256, ms} (built on each call: for summaries)."""
        return self.history.blocks()

    def step(
        self, actions: ActionBlock, keys: Optional[list[str]] = None, keep: Optional[int] = None
    ) -> np.ndarray:
        """Generate one block; returns uint8 [T, H, W, 3]. `keep` < T records only the first `keep` frames."""
        block = len(self.history)
        t0 = time.perf_counter()
        frames = self.world.step(actions)
        ms = (time.perf_counter() - t0) * 1000.0
        if frames.shape[0] != len(actions):
            raise RuntimeError(
                f"world returned {frames.shape[0]} frames for {len(actions)} actions ({frames.shape=})"
            )
        info = {
            "block": block,
            "first_frame": self.frame,
            "frames": len(frames),
            "sha256": frames_sha256(frames),
            "ms": round(ms, 2),
        }
        keep = len(frames) if keep is None else keep
        self.history.add(actions, info, keep, keys)
        self.frame += len(frames)
        if self.recorder is not None:
            rows = action_rows(actions.slice(0, keep), info["first_frame"], block, keys)
            self.recorder.add_block(frames[:keep], rows, info)
        return frames

    def attach(self, recorder: Recorder) -> None:
        """Start recording at the current frame; earlier actions and hashes go in as history."""
        recorder.add_history(self.history.rows(), self.history.blocks())
        self.recorder = recorder

    def detach(self, extra_meta: Optional[dict] = None, failure: str = "") -> Optional[Recorder]:
        """Stop recording and finalise the folder; `failure` (why the session ended) marks it incomplete."""
        rec, self.recorder = self.recorder, None
        if rec is not None:
            rec.close(extra_meta, failure=failure)
        return rec

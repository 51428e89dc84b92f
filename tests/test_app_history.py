"""A session's action and hash history: what a mid-session recording gets, in ~100-200 bytes a frame."""

from __future__ import annotations

import tracemalloc

import numpy as np

from app.history import History
from app.recorder import action_rows
from engine.actions import ActionBlock


def blocks(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for b in range(n):
        t = 1 + b % 3
        a = ActionBlock(rng.random((t, 4)).astype(np.float32), rng.normal(0, 1, (t, 2)).astype(np.float32))
        info = {"block": b, "first_frame": 2 * b, "frames": t, "sha256": f"{b:064x}", "ms": 1.5 * b}
        yield a, info, t - (b % 2 and t > 1), (["w", "a"] if b % 4 == 0 else None)


def test_history_expands_to_the_rows_and_blocks_a_recorder_expects():
    h, rows, infos = History(), [], []
    for a, info, keep, keys in blocks(50):
        h.add(a, info, keep, keys)
        rows += action_rows(a.slice(0, keep), info["first_frame"], info["block"], keys)
        infos.append(info)
    assert len(h) == 50
    assert h.rows() == rows
    assert h.blocks() == infos


def test_history_costs_a_few_hundred_bytes_per_frame_at_most():
    rng = np.random.default_rng(0)
    a = ActionBlock(rng.random((1, 4)).astype(np.float32), rng.normal(0, 1, (1, 2)).astype(np.float32))
    tracemalloc.start()
    h = History()
    for b in range(20_000):  # one-frame blocks, as the e1m1 world plays: ~19 min at 17.5 fps
        h.add(a, {"block": b, "first_frame": b, "frames": 1, "sha256": "ab" * 32, "ms": 3.0}, 1, None)
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert used / 20_000 < 250, used / 20_000  # ~104 bytes + array slack; the dict rows cost ~770

"""Nothing is built up front in proportion to --frames (issue 20, item 4)."""

from __future__ import annotations

import json
import time
import tracemalloc

import numpy as np
import pytest

from app.action_file import block_slice, fit_actions, load_action_file
from app.bench_actions import ScriptedActions, bench_actions
from app.cli import main
from tests.test_faults import headless, one_error_line


def test_a_hundred_million_bench_frames_cost_nothing_up_front():
    tracemalloc.start()
    t0 = time.perf_counter()
    actions = ScriptedActions("random", "universal", 100_000_000, 4, True, seed=3)
    first = block_slice(actions, 0, 9)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0 and peak < 10 * 2**20
    assert len(actions) == 100_000_000 and len(first) == 9
    small = bench_actions("random", "universal", 45, 4, True, seed=3)  # the same sequence, made whole
    lazy = block_slice(actions, 9, 36)
    assert np.array_equal(lazy.keyboard, small.keyboard[9:45]) and np.array_equal(
        lazy.mouse, small.mouse[9:45]
    )


def test_looped_action_file_is_not_tiled_out(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(
        "".join(json.dumps({"keyboard": [i % 2, 0, 0, 0], "mouse": [0, 0]}) + "\n" for i in range(5))
    )
    looped = fit_actions(load_action_file(str(path), 4, True), 10**9, loop=True)
    block = block_slice(looped, 10**9 - 12, 12)
    assert len(looped) == 10**9 and block.keyboard[:, 0].tolist() == [
        (10**9 - 12 + i) % 5 % 2 for i in range(12)
    ]


@pytest.mark.parametrize("frames", [str(10**12), str(2**63), "0"])
def test_absurd_frame_counts_are_one_line(tmp_path, capsys, frames):
    argv = headless(tmp_path / "run")
    argv[argv.index("--frames") + 1] = frames
    assert main(argv) == 2
    assert "--frames must be between 1 and" in one_error_line(capsys.readouterr().err)

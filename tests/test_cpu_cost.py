"""A full-size preset on the CPU is refused in one line before anything is built (issue 22 item 8)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from engine.config import load_preset
from engine.cost import block_flops, model_parameters

REPO = Path(__file__).resolve().parent.parent


def test_parameters_and_flops_come_from_the_config_without_building():
    p = load_preset("mg2-universal")
    assert 1.5e9 < model_parameters(p) < 1.8e9  # Matrix-Game 2.0: ~1.6 B
    tokens = 3 * (352 // 16) * (640 // 16)  # 3 latents of 22 x 40 patches
    assert block_flops(p) == 2.0 * model_parameters(p) * tokens * 4  # 3 denoising passes + context


def test_full_size_preset_on_cpu_is_one_line_and_fast(tmp_path):
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy", OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    cmd = [sys.executable, "main.py", "--preset", "mg2-universal", "--device", "cpu", "--headless",
           "--out", str(tmp_path / "out"), "--frames", "9"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--force-cpu" in lines[0] and "min on this CPU" in lines[0], proc.stderr
    assert time.perf_counter() - t0 < 30  # nothing was built
    assert not (tmp_path / "out").exists()

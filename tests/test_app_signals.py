"""Recordings survive Ctrl-C (finalised) and SIGKILL of the whole process group (fragmented MP4)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import pytest

REPO = Path(__file__).resolve().parent.parent

pytest.importorskip("vizdoom")  # the real game is a fast world for long-running recordings


def start_long_run(out: Path) -> subprocess.Popen:
    argv = [
        sys.executable,
        "main.py",
        "--headless",
        "--preset",
        "vizdoom",
        "--actions",
        "bench:random",
        "--frames",
        "1000000",
        "--out",
        str(out),
        "--quiet",
    ]
    return subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def wait_for_blocks(proc: subprocess.Popen, out: Path, blocks: int, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        path = out / "blocks.jsonl"
        if path.is_file() and len(path.read_text().splitlines()) >= blocks:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the run produced no blocks in time")


def test_ctrl_c_finalises_the_recording(tmp_path):
    proc = start_long_run(tmp_path / "run")
    wait_for_blocks(proc, tmp_path / "run", 10)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["complete"] and meta["frames"] >= 9 + 12 * 9, {k: meta.get(k) for k in ("complete", "error")}
    frames = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "run" / "video.mp4"))[0]
    assert frames == meta["frames"]


def test_sigkill_leaves_a_playable_video(tmp_path):
    proc = start_long_run(tmp_path / "run")
    wait_for_blocks(proc, tmp_path / "run", 20)
    os.killpg(proc.pid, signal.SIGKILL)  # the app and its ffmpeg child die at once
    proc.communicate(timeout=30)
    video = tmp_path / "run" / "video.mp4"
    frames = imageio_ffmpeg.count_frames_and_secs(str(video))[0]
    assert frames >= 18  # whole fragments (one keyframe per second) before the kill are playable
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["complete"] is False and meta["preset"] == "vizdoom"

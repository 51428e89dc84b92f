"""Faults a hostile tester found (issue 20): a recording is never overwritten or written through a link,
survives a kill of the whole process group, and a frame that is not written is never reported as done."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import pytest

from app.cli import main
from app.recorder import Recorder
from tests.test_app_signals import wait_for_blocks
from tests.test_app_support import FakeWorld, gradient_image

REPO = Path(__file__).resolve().parent.parent


def headless(out, *extra, frames=10):
    return [
        *("--headless", "--preset", "tiny", "--actions", "bench:forward", "--frames", str(frames)),
        *("--out", str(out), "--device", "cpu", "--quiet", *extra),
    ]


def one_error_line(err: str) -> str:
    """The one error line of a failed run (notes such as "no start image" may come before it)."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in err, err
    assert errors[0].startswith("worldplayer: error: "), err
    return errors[0]


def video_frames(path) -> int:
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


# --- item 1: overwrites and links ---


def test_headless_refuses_to_overwrite_a_recording(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(headless(out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(headless(out, frames=20)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "already holds a recording" in line and "--force" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main(headless(out, "--force", frames=20)) == 0  # on purpose
    assert json.loads((out / "metrics.json").read_text())["frames"] == 20


def test_replay_into_the_recording_itself_is_refused(tmp_path, capsys):
    rec = tmp_path / "rec"
    assert main(headless(rec, frames=21)) == 0
    before = {p.name: p.read_bytes() for p in rec.iterdir()}
    capsys.readouterr()
    for argv in (["--replay", str(rec), "--out", str(rec)], ["--replay", str(rec), "--out", f"{rec}/../rec"]):
        assert main([*argv, "--force", "--quiet"]) == 2
        assert "is the recording being replayed" in one_error_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in rec.iterdir()} == before


def test_replay_reports_an_altered_block_hash_and_names_it(tmp_path, capsys):
    rec = tmp_path / "rec"
    assert main(headless(rec, frames=21)) == 0
    lines = (rec / "blocks.jsonl").read_text().splitlines()
    block = json.loads(lines[1])
    block["sha256"] = "0" * 64
    lines[1] = json.dumps(block)
    (rec / "blocks.jsonl").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["--replay", str(rec), "--out", str(tmp_path / "again"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "1/2 blocks identical" in out and "block 1 is the first that differs" in out


def test_symlinks_in_the_output_folder_are_refused(tmp_path, capsys):
    target = tmp_path / "precious.txt"
    target.write_text("do not touch")
    out = tmp_path / "run"
    out.mkdir()
    (out / "video.mp4").symlink_to(target)
    for extra in ((), ("--force",)):
        assert main(headless(out, *extra)) == 2
        assert "symbolic link" in one_error_line(capsys.readouterr().err)
    (out / "video.mp4").unlink()
    (out / "meta.json.tmp").symlink_to(target)  # the atomic meta.json write goes through this name
    assert main(headless(out, "--force")) == 2
    assert "symbolic link" in one_error_line(capsys.readouterr().err)
    linked = tmp_path / "linked"
    linked.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert main(headless(linked)) == 2
    assert "symbolic link" in one_error_line(capsys.readouterr().err)
    assert target.read_text() == "do not touch" and not (tmp_path / "elsewhere").exists()


def test_window_recording_takes_a_fresh_folder_next_to_a_planted_one(tmp_path):
    from tests.test_app_window import make_app

    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "actions.jsonl").write_text("{}\n")  # a recording without meta.json
    app = make_app(FakeWorld(), tmp_path)
    assert app.run(max_frames=12) == 0
    assert (tmp_path / "rec" / "actions.jsonl").read_text() == "{}\n"
    assert json.loads((tmp_path / "rec_2" / "meta.json").read_text())["complete"]


# --- item 2: nothing held in ffmpeg's buffers ---


def start_long_run(out: Path) -> subprocess.Popen:
    argv = [sys.executable, "main.py", *headless(out, frames=1_000_000)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_killing_the_process_group_loses_at_most_the_last_block(tmp_path):
    out = tmp_path / "run"
    proc = start_long_run(out)
    wait_for_blocks(proc, out, 6)
    os.killpg(proc.pid, signal.SIGKILL)  # python and ffmpeg die together (OOM killer, container stop)
    proc.communicate(timeout=30)
    blocks = [json.loads(line) for line in (out / "blocks.jsonl").read_text().splitlines() if line.strip()]
    written = sum(b["frames"] for b in blocks)  # a block's line is written after its frames went to ffmpeg
    assert video_frames(out / "video.mp4") >= written - blocks[-1]["frames"]
    assert json.loads((out / "meta.json").read_text())["complete"] is False


RECORD_AND_HANG = """
import sys, time, numpy as np
from app.recorder import Recorder
rec = Recorder(sys.argv[1], 256, 144, 17.5, {"preset": "fake"})
rng = np.random.default_rng(0)
for b in range(4):
    frames = rng.integers(0, 255, (12, 144, 256, 3), dtype=np.uint8)
    rec.add_block(frames, [{"frame": b * 12 + i} for i in range(12)], {"block": b, "frames": 12})
while rec.action_frames < 48:
    time.sleep(0.01)
print("written", flush=True)
time.sleep(600)
"""


def test_frames_handed_to_ffmpeg_are_on_disk_when_the_group_is_killed(tmp_path):
    """4 blocks (48 frames at 256x144, 17.5 fps) reach the encoder, then the process group is killed."""
    out = tmp_path / "rec"
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORD_AND_HANG, str(out)],
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout.readline().strip() == "written"
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert video_frames(out / "video.mp4") >= 48 - 12


# --- item 3: a frame not written is never "complete", exit 0 or a silent REC ---


def test_out_folder_named_like_an_option_still_gets_its_video(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = headless("x", frames=10)
    argv[argv.index("--out") : argv.index("--out") + 2] = ["--out=-evil"]
    assert main(argv) == 0
    assert video_frames(tmp_path / "-evil" / "video.mp4") == 10


class FailingWriter:
    """An encoder whose disk fills up after `ok` frames."""

    def __init__(self, ok: int):
        self.ok = ok

    def send(self, frame):
        if self.ok <= 0:
            raise OSError(28, "No space left on device")
        self.ok -= 1

    def close(self):
        """Nothing is buffered: send either wrote the frame or failed."""


def test_full_disk_in_the_window_shows_at_once_and_exits_non_zero(tmp_path, monkeypatch):
    from tests.test_app_window import make_app

    monkeypatch.setattr(Recorder, "_open_writer", lambda self: FailingWriter(15))
    app = make_app(FakeWorld(), tmp_path)
    seen = []
    app_run_script = lambda app, tick: seen.append((app.gen.blocks_done, app.stats()))  # noqa: E731
    assert app.run(max_frames=60, script=app_run_script) == 1
    failed_at = next(blocks for blocks, s in seen if s.record_failed)
    assert failed_at <= 3  # block 1 (frames 9..20) failed; shown before two more blocks were made
    s = next(s for _, s in seen if s.record_failed)
    assert "recording failed" in s.notice and "No space left" in s.notice
    meta = json.loads((tmp_path / "rec" / "meta.json").read_text())
    assert meta["complete"] is False and meta["frames"] == 15 and meta["frames_lost"] > 0
    assert "No space left" in meta["error"]


def test_full_disk_headless_is_one_line_and_non_zero(tmp_path):
    """A real write limit (RLIMIT_FSIZE) for python and its ffmpeg child: ffmpeg dies mid-recording."""
    out = tmp_path / "run"

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    proc = subprocess.run(
        [sys.executable, "main.py", *headless(out, frames=600)],
        cwd=REPO,
        capture_output=True,
        text=True,
        preexec_fn=small_disk,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=300,
    )
    assert proc.returncode != 0
    one_error_line(proc.stderr)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] is False and meta["error"]


def test_recorder_backlog_cut_by_the_close_timeout_is_incomplete(tmp_path, monkeypatch):
    class SlowWriter(FailingWriter):
        def send(self, frame):
            time.sleep(0.05)

    monkeypatch.setattr(Recorder, "_open_writer", lambda self: SlowWriter(0))
    rec = Recorder(str(tmp_path / "rec"), 48, 32, 12.0, {"preset": "fake"}, start_image=gradient_image())
    frames = gradient_image()[None].repeat(12, 0)
    for b in range(3):
        rec.add_block(frames, [{"frame": b * 12 + i} for i in range(12)], {"block": b})
    rec.close(timeout=0.3)
    meta = json.loads((tmp_path / "rec" / "meta.json").read_text())
    assert meta["complete"] is False and meta["frames"] < 36 and meta["frames_lost"] == 36 - meta["frames"]
    assert "still encoding" in meta["error"]


def test_recorder_queue_is_bounded(tmp_path, monkeypatch):
    """A producer faster than the encoder waits instead of queueing every frame in memory (item 4)."""
    from app import recorder as recorder_module

    gate = []

    class GatedWriter(FailingWriter):
        def send(self, frame):
            while not gate:
                time.sleep(0.01)

    monkeypatch.setattr(Recorder, "_open_writer", lambda self: GatedWriter(0))
    rec = Recorder(str(tmp_path / "rec"), 48, 32, 12.0, {"preset": "fake"})
    frames = gradient_image()[None].repeat(12, 0)
    import threading

    def produce():
        for b in range(20):
            rec.add_block(frames, [{"frame": b * 12 + i} for i in range(12)], {"block": b})

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.5)
    assert producer.is_alive() and rec._queue.qsize() <= recorder_module.QUEUE_BLOCKS
    gate.append(True)
    producer.join(10)
    rec.close()
    assert json.loads((tmp_path / "rec" / "meta.json").read_text())["frames"] == 240


@pytest.mark.parametrize("fps", ["-5", ".nan", "0"])
def test_preset_with_a_bad_fps_is_refused_before_recording(tmp_path, capsys, fps):
    text = (REPO / "configs" / "tiny.yaml").read_text().replace("fps: 12.0", f"fps: {fps}")
    preset = tmp_path / "badfps.yaml"
    preset.write_text(text)
    argv = headless(tmp_path / "run")
    argv[argv.index("tiny")] = str(preset)
    assert main(argv) == 2
    assert "fps" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "run" / "meta.json").exists()


# --- item 9: signals ---


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_sigterm_and_sighup_finalise_like_ctrl_c(tmp_path, sig, code):
    out = tmp_path / "run"
    proc = start_long_run(out)
    wait_for_blocks(proc, out, 3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code and "Traceback" not in err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] is True and meta["frames"] == video_frames(out / "video.mp4") >= 9 + 12


def test_replay_without_block_hashes_or_with_an_outside_start_image_fails(tmp_path, capsys):
    rec = tmp_path / "rec"
    assert main(headless(rec, frames=10)) == 0
    (rec / "blocks.jsonl").rename(tmp_path / "blocks.jsonl")
    capsys.readouterr()
    assert main(["--replay", str(rec), "--out", str(tmp_path / "a"), "--quiet"]) == 2
    assert "blocks.jsonl is missing" in one_error_line(capsys.readouterr().err)
    (tmp_path / "blocks.jsonl").rename(rec / "blocks.jsonl")
    meta = json.loads((rec / "meta.json").read_text())
    (tmp_path / "outside.png").write_bytes((rec / "start.png").read_bytes())
    (rec / "meta.json").write_text(json.dumps(dict(meta, start_image_file="../outside.png")))
    assert main(["--replay", str(rec), "--out", str(tmp_path / "b"), "--quiet"]) == 2
    assert "outside the recording folder" in one_error_line(capsys.readouterr().err)

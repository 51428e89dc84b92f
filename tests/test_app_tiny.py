"""The app with a real tiny random world model (configs/tiny.yaml): headless, window, recording, replay."""

import json

import imageio_ffmpeg
import pygame

from app.cli import main, session_meta
from app.replay import replay_recording
from app.start_images import StartImages
from app.window import App, AppOptions
from engine.config import load_preset
from engine.worlds import build_world
from tests.test_app_support import gradient_image  # noqa: F401  (sets the dummy SDL drivers)


def test_headless_tiny_writes_outputs_and_replays_identically(tmp_path, capsys):
    out, again = tmp_path / "run", tmp_path / "replay"
    argv = [
        "--headless",
        "--preset",
        "tiny",
        "--actions",
        "bench:forward+camera_r",
        "--frames",
        "10",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--quiet",
    ]
    assert main(argv) == 0
    for name in ("video.mp4", "actions.jsonl", "meta.json", "metrics.json", "blocks.jsonl", "start.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["frames"] == 10 and metrics["blocks"] == 2 and len(metrics["block_ms"]) == 2
    )  # 9 + 12, 11 dropped
    assert metrics["generation_fps"] > 0 and metrics["peak_rss_mb"] > 0
    assert imageio_ffmpeg.count_frames_and_secs(str(out / "video.mp4"))[0] == 10
    rows = [json.loads(line) for line in (out / "actions.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and rows[0]["keyboard"] == [1, 0, 0, 0] and rows[0]["mouse"] == [0, 0.1]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["preset"] == "tiny" and meta["seed"] == 0 and meta["version"] and meta["complete"]
    capsys.readouterr()
    assert main(["--replay", str(out), "--out", str(again), "--quiet"]) == 0
    assert "2/2 blocks identical" in capsys.readouterr().out
    assert imageio_ffmpeg.count_frames_and_secs(str(again / "video.mp4"))[0] == 10


def test_window_with_tiny_model_records_and_replays(tmp_path):
    preset = load_preset("tiny")
    world = build_world(preset, None, "cpu", "bf16")
    opts = AppOptions(fps=50, record_dir=str(tmp_path / "rec"), screenshot_dir=str(tmp_path), error_hold_s=0)
    app = App(
        world,
        preset,
        StartImages(preset, log=lambda m: None),
        0,
        opts,
        session_meta(preset, None, "cpu", "bf16"),
    )

    def script(app, tick):
        if tick == 1:
            pygame.event.post(
                pygame.event.Event(pygame.KEYDOWN, key=pygame.K_d, mod=0, unicode="d", scancode=0)
            )

    assert app.run(max_frames=12, script=script, max_seconds=120) == 0
    s = app.summary()
    assert s["frames_shown"] == 12 and s["blocks"] >= 2
    meta = json.loads((tmp_path / "rec" / "meta.json").read_text())
    assert meta["complete"] and meta["frames"] >= 21
    result = replay_recording(str(tmp_path / "rec"), str(tmp_path / "replay"), progress=False)
    assert result.identical and result.compared == s["blocks"]


def test_compare_headless_writes_side_by_side_and_both_videos(tmp_path):
    import pytest

    pytest.importorskip("vizdoom")
    out = tmp_path / "cmp"
    argv = ["--headless", "--compare", "--preset", "tiny", "--frames", "9", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    sizes = {}
    for name in ("video", "real", "dream"):
        reader = imageio_ffmpeg.read_frames(str(out / f"{name}.mp4"))
        sizes[name] = next(reader)["size"]
        assert imageio_ffmpeg.count_frames_and_secs(str(out / f"{name}.mp4"))[0] == 9
    assert sizes["video"] == (2 * sizes["real"][0], sizes["real"][1]) and sizes["real"] == sizes["dream"]
    assert json.loads((out / "meta.json").read_text())["compare_preset"] == "vizdoom"

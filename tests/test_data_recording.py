"""A worldplayer recording folder (or a folder of them) is a training source: the trainers read the
frames that were shown and the actions that were held, and train on them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.action_file import block_slice
from app.bench_actions import ScriptedActions
from app.compare import CompareWorld
from app.headless import run_headless
from engine.train.episodes import load_action_episodes, load_frame_episodes
from tests.test_app_support import FakeWorld, gradient_image

REPO = Path(__file__).resolve().parent.parent
SYNTHETIC = "configs/train/presets/synthetic.yaml"  # 64x64, tiny VAE


class KeepingWorld(FakeWorld):
    """FakeWorld that keeps every frame it returns (what the recording was given)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.shown: list[np.ndarray] = []

    def step(self, actions):
        frames = super().step(actions)
        self.shown.append(frames)
        return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def record(out: Path, frames: int, video_start_frame: int = 0, world=None, meta=None):
    world = world or KeepingWorld(height=64, width=64)
    actions = ScriptedActions("random", "universal", frames, 4, True, seed=1)
    image = gradient_image(64, 64)
    run_headless(world, image, actions, frames, str(out), 0, meta or {"preset": "fake"},
                 video_start_frame=video_start_frame, progress=False)  # fmt: skip
    return world, actions


def test_recording_started_mid_session_reads_back_as_shown(tmp_path):
    world, actions = record(tmp_path / "rec", 33, video_start_frame=9)  # R pressed after block 0
    (ep,) = load_action_episodes([str(tmp_path / "rec")], 64, 64)
    shown = np.concatenate(world.shown)[9:33]  # [24, 64, 64, 3]
    held = block_slice(actions, 9, 24)
    assert ep.frames.shape == shown.shape and ep.frames.dtype == np.uint8
    assert np.array_equal(ep.keyboard, held.keyboard) and np.array_equal(ep.mouse, held.mouse)
    assert psnr(ep.frames, shown) > 30, psnr(ep.frames, shown)  # H.264, not bit-exact


def test_folder_of_recordings_is_one_episode_each_and_trains_the_vae(tmp_path):
    from engine.train.config import VAETrainConfig, load_train_config
    from engine.train.vae_trainer import train_vae

    record(tmp_path / "recs" / "a", 21)
    record(tmp_path / "recs" / "a_2", 33)  # the window's next recording after Backspace/]/N
    assert [len(f) for f in load_frame_episodes([str(tmp_path / "recs")])] == [21, 33]
    out = tmp_path / "vae"
    args = [f"preset={SYNTHETIC}", f"data=[{tmp_path / 'recs'}]", "crop=[0,0]", f"run.out_dir={out}",
            "run.steps=1", "run.batch_size=1", "run.warmup_steps=1", "run.progress=false"]  # fmt: skip
    train_vae(load_train_config(VAETrainConfig, None, args))
    assert (out / "model.safetensors").is_file()


def test_compare_recording_trains_on_the_real_half(tmp_path):
    real, dream = KeepingWorld(height=64, width=64), FakeWorld(height=64, width=64)
    record(
        tmp_path / "rec", 21, world=CompareWorld(real, dream), meta={"preset": "fake", "compare_preset": "x"}
    )
    (ep,) = load_action_episodes([str(tmp_path / "rec")], 64, 64)
    assert psnr(ep.frames, np.concatenate(real.shown)[:21]) > 30


def test_bad_action_line_names_the_file_and_line(tmp_path):
    record(tmp_path / "rec", 9)
    path = tmp_path / "rec" / "actions.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = '{"keyboard": [1, 0, 0, 0]}'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="actions.jsonl line 3"):
        load_action_episodes([str(tmp_path / "rec")], 64, 64)


def test_vizdoom_recording_trains_one_vae_step(tmp_path):
    """The issue's path: `main.py --preset vizdoom` records, `python -m engine.train vae` trains on it."""
    pytest.importorskip("vizdoom")
    rec = tmp_path / "doom_rec"
    env = dict(os.environ, OMP_NUM_THREADS="1", SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
    main = [sys.executable, str(REPO / "main.py"), "--headless", "--preset", "vizdoom", "--frames", "21"]
    subprocess.run(main + ["--out", str(rec), "--quiet"], check=True, cwd=tmp_path, env=env)
    assert (rec / "start.png").is_file()  # the game's first frame (the README lists it for every run)
    (ep,) = load_action_episodes([str(rec)], 144, 256)
    rows = [json.loads(line) for line in (rec / "actions.jsonl").read_text().splitlines()]
    assert len(ep.frames) == 21 and ep.keyboard.tolist() == [r["keyboard"] for r in rows]
    out = tmp_path / "vae"
    train = [sys.executable, "-m", "engine.train", "vae", "preset=doom", f"data=[{rec}]", "crop=[72,128]",
             f"run.out_dir={out}", "run.steps=1", "run.batch_size=1", "run.progress=false"]  # fmt: skip
    subprocess.run(train, check=True, cwd=REPO, env=env, capture_output=True)
    assert (out / "model.safetensors").is_file()

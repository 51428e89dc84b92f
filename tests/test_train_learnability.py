"""End to end: a tiny VAE + world model trained on the synthetic world follow actions through the session.

The synthetic world scrolls a texture: strafing left (A) or turning left (mouse yaw < 0) moves the
content right, strafing or turning right moves it left. After a few minutes of CPU training, the real
streaming pipeline (engine.worlds.session, the same code the app runs) must move the generated image the
same way over several blocks. Keys and mouse reach the model by different action modules, so each is
trained and checked on its own.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests._synthetic_helpers import horizontal_motion, record, rollout

PRESET = "configs/train/presets/synthetic.yaml"


def train_synthetic(tmp_path, control: str, world_steps: int = 1200, lr: float = 2e-3):
    from engine.train.config import VAETrainConfig, WorldTrainConfig, load_train_config
    from engine.train.vae_trainer import train_vae
    from engine.train.world_trainer import train_world

    data = tmp_path / "data"
    record(data, episodes=16, frames=97, control=control)
    vae_cfg = load_train_config(
        VAETrainConfig,
        None,
        [f"preset={PRESET}", f"data=[{data}]", "crop=[0,0]", f"run.out_dir={tmp_path / 'vae'}",
         "run.steps=10", "run.batch_size=2", "run.lr=3e-4", "run.progress=false"],
    )  # fmt: skip
    train_vae(vae_cfg)
    # the world preset now points at the trained VAE
    preset_file = tmp_path / "synthetic.yaml"
    text = (
        open(PRESET)
        .read()
        .replace(
            "  num_res_blocks: 1\n", f"  num_res_blocks: 1\n  checkpoint: {tmp_path}/vae/model.safetensors\n"
        )
    )
    preset_file.write_text(text)
    world_cfg = load_train_config(
        WorldTrainConfig,
        None,
        [f"preset={preset_file}", f"data=[{data}]", f"run.out_dir={tmp_path / 'world'}",
         "mode=autoregressive", "context_latents=3", "clip_latents=3", "curriculum_fraction=0.3",
         f"run.steps={world_steps}", "run.batch_size=8", f"run.lr={lr}", "run.warmup_steps=20",
         "run.progress=false", "ema=0.98", "ema_start=50", "action_dropout=0.0"],
    )  # fmt: skip
    result = train_world(world_cfg)
    return preset_file, tmp_path / "world" / "ema.safetensors", result


@pytest.mark.slow  # ~144 s per case idle; the default world's learnability: tests/test_unet_world.py
@pytest.mark.parametrize("control", ["keys", "mouse"])
def test_trained_model_follows_left_and_right(tmp_path, control):
    from engine.config import load_preset
    from engine.worlds.session import load_session
    from engine.worlds.synthetic import SyntheticWorld

    preset_file, weights, _ = train_synthetic(tmp_path, control)
    preset = replace(load_preset(str(preset_file)), checkpoint=str(weights))
    session = load_session(preset, dtype="fp32")
    world = SyntheticWorld(64, 64)
    left, right = [], []
    for seed in range(3):
        world.start(seed=100 + seed)
        image = world.frame
        left.append(horizontal_motion(rollout(session, image, control, -1, 4, seed)))  # content moves right
        right.append(horizontal_motion(rollout(session, image, control, 1, 4, seed)))  # content moves left
    assert np.mean(left) > 0.5 and np.mean(right) < -0.5, (left, right)

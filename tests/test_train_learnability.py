"""End to end: a tiny VAE + world model trained on the synthetic world follow actions through the session.

The synthetic world scrolls a texture: strafing left (A) moves the content right, strafing right (D)
moves it left. After a few minutes of CPU training, the real streaming pipeline (engine.session,
the same code the app runs) must move the generated image the same way over several blocks.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.actions import ActionBlock

PRESET = "configs/train/presets/synthetic.yaml"


def horizontal_motion(frames: np.ndarray) -> float:
    """Mean per-frame horizontal content shift (pixels, + = right) by phase correlation of luminance."""
    g = frames.astype(np.float64).mean(axis=-1)  # [T, H, W]
    window = np.outer(np.hanning(g.shape[1]), np.hanning(g.shape[2]))
    g = (g - g.mean(axis=(1, 2), keepdims=True)) * window
    shifts = []
    for a, b in zip(g[:-1], g[1:], strict=True):
        fa, fb = np.fft.fft2(a), np.fft.fft2(b)
        r = fb * np.conj(fa)
        corr = np.fft.ifft2(r / (np.abs(r) + 1e-9)).real
        dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
        shifts.append(dx if dx <= g.shape[2] // 2 else dx - g.shape[2])
    return float(np.mean(shifts))


def rollout(session, image: np.ndarray, key: int, blocks: int, seed: int) -> np.ndarray:
    session.start(image, seed=seed)
    out = []
    for _ in range(blocks):
        kb = np.zeros((session.actions_needed, 4), np.float32)
        kb[:, key] = 1.0
        out.append(session.step(ActionBlock(kb, np.zeros((len(kb), 2), np.float32))))
    return np.concatenate(out)


def record(folder, episodes: int, frames: int) -> None:
    """Synthetic episodes where A, D or nothing is held for 12-24 frames (npz: frames, keyboard, mouse)."""
    from engine.data.synthetic_world import SyntheticWorld

    folder.mkdir(parents=True)
    world, rng = SyntheticWorld(64, 64), np.random.default_rng(0)
    for ep in range(episodes):
        world.start(seed=ep)
        keyboard, mouse = np.zeros((frames, 4), np.float32), np.zeros((frames, 2), np.float32)
        i = 0
        while i < frames:
            n, key = int(rng.integers(12, 25)), int(rng.integers(0, 3))
            if key:
                keyboard[i : i + n, key + 1] = 1.0  # A (2) or D (3)
            i += n
        video = []
        for i in range(frames):
            video.append(world.frame)
            world.advance(keyboard[i], mouse[i])
        np.savez(folder / f"ep{ep:03d}.npz", frames=np.stack(video), keyboard=keyboard, mouse=mouse)


def train_synthetic(tmp_path, world_steps: int = 1200, lr: float = 2e-3):
    from engine.train.config import VAETrainConfig, WorldTrainConfig, load_train_config
    from engine.train.vae_trainer import train_vae
    from engine.train.world_trainer import train_world

    data = tmp_path / "data"
    record(data, episodes=16, frames=97)
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


def test_trained_model_follows_left_and_right(tmp_path):
    from engine.config import load_preset
    from engine.data.synthetic_world import SyntheticWorld
    from engine.session import load_session

    preset_file, weights, _ = train_synthetic(tmp_path)
    preset = replace(load_preset(str(preset_file)), checkpoint=str(weights))
    session = load_session(preset, dtype="fp32")
    world = SyntheticWorld(64, 64)
    left, right = [], []
    for seed in range(3):
        world.start(seed=100 + seed)
        image = world.frame
        left.append(horizontal_motion(rollout(session, image, 2, 4, seed)))  # A: content moves right
        right.append(horizontal_motion(rollout(session, image, 3, 4, seed)))  # D: content moves left
    assert np.mean(left) > 0.5 and np.mean(right) < -0.5, (left, right)

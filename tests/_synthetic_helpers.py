"""Synthetic-world helpers shared by the learnability tests: scripted left/right actions, recording
episodes that hold them, and measuring which way the picture moves."""

from __future__ import annotations

import numpy as np

from engine.actions import ActionBlock

YAW = 0.25  # the synthetic world's mouse_speed 8 makes this 2 px per frame, as key_speed 2 for A / D


def hold(control: str, direction: int, n: int) -> ActionBlock:
    """n frames of turning (mouse yaw) or strafing (A / D): direction -1 = left, +1 = right."""
    keyboard, mouse = np.zeros((n, 4), np.float32), np.zeros((n, 2), np.float32)
    if control == "mouse":
        mouse[:, 1] = direction * YAW
    elif direction:
        keyboard[:, 2 if direction < 0 else 3] = 1.0  # A or D
    return ActionBlock(keyboard, mouse)


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


def rollout(session, image: np.ndarray, control: str, direction: int, blocks: int, seed: int) -> np.ndarray:
    session.start(image, seed=seed)
    return np.concatenate(
        [session.step(hold(control, direction, session.actions_needed)) for _ in range(blocks)]
    )


def record(folder, episodes: int, frames: int, control: str, **world_kwargs) -> None:
    """Synthetic episodes holding left, right or nothing for 12-24 frames (npz: frames, keyboard, mouse)."""
    from engine.worlds.synthetic import SyntheticWorld

    folder.mkdir(parents=True)
    world, rng = SyntheticWorld(64, 64, **world_kwargs), np.random.default_rng(0)
    for ep in range(episodes):
        world.start(seed=ep)
        spans = []
        while sum(len(s) for s in spans) < frames:
            n, key = int(rng.integers(12, 25)), int(rng.integers(0, 3))
            spans.append(hold(control, (0, -1, 1)[key], n))  # nothing, left, right
        actions = ActionBlock.concat(spans).slice(0, frames)
        video = []
        for i in range(frames):
            video.append(world.frame)
            world.advance(actions.keyboard[i], actions.mouse[i])
        np.savez(
            folder / f"ep{ep:03d}.npz", frames=np.stack(video), keyboard=actions.keyboard, mouse=actions.mouse
        )

"""Render Freedoom frames for the VAR tokenizer and generator (a small, self-contained data source).

Random walks with sticky actions and god mode on each map; one frame every `every` tics, no HUD, RGB24 at
256x144 (the `doom` preset), class = map index in `maps`. Output: one `.npz` per map with
`frames: uint8 [N, H, W, 3]` and `label: int`. freedoom1.wad is for evaluation only, never for training.

    python -m engine.var.frames --out data/var_frames/train --frames 300 --seed 0
    python -m engine.var.frames --out data/var_frames/val --frames 40 --seed 1
    python -m engine.var.frames --wad freedoom1.wad --maps E1M1 E1M2 --out data/var_frames/fd1 --frames 40
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

FREEDOOM2_MAPS = tuple(f"MAP{i:02d}" for i in range(1, 21))  # class index = position in this tuple


def _make_game(wad: str, map_name: str, seed: int):
    import vizdoom as vzd

    game = vzd.DoomGame()
    game.set_doom_game_path(os.path.join(os.path.dirname(vzd.__file__), wad))
    game.set_doom_map(map_name)
    game.set_screen_resolution(vzd.ScreenResolution.RES_256X144)
    game.set_screen_format(vzd.ScreenFormat.RGB24)
    game.set_render_hud(False)
    game.set_render_weapon(True)
    game.set_window_visible(False)
    game.set_mode(vzd.Mode.PLAYER)
    game.set_doom_skill(1)
    game.set_episode_timeout(0)
    game.set_seed(seed)
    buttons = [
        vzd.Button.MOVE_FORWARD,
        vzd.Button.MOVE_BACKWARD,
        vzd.Button.TURN_LEFT,
        vzd.Button.TURN_RIGHT,
        vzd.Button.USE,
        vzd.Button.ATTACK,
    ]
    game.set_available_buttons(buttons)
    game.set_available_game_variables([vzd.GameVariable.POSITION_X, vzd.GameVariable.POSITION_Y])
    game.init()
    return game


def render_map(wad: str, map_name: str, n_frames: int, seed: int, every: int = 8) -> np.ndarray:
    """Random-walk one map and return `uint8 [n_frames, 144, 256, 3]`."""
    rng = np.random.default_rng(seed)
    game = _make_game(wad, map_name, seed)
    game.new_episode()
    game.send_game_command("god")
    frames: list[np.ndarray] = []
    action = [1, 0, 0, 0, 0, 0]
    hold, last_pos, stuck = 0, None, 0
    while len(frames) < n_frames:
        if game.is_episode_finished() or game.is_player_dead():
            game.new_episode()
            game.send_game_command("god")
        if hold <= 0:
            r = rng.random()
            turn = [0, 0] if r < 0.55 else ([1, 0] if r < 0.775 else [0, 1])
            fwd = [1, 0] if rng.random() < 0.85 else [0, 1]
            action = fwd + turn + [int(rng.random() < 0.2), int(rng.random() < 0.05)]
            hold = int(rng.integers(4, 20))
        if stuck > 3:  # turn around when walking into a wall
            action = [0, 0, 1, 0, 1, 0]
            hold, stuck = int(rng.integers(6, 14)), 0
        game.make_action(action, every)
        hold -= 1
        if game.is_episode_finished():
            continue
        state = game.get_state()
        pos = (state.game_variables[0], state.game_variables[1])
        stuck = (
            stuck + 1
            if last_pos is not None and abs(pos[0] - last_pos[0]) + abs(pos[1] - last_pos[1]) < 4
            else 0
        )
        last_pos = pos
        img = state.screen_buffer  # [144, 256, 3] RGB24
        if img.shape != (144, 256, 3):
            raise ValueError(f"vizdoom screen {img.shape=}, expected (144, 256, 3)")
        if rng.random() < 0.5:  # thin out consecutive frames a little
            frames.append(img.copy())
    game.close()
    return np.stack(frames)


def load_frames(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Load every `.npz` in `folder` -> (frames uint8 [N, H, W, 3], labels int64 [N])."""
    files = sorted(Path(folder).glob("*.npz"))
    if not files:
        raise ValueError(f"no .npz frame files in {folder}; render them with python -m engine.var.frames")
    xs, ys = [], []
    for f in files:
        d = np.load(f)
        xs.append(d["frames"])
        ys.append(np.full(len(d["frames"]), int(d["label"]), dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wad", default="freedoom2.wad")
    p.add_argument("--maps", nargs="*", default=list(FREEDOOM2_MAPS))
    p.add_argument("--out", required=True)
    p.add_argument("--frames", type=int, default=300, help="frames per map")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(a.maps):
        frames = render_map(a.wad, m, a.frames, seed=a.seed * 1000 + i)
        label = FREEDOOM2_MAPS.index(m) if m in FREEDOOM2_MAPS else -1
        np.savez_compressed(out / f"{m}.npz", frames=frames, label=label)
        print(f"{m}: {frames.shape}", flush=True)


if __name__ == "__main__":
    main()

"""Real Freedoom as a World: ViZDoom rendered headless at the preset's size, driven by universal actions.

Frames: uint8 [T, H, W, 3] RGB at the preset's height x width. ViZDoom renders at the smallest built-in
resolution that covers the preset (exactly 256x144 for the `doom` presets); any other size is centre
cropped to the preset's aspect ratio and resized with a Lanczos filter. No HUD, status bar, crosshair,
messages, weapon sprite or screen flashes.

Time: `GameConfig.tics_per_frame` game tics per video frame (Doom runs 35 tics/s: 2 tics = 17.5 fps).

Actions (engine.actions convention, actions[i] takes frame i to frame i+1):
  keyboard [W, S, A, D] -> MOVE_FORWARD, MOVE_BACKWARD, MOVE_LEFT, MOVE_RIGHT (walking speed; `run=True`
    holds SPEED as well);
  mouse [pitch, yaw] -> LOOK_UP_DOWN_DELTA, TURN_LEFT_RIGHT_DELTA with 1.0 = 15 degrees per video frame,
    spread evenly over the frame's tics (ViZDoom applies a delta button's value, in degrees, every tic).
    Freelook is on; the engine clamps pitch to [-32, +56] degrees (up is the smaller range), so a
    long look up stops at 32 degrees.

Blocks: `step` returns `actions_needed` frames, the block sizes of the preset's neural world (9 for
block 0 and 12 after for the Matrix-Game layout of the `vizdoom` presets; 1 for `vizdoom-e1m1`). The
first returned frame is the current one (the start frame for block 0); every action advances the game,
so the block's last action produces the first frame of the next block.

Doors: the action space has no use key. With `game.auto_use` the world presses USE on every frame
that W is held, so walking into a door opens it (and walking into an exit switch ends the episode).

Episodes: monsters are off by default (`-nomonsters`) and god mode is on, so the player cannot die; an
episode still ends when the player walks over an exit line or the timeout passes. The world then starts
a new episode (same map, seed + 1) at once, even mid-block: the frame after the last frame of the old
episode is the first frame of the new one. `last_resets` lists the indices, within the last returned
block, of frames that start a new episode (the recorder cuts episodes there).

Determinism: the same map, seed and actions give identical frames (tested).
"""

from __future__ import annotations

import os
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from engine.actions import ActionBlock
from engine.config import Preset, resolve_path
from engine.worlds import WorldSpec, preset_block_frames

DEGREES_PER_UNIT = 15.0  # mouse 1.0 = 15 degrees per video frame
WARMUP_TICS = 10  # ZDoom ignores turning for the first 8 tics of a level; frame 0 comes after these
KEYS = ("W", "S", "A", "D")


def find_wad(wad: str) -> str:
    """Path of a WAD: as given (absolute or repo-relative) if it exists, else one shipped with vizdoom."""
    path = resolve_path(wad)
    if os.path.isfile(path):
        return path
    import vizdoom

    shipped = Path(vizdoom.__file__).parent / os.path.basename(wad)
    if shipped.is_file():
        return str(shipped)
    raise ValueError(f"WAD not found: {wad!r} (looked in the repository and in {shipped.parent})")


def wad_maps(path: str) -> list[str]:
    """Names of the maps in a WAD file (marker lumps followed by THINGS), in directory order."""
    with open(path, "rb") as f:
        magic, count, offset = struct.unpack("<4sii", f.read(12))
        if magic not in (b"IWAD", b"PWAD"):
            raise ValueError(f"{path} is not a WAD file")
        f.seek(offset)
        names = [f.read(16)[8:].rstrip(b"\0").decode("ascii", "replace") for _ in range(count)]
    return [n for n, nxt in zip(names, names[1:], strict=False) if nxt == "THINGS"]


def pick_resolution(height: int, width: int) -> tuple[str, int, int]:
    """The ViZDoom ScreenResolution to render for a target size: exact if available, else the smallest
    one at least as large whose aspect ratio is closest. Returns (name, height, width)."""
    import vizdoom as vzd

    sizes = []
    for name in dir(vzd.ScreenResolution):
        if name.startswith("RES_"):
            w, h = (int(v) for v in name[4:].split("X"))
            sizes.append((name, h, w))
    if any(h == height and w == width for _, h, w in sizes):
        return next(s for s in sizes if s[1] == height and s[2] == width)
    big = [s for s in sizes if s[1] >= height and s[2] >= width]
    if not big:
        raise ValueError(f"no ViZDoom resolution covers {width}x{height}; the largest is 1920x1080")
    aspect = width / height
    return min(big, key=lambda s: (round(abs(s[2] / s[1] - aspect), 2), s[1] * s[2]))


def fit_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre crop uint8 [h, w, 3] to the target aspect ratio and resize (Lanczos) to [height, width, 3]."""
    h, w = frame.shape[:2]
    if (h, w) == (height, width):
        return frame
    if w * height > h * width:  # too wide
        cw = round(h * width / height)
        frame = frame[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    elif w * height < h * width:  # too tall
        ch = round(w * height / width)
        frame = frame[(h - ch) // 2 : (h - ch) // 2 + ch]
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.LANCZOS))


def _vizdoom_children() -> set[int]:
    """PIDs of this process's child processes named vizdoom (Linux /proc; empty elsewhere)."""
    me, found = str(os.getpid()), set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            if fields[0].endswith("(vizdoom") and fields[1].split()[1] == me:
                found.add(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    return found


def _reap_on_exit(pids: set[int]) -> Optional[subprocess.Popen]:
    """ViZDoom's engine process outlives a killed Python process; a tiny shell watchdog kills it then.

    The watchdog stays in our process group (a group kill takes it too), ignores SIGINT/SIGHUP (Ctrl-C is
    handled by Python), holds none of our pipes, and treats a zombie parent as dead."""
    if not pids:
        return None
    me, kill = os.getpid(), " ".join(str(p) for p in sorted(pids))
    alive = f"kill -0 {me} 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' /proc/{me}/status"
    script = f"trap '' INT HUP; while {alive}; do sleep 1; done; kill -9 {kill} 2>/dev/null"
    null = subprocess.DEVNULL
    return subprocess.Popen(["sh", "-c", script], stdin=null, stdout=null, stderr=null)


class VizDoomWorld:
    """Freedoom via ViZDoom behind the World protocol (engine.worlds). See the module docstring."""

    def __init__(
        self,
        preset: Preset,
        monsters: bool = False,
        god: bool = True,
        run: bool = False,
        skill: int = 3,
        depth: bool = True,
    ):
        import vizdoom as vzd

        if preset.mode != "universal":
            raise ValueError(
                f"preset {preset.name}: the ViZDoom world needs mode universal, got {preset.mode!r}"
            )
        self.preset = preset
        self.game_cfg = preset.game
        if self.game_cfg.tics_per_frame < 1:
            raise ValueError(f"preset {preset.name}: game.tics_per_frame must be >= 1")
        if abs(preset.fps * self.game_cfg.tics_per_frame - 35.0) > 0.05:
            raise ValueError(
                f"preset {preset.name}: fps {preset.fps} does not match game.tics_per_frame "
                f"{self.game_cfg.tics_per_frame} (Doom runs 35 tics/s: fps = 35 / tics_per_frame)"
            )
        block_frames = preset_block_frames(preset, 1)
        self.spec = WorldSpec(
            preset.name, "universal", preset.height, preset.width, preset.fps, 4, True, block_frames
        )
        self.run = run
        self.god = god
        self._res, self._rh, self._rw = pick_resolution(preset.height, preset.width)

        g = vzd.DoomGame()
        wad_path = find_wad(self.game_cfg.wad)
        self.maps_available = wad_maps(wad_path)
        self._check_map(self.game_cfg.maps[0])
        g.set_doom_game_path(wad_path)
        config_dir = os.path.join(tempfile.gettempdir(), f"worldplayer-vizdoom-{os.getuid()}")
        os.makedirs(config_dir, exist_ok=True)
        g.set_doom_config_path(os.path.join(config_dir, "_vizdoom.ini"))  # not the cwd
        g.set_doom_map(self.game_cfg.maps[0])
        g.set_doom_skill(skill)
        g.set_screen_resolution(getattr(vzd.ScreenResolution, self._res))
        g.set_screen_format(vzd.ScreenFormat.RGB24)
        g.set_window_visible(False)
        g.set_sound_enabled(False)
        for part in ("hud", "minimal_hud", "weapon", "crosshair", "messages", "screen_flashes"):
            getattr(g, f"set_render_{part}")(False)
        g.set_render_corpses(True)
        g.set_depth_buffer_enabled(depth)
        buttons = [
            vzd.Button.MOVE_FORWARD,
            vzd.Button.MOVE_BACKWARD,
            vzd.Button.MOVE_LEFT,
            vzd.Button.MOVE_RIGHT,
        ]
        buttons += [vzd.Button.LOOK_UP_DOWN_DELTA, vzd.Button.TURN_LEFT_RIGHT_DELTA, vzd.Button.SPEED]
        buttons += [vzd.Button.USE]
        g.set_available_buttons(buttons)
        V = vzd.GameVariable
        g.set_available_game_variables([V.POSITION_X, V.POSITION_Y, V.POSITION_Z, V.ANGLE, V.PITCH, V.HEALTH])
        args = "+freelook 1 +sv_cheats 1" + ("" if monsters else " -nomonsters")
        g.add_game_args(args)
        g.set_mode(vzd.Mode.PLAYER)
        g.set_episode_timeout(int(self.game_cfg.episode_timeout_s * 35))
        before = _vizdoom_children()
        g.init()
        self.game = g
        self._watchdog = _reap_on_exit(_vizdoom_children() - before)

        self.map = self.game_cfg.maps[0]
        self.seed = 0
        self.episode = 0  # episodes started since the last `start` (a reset increments it)
        self.last_resets: list[int] = []
        self.last_tics = np.zeros(0, np.int32)
        self.last_poses = np.zeros((0, 5), np.float32)
        self._block = 0
        self._frame: Optional[np.ndarray] = None  # uint8 [H, W, 3], the frame the next action acts on
        self._depth: Optional[np.ndarray] = None
        self._tic = 0
        self._pending_reset = False

    # -- World protocol ---------------------------------------------------------------------------
    @property
    def actions_needed(self) -> int:
        return preset_block_frames(self.preset, self._block)

    @property
    def block_index(self) -> int:
        return self._block

    def start(self, image: Optional[np.ndarray] = None, seed: int = 0, map: Optional[str] = None) -> None:
        """Begin an episode on `map` (default: the preset's first map). `image` is ignored: the game has
        its own start state."""
        self.map = map or self.game_cfg.maps[0]
        self._check_map(self.map)
        self.seed = seed
        self.episode = 0
        self._block = 0
        self._new_episode()
        self._pending_reset = False

    def step(self, actions: ActionBlock) -> np.ndarray:
        """Advance one block: uint8 [T, H, W, 3], T == actions_needed; frame 0 is the current frame."""
        if self._frame is None:
            raise RuntimeError("call start() before step()")
        actions.check(4, True, self.actions_needed)
        frames, tics, poses, resets = [], [], [], []
        for i in range(len(actions)):
            if self._pending_reset:
                resets.append(i)
                self._pending_reset = False
            frames.append(self._frame)
            tics.append(self._tic)
            poses.append(self.pose)
            self.advance(actions.keyboard[i], actions.mouse[i])
        self._block += 1
        self.last_resets = resets
        self.last_tics = np.asarray(tics, np.int32)
        self.last_poses = np.stack(poses)  # [T, 5], the pose of each returned frame
        return np.stack(frames)  # [T, H, W, 3]

    def close(self) -> None:
        self.game.close()
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None

    # -- frame-level access (recorder, explorer) -----------------------------------------------------
    @property
    def frame(self) -> np.ndarray:
        """The current frame, uint8 [H, W, 3]: the one the next action acts on."""
        return self._frame

    @property
    def depth(self) -> np.ndarray:
        """Depth of the current frame, uint8 [h, w] at the render resolution: larger = farther, about
        7 map units per step (1 = touching a wall; the player walks about 17 units per frame)."""
        if self._depth is None:
            raise RuntimeError("depth buffer disabled or no frame yet")
        return self._depth

    @property
    def tic(self) -> int:
        """Game tic of the current frame since its episode began."""
        return self._tic

    @property
    def pose(self) -> np.ndarray:
        """float32 [5]: x, y, z, angle (degrees, counter-clockwise), pitch (degrees, negative = up)."""
        return np.asarray(self._vars[:5], np.float32)

    @property
    def reset_pending(self) -> bool:
        """True when the current frame is the first frame of an episode started by a reset."""
        return self._pending_reset

    def advance(self, keyboard: np.ndarray, mouse: np.ndarray) -> np.ndarray:
        """Hold one frame's action for tics_per_frame tics; returns the next frame uint8 [H, W, 3].

        keyboard: [4] (values > 0.5 count as pressed); mouse: [2] = [pitch, yaw] in model units.
        """
        tpf = self.game_cfg.tics_per_frame
        per_tic = DEGREES_PER_UNIT / tpf
        pressed = [float(k > 0.5) for k in keyboard]
        use = float(self.game_cfg.auto_use and pressed[0] > 0)
        action = pressed + [float(mouse[0]) * per_tic, float(mouse[1]) * per_tic, float(self.run), use]
        self.game.make_action(action, tpf)
        if self.game.is_episode_finished() or self.game.is_player_dead():
            self.seed += 1
            self.episode += 1
            self._new_episode()
            self._pending_reset = True
        else:
            self._grab()
        return self._frame

    def teleport(self, x: float, y: float, angle: float) -> np.ndarray:
        """Move the player to map position (x, y) facing `angle` degrees (counter-clockwise, as `pose`);
        returns the new current frame. Uses ZDoom's `warp` cheat (sv_cheats is on)."""
        self.game.send_game_command(f"warp {x:.1f} {y:.1f}")
        turn = (float(self.pose[3]) - angle + 540.0) % 360.0 - 180.0  # degrees to the right
        self.game.make_action([0.0] * 5 + [turn, 0.0, 0.0], 1)
        self._grab()
        return self._frame

    # -- internals ------------------------------------------------------------------------------------
    def _check_map(self, name: str) -> None:
        # ViZDoom hangs on a map the WAD lacks, so check first
        if name not in self.maps_available:
            raise ValueError(
                f"map {name!r} is not in {self.game_cfg.wad}; it has {', '.join(self.maps_available)}"
            )

    def _new_episode(self) -> None:
        g = self.game
        g.set_seed(self.seed & 0x7FFFFFFF)
        g.set_doom_map(self.map)
        g.new_episode()
        if self.god:
            g.send_game_command("god")
        idle = [0.0] * 8
        g.make_action(idle, max(1, WARMUP_TICS - g.get_episode_time()))
        if g.is_episode_finished():
            raise ValueError(
                f"map {self.map} ended during warm-up; is it a valid map of {self.game_cfg.wad}?"
            )
        self._grab()

    def _grab(self) -> None:
        state = self.game.get_state()
        self._frame = fit_frame(state.screen_buffer, self.spec.height, self.spec.width)
        self._depth = state.depth_buffer
        self._tic = self.game.get_episode_time()
        self._vars = state.game_variables

"""A scripted explorer with human-like action statistics, for bulk gameplay data.

Per video frame it reads the depth buffer (and optionally the player pose) and returns one action in the
universal space: keyboard [W, S, A, D] multi-hot, mouse [pitch, yaw] in model units (1.0 = 15 degrees
per video frame, up and right positive). Behaviour:
  - key combinations (forward, forward+strafe, strafe, back, none) held for 2-20 video frames, and now
    and then a long run straight forward or back (2-6 s);
  - smooth turns: the yaw rate eases towards a target that changes every 0.3-2 s (straight ahead 45% of
    the time, else 10-130 degrees/s either way, biased towards open space), plus slight jitter;
  - occasional pitch glances up or down (8-25 degrees), held, then eased back to level;
  - idle stretches (no keys, no mouse) of 0.5-3 s;
  - walls: when the centre of the depth buffer gets close it turns towards the more open side, and when
    very close (or stuck) it backs off for 0.3-0.8 s while turning; sometimes (`wall_push_prob`) it
    walks on into the wall for 0.5-1.5 s first, so the data shows what pushing against a wall looks like.
Deterministic given its seed and the observations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

# keyboard combos [W, S, A, D] and their weights when a new key segment starts
COMBOS = np.array(
    [
        [1, 0, 0, 0],
        [1, 0, 1, 0],
        [1, 0, 0, 1],
        [0, 0, 1, 0],
        [0, 0, 0, 1],
        [0, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 1, 0, 1],
    ]
    + [[0, 0, 0, 0]],
    np.float32,
)
COMBO_WEIGHTS = np.array([0.44, 0.08, 0.08, 0.07, 0.07, 0.06, 0.02, 0.02, 0.16])


@dataclass(frozen=True)
class ExplorerConfig:
    fps: float = 17.5
    hold_frames: tuple[int, int] = (2, 20)  # key segment lengths, video frames
    long_run_prob: float = 0.12  # chance that a key segment is a long run straight forward or back
    long_run_s: tuple[float, float] = (2.0, 6.0)
    turn_s: tuple[float, float] = (0.3, 2.0)  # turn segment lengths
    idle_prob: float = 0.08  # chance that a new segment is an idle stretch
    idle_s: tuple[float, float] = (0.5, 3.0)
    straight_prob: float = 0.45  # chance that a turn segment goes straight
    turn_speed: tuple[float, float] = (0.03, 0.6)  # |yaw| in model units (0.45-9 degrees per frame)
    turn_ease: float = 0.25  # per-frame easing of the yaw rate towards its target
    yaw_jitter: float = 0.01
    glance_per_s: float = 0.12  # pitch glances per second
    glance_deg: tuple[float, float] = (8.0, 25.0)
    pitch_speed_deg: float = 2.5  # max pitch change per frame, degrees
    near_depth: int = 14  # depth units (about 7 map units each): start turning away
    wall_depth: int = 4  # back off
    backoff_s: tuple[float, float] = (0.3, 0.8)
    stuck_s: float = 1.2  # no movement for this long while pressing keys -> back off
    wall_push_prob: float = 0.25  # at a wall: chance to keep walking into it before backing off
    wall_push_s: tuple[float, float] = (0.5, 1.5)


class Explorer:
    """`act(depth, pose)` -> (keyboard float32 [4], mouse float32 [2]). See the module docstring."""

    def __init__(self, seed: int, cfg: ExplorerConfig = ExplorerConfig()):
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        self.keys = np.zeros(4, np.float32)
        self.key_left = 0  # frames left in the key segment
        self.idle_left = 0
        self.backoff_left = 0
        self.yaw = 0.0
        self.yaw_target = 0.0
        self.turn_left = 0
        self.pitch_deg = 0.0  # our estimate of the view pitch, up positive
        self.pitch_target = 0.0
        self.glance_left = 0
        self.still = 0  # frames without movement while keys are held
        self.push_left = 0  # frames left walking into a wall on purpose
        self.last_xy: Optional[np.ndarray] = None

    def _frames(self, lo_hi: tuple[float, float]) -> int:
        lo, hi = lo_hi
        return max(1, round(self.rng.uniform(lo, hi) * self.cfg.fps))

    def _open_side(self, depth: Optional[np.ndarray]) -> float:
        """+1 to turn right, -1 left: towards the deeper half of the view (random without depth)."""
        if depth is None:
            return float(self.rng.choice([-1.0, 1.0]))
        h, w = depth.shape
        band = depth[h // 3 : 2 * h // 3].astype(np.float32)
        left, right = band[:, : w // 3].mean(), band[:, 2 * w // 3 :].mean()
        if abs(left - right) < 2:
            return float(self.rng.choice([-1.0, 1.0]))
        return 1.0 if right > left else -1.0

    def _new_turn(self, depth: Optional[np.ndarray]) -> None:
        c = self.cfg
        self.turn_left = self._frames(c.turn_s)
        if self.rng.random() < c.straight_prob:
            self.yaw_target = 0.0
            return
        side = self._open_side(depth) if self.rng.random() < 0.6 else float(self.rng.choice([-1.0, 1.0]))
        lo, hi = np.log(c.turn_speed[0]), np.log(c.turn_speed[1])
        self.yaw_target = side * float(np.exp(self.rng.uniform(lo, hi)))

    def _new_keys(self) -> None:
        c = self.cfg
        if self.rng.random() < c.idle_prob:
            self.idle_left = self._frames(c.idle_s)
            self.keys = np.zeros(4, np.float32)
            self.yaw = self.yaw_target = 0.0
            return
        if self.rng.random() < c.long_run_prob:
            self.keys = COMBOS[0 if self.rng.random() < 0.7 else 5].copy()  # W alone or S alone
            self.key_left = self._frames(c.long_run_s)
            return
        self.keys = COMBOS[self.rng.choice(len(COMBOS), p=COMBO_WEIGHTS)].copy()
        self.key_left = int(self.rng.integers(c.hold_frames[0], c.hold_frames[1] + 1))

    def _start_backoff(self, depth: Optional[np.ndarray]) -> None:
        c = self.cfg
        self.backoff_left = self._frames(c.backoff_s)
        self.keys = np.array([0, 1, 0, 0], np.float32)
        if self.rng.random() < 0.3:
            self.keys[2 + int(self.rng.integers(2))] = 1.0  # back off diagonally
        self.yaw_target = self._open_side(depth) * float(self.rng.uniform(0.25, 0.5))
        self.turn_left = self.backoff_left + self._frames((0.2, 0.6))
        self.idle_left = 0
        self.still = 0

    def _update_stuck(self, pose: Optional[np.ndarray]) -> bool:
        if pose is None:
            return False
        xy = np.asarray(pose[:2], np.float32)
        moved = self.last_xy is None or float(np.abs(xy - self.last_xy).sum()) > 0.5
        self.last_xy = xy
        self.still = 0 if moved or not self.keys.any() else self.still + 1
        return self.still > self.cfg.stuck_s * self.cfg.fps

    def _pitch(self) -> float:
        """Pitch command in model units; glances away from level, then eases back."""
        c = self.cfg
        if self.glance_left > 0:
            self.glance_left -= 1
            if self.glance_left == 0:
                self.pitch_target = 0.0
        elif self.rng.random() < c.glance_per_s / c.fps:
            self.pitch_target = float(self.rng.choice([-1.0, 1.0]) * self.rng.uniform(*c.glance_deg))
            self.glance_left = self._frames((0.8, 2.5))
        step = float(
            np.clip(0.35 * (self.pitch_target - self.pitch_deg), -c.pitch_speed_deg, c.pitch_speed_deg)
        )
        if abs(step) < 0.05:
            step = (
                self.pitch_target - self.pitch_deg if abs(self.pitch_target - self.pitch_deg) < 0.05 else step
            )
        self.pitch_deg += step
        return step / 15.0

    def act(
        self, depth: Optional[np.ndarray] = None, pose: Optional[np.ndarray] = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One frame's action. depth: uint8 [h, w] (larger = farther) or None; pose: [x, y, ...] or None."""
        c = self.cfg
        stuck = self._update_stuck(pose)
        centre = None
        if depth is not None:
            h, w = depth.shape
            centre = float(np.percentile(depth[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3], 20))

        at_wall = stuck or (centre is not None and centre < c.wall_depth and self.keys[0] > 0)
        if self.push_left > 0:  # walking into the wall on purpose, then backing off
            self.push_left -= 1
            self.still = 0
            if self.push_left == 0:
                self._start_backoff(depth)
        elif self.backoff_left > 0:
            self.backoff_left -= 1
            if self.backoff_left == 0:
                self._new_keys()
        elif at_wall:
            if self.rng.random() < c.wall_push_prob:
                self.push_left = self._frames(c.wall_push_s)
                self.keys = np.array([1, 0, 0, 0], np.float32)
                self.yaw_target = 0.0
                self.turn_left = self.push_left + 1
            else:
                self._start_backoff(depth)
        elif self.idle_left > 0:
            self.idle_left -= 1
            if self.idle_left == 0:
                self._new_keys()
                self._new_turn(depth)
            return np.zeros(4, np.float32), np.zeros(2, np.float32)
        else:
            self.key_left -= 1
            if self.key_left <= 0:
                self._new_keys()
                if self.idle_left > 0:
                    return np.zeros(4, np.float32), np.zeros(2, np.float32)
            if (
                centre is not None
                and centre < c.near_depth
                and self.keys[0] > 0
                and abs(self.yaw_target) < 0.2
            ):
                side = self._open_side(depth)
                self.yaw_target = side * float(self.rng.uniform(0.2, 0.45))
                self.turn_left = self._frames((0.3, 0.8))
                if self.rng.random() < 0.7:  # stop walking into it: turn in place or strafe away
                    self.keys = np.zeros(4, np.float32)
                    if self.rng.random() < 0.4:
                        self.keys[3 if side > 0 else 2] = 1.0
                    self.key_left = self.turn_left

        self.turn_left -= 1
        if self.turn_left <= 0:
            self._new_turn(depth)
        self.yaw += c.turn_ease * (self.yaw_target - self.yaw)
        if abs(self.yaw) < 0.005 and self.yaw_target == 0.0:
            self.yaw = 0.0
        yaw = self.yaw + (self.rng.normal(0.0, c.yaw_jitter) if self.yaw != 0.0 else 0.0)
        mouse = np.array([self._pitch(), yaw], np.float32)  # [pitch, yaw]
        return self.keys.copy(), mouse

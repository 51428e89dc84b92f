"""The live window: pygame display loop at the preset's frame rate, fed by the generation thread.

The loop, once per display tick: read events (keys, relative mouse motion, window keys), close one
video frame of input, pop one frame from the queue (or hold the last one and count a stall), draw it
letterboxed to keep the aspect ratio, draw the HUD on top, flip, and wait for the next tick.

Keys: the mode's keymap and the window controls, both data in `app.keymaps` (`keys_help` prints them).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pygame

from app.errors import NoDisplayError
from app.frame_queue import FrameQueue, QueuedFrame
from app.generation_thread import GenerationThread
from app.hud import (
    HudStats,
    NewFrameRate,
    draw_badges,
    draw_center,
    draw_error,
    draw_hud,
    draw_split_labels,
)
from app.input_state import InputState
from app.keymaps import keymap_for
from app.out_folder import holds_recording
from app.recorder import Recorder
from app.rollout import Rollout
from app.start_images import StartImages
from engine.config import Preset
from engine.worlds import World, WorldSpec

log = logging.getLogger("worldplayer")

SENSITIVITY_STEP = 1.25
QUEUE_BLOCKS = 2  # queue capacity in blocks: one being shown, one arriving


@dataclass
class AppOptions:
    fps: float
    scale: float = 0  # 0 = pick a comfortable window size
    fullscreen: bool = False
    record_dir: Optional[str] = None  # record from the first frame into this folder
    recordings_root: str = "recordings"  # where R puts recordings when --record was not given
    screenshot_dir: str = "screenshots"
    error_hold_s: float = 2.0  # how long a generation error stays on screen before the app exits
    quit_wait_s: float = 1.0  # on quit without a recording: how long to wait for the block in progress
    show_hud: bool = True
    title: str = "worldplayer"
    threads: int = 0  # torch threads of the generation thread (0 = torch's default)
    threads_note: str = ""  # how that count was chosen, for the HUD ("auto: 2 cores, load 0.1")


OFFSCREEN_DRIVERS = ("offscreen", "dummy")  # SDL video drivers that show no window


def check_display() -> None:
    """Fail fast (before loading a model) when no window can be opened: no display, or a stale one."""
    if not sys.platform.startswith("linux") or os.environ.get("SDL_VIDEODRIVER"):
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise NoDisplayError("no display found (DISPLAY is not set); pass --headless to run without a window")
    try:
        pygame.display.init()
        check_window_driver()
    except pygame.error as e:
        raise NoDisplayError(f"cannot open a window ({e}); pass --headless to run without a window") from None
    finally:
        pygame.display.quit()


def check_window_driver() -> None:
    """After `pygame.display.init`: refuse a driver that shows no window unless SDL_VIDEODRIVER asked for it.

    With DISPLAY set but no X server reachable, SDL falls back to its offscreen driver without an error
    and the app would play forever in no window."""
    driver = (pygame.display.get_driver() or "").lower()
    asked = [d.strip().lower() for d in os.environ.get("SDL_VIDEODRIVER", "").split(",")]
    if driver in OFFSCREEN_DRIVERS and driver not in asked:
        shown = ", ".join(f"{k}={os.environ[k]}" for k in ("DISPLAY", "WAYLAND_DISPLAY") if os.environ.get(k))
        raise NoDisplayError(
            f"no window can be opened: no display server answers at {shown or 'DISPLAY'} "
            f"(SDL fell back to its '{driver}' driver); start one, fix DISPLAY, or pass --headless"
        )


def open_display(size: tuple[int, int], fullscreen: bool, title: str) -> pygame.Surface:
    """Open the window, or raise NoDisplayError with a hint to use --headless."""
    check_display()
    try:
        pygame.display.init()
        check_window_driver()
        pygame.font.init()
        flags = pygame.RESIZABLE | (pygame.FULLSCREEN if fullscreen else 0)
        screen = pygame.display.set_mode(size, flags)
    except pygame.error as e:
        raise NoDisplayError(f"cannot open a window ({e}); pass --headless to run without a window") from None
    pygame.display.set_caption(title)
    return screen


def window_size(spec: WorldSpec, scale: float) -> tuple[int, int]:
    if not scale:
        scale = max(1, round(960 / spec.width))
    return int(spec.width * scale), int(spec.height * scale)


def letterbox(frame_wh: tuple[int, int], screen_wh: tuple[int, int]) -> pygame.Rect:
    """Largest rect with the frame's aspect ratio centred in the screen."""
    fw, fh = frame_wh
    sw, sh = screen_wh
    k = min(sw / fw, sh / fh)
    w, h = max(1, int(fw * k)), max(1, int(fh * k))
    return pygame.Rect((sw - w) // 2, (sh - h) // 2, w, h)


class App:
    def __init__(
        self, world: World, preset: Preset, images: StartImages, seed: int, options: AppOptions, meta: dict
    ):
        self.world, self.preset, self.options, self.meta = world, preset, options, meta
        self.keymap = keymap_for(world.spec.mode)
        self.input = InputState(self.keymap)
        self.queue = FrameQueue(QUEUE_BLOCKS * world.spec.block_frames)
        self.gen = GenerationThread(
            world, self.input, self.queue, images, seed, options.fps, self._make_recorder, options.threads
        )
        self._record_count = 0
        self.show_hud = options.show_hud
        self.mouse_captured = False
        self.current: Optional[QueuedFrame] = None
        self.frames_shown = 0
        self.stall_events = 0
        self.stall_ticks = 0
        self.stalled = False
        self.latencies: list[float] = []  # seconds, one per block shown
        self.first_frame_s: Optional[float] = None
        self.screenshots: list[str] = []
        self.notice = ""
        self._notice_until = 0.0
        self._tick_times: deque[float] = deque(maxlen=30)  # redraws (benchmarks), not shown in the HUD
        self.new_frames = NewFrameRate()
        self.exit_code = 0

    # --- recording ---
    def _next_record_dir(self) -> str:
        self._record_count += 1
        base = self.options.record_dir
        if base is None:
            base = os.path.join(self.options.recordings_root, time.strftime("%Y%m%d-%H%M%S"))
        path = base if self._record_count == 1 else f"{base}_{self._record_count}"
        while holds_recording(path) or os.path.islink(path):
            self._record_count += 1
            path = f"{base}_{self._record_count}"
        return path

    def _make_recorder(self, rollout: Rollout, start_label: str) -> Recorder:
        spec = self.world.spec
        meta = dict(self.meta, seed=rollout.seed, start_image=start_label, fps=spec.fps)
        return Recorder(
            self._next_record_dir(),
            spec.width,
            spec.height,
            spec.fps,
            meta,
            start_image=rollout.image,
            video_start_frame=rollout.frame,
        )

    # --- main loop ---
    def run(
        self,
        max_frames: Optional[int] = None,
        script: Optional[Callable[["App", int], None]] = None,
        max_seconds: Optional[float] = None,
    ) -> int:
        """Play until quit (or `max_frames` frames shown); returns the process exit code."""
        screen = open_display(
            window_size(self.world.spec, self.options.scale), self.options.fullscreen, self.options.title
        )
        self.font = pygame.font.SysFont("dejavusansmono,monospace", 15) or pygame.font.Font(None, 18)
        clock = pygame.time.Clock()
        opened = time.perf_counter()
        if self.options.record_dir:
            self.gen.request("record_start")
        self.gen.start()
        error_since: Optional[float] = None
        tick = 0
        failure = ""
        try:
            while True:
                if script is not None:
                    script(self, tick)
                if not self._handle_events():
                    break
                self.input.end_frame()
                self._advance_frame(opened)
                if self.gen.error is not None and error_since is None:
                    error_since = time.perf_counter()
                    self.exit_code = 1
                self._draw(pygame.display.get_surface())
                pygame.display.flip()
                clock.tick(self.options.fps)
                self._tick_times.append(time.perf_counter())
                tick += 1
                if error_since is not None and time.perf_counter() - error_since >= self.options.error_hold_s:
                    break
                if max_frames is not None and self.frames_shown >= max_frames:
                    break
                if max_seconds is not None and time.perf_counter() - opened > max_seconds:
                    break
        except KeyboardInterrupt as e:  # Ctrl-C 130; SIGTERM 143, SIGHUP 129 (app.cli.Terminated)
            self.exit_code = 128 + getattr(e, "signum", 2)
        except BaseException as e:  # noqa: B036 - the recording must say that the session ended early
            failure = (f"{type(e).__name__}: {e}".strip().splitlines() or [""])[0]
            self.exit_code = 1
            raise
        finally:
            self.close(failure)
        del screen
        return self.exit_code

    def close(self, failure: str = "") -> None:
        """Stop generation, finalise any recording, close the window.

        `failure`: why the display loop ended early (marks the recording incomplete). The window goes
        at once; only a recording waits for the block in progress (its frames and actions are kept)."""
        self.gen.stop()
        self._set_capture(False)
        pygame.display.quit()
        if self.gen.recording and self.gen.is_alive():
            log.info("finishing the block in progress for the recording")
        self.gen.join(timeout=30 if self.gen.recording else self.options.quit_wait_s)
        self.gen.finalise(failure)
        if self.gen.error is not None:
            log.error("generation failed: %s", self.gen.error_text)
        if self.gen.record_errors and self.exit_code == 0:
            self.exit_code = 1  # a recording lost frames: say so in the exit code too

    # --- per tick ---
    def _advance_frame(self, opened: float) -> None:
        if self.gen.paused.is_set():
            self.stalled = False
            return
        frame = self.queue.pop()
        if frame is None:
            if self.current is not None and self.gen.error is None:
                self.stall_ticks += 1
                if not self.stalled:
                    self.stall_events += 1
                self.stalled = True
            return
        self.stalled = False
        if frame.index_in_block == 0:
            self.latencies.append(time.perf_counter() - frame.input_time)
        if self.first_frame_s is None:
            self.first_frame_s = time.perf_counter() - opened
        self.current = frame
        self.frames_shown += 1
        self.new_frames.shown(time.perf_counter())

    def _handle_events(self) -> bool:
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                return False
            if event.type == pygame.WINDOWFOCUSLOST:
                self.input.release_all()
            elif event.type == pygame.MOUSEMOTION and self.mouse_captured:
                self.input.mouse_motion(*event.rel)
            elif event.type == pygame.MOUSEBUTTONDOWN and not self.mouse_captured and self.keymap.mouse_look:
                self._set_capture(True)
            elif event.type == pygame.KEYUP:
                self.input.key_up(pygame.key.name(event.key))
            elif event.type == pygame.KEYDOWN:
                if not self._on_key(pygame.key.name(event.key)):
                    return False
        return True

    def _on_key(self, name: str) -> bool:
        """Window keys; every other key goes to the input state. False = quit."""
        if name == "escape":
            if self.mouse_captured:
                self._set_capture(False)
                return True
            return False
        actions = {
            "p": self._toggle_pause,
            "r": lambda: self.gen.request("record_stop" if self.gen.recording else "record_start"),
            "backspace": lambda: self.gen.request("restart"),
            "]": lambda: self.gen.request("next_image"),
            "n": lambda: self.gen.request("dream"),
            "tab": lambda: self._set_capture(not self.mouse_captured),
            "f11": self._toggle_fullscreen,
            "f12": self._screenshot,
            "h": self._toggle_hud,
        }
        if name in actions:
            actions[name]()
        elif name in ("=", "+", "[+]"):
            self._say(f"mouse sensitivity x{self.input.scale_sensitivity(SENSITIVITY_STEP):.2f}")
        elif name in ("-", "[-]"):
            self._say(f"mouse sensitivity x{self.input.scale_sensitivity(1 / SENSITIVITY_STEP):.2f}")
        else:
            self.input.key_down(name)
        return True

    def _toggle_pause(self) -> None:
        if self.gen.paused.is_set():
            self.gen.paused.clear()
        else:
            self.gen.paused.set()

    def _toggle_hud(self) -> None:
        self.show_hud = not self.show_hud

    def _toggle_fullscreen(self) -> None:
        try:
            pygame.display.toggle_fullscreen()
        except pygame.error as e:
            self._say(f"fullscreen unavailable: {e}")

    def _set_capture(self, on: bool) -> None:
        self.mouse_captured = on
        try:
            pygame.mouse.set_relative_mode(on)
        except pygame.error:
            pygame.event.set_grab(on)
            pygame.mouse.set_visible(not on)

    def _screenshot(self) -> Optional[str]:
        path = os.path.join(
            self.options.screenshot_dir,
            time.strftime("worldplayer-%Y%m%d-%H%M%S") + f"-{len(self.screenshots)}.png",
        )
        try:
            os.makedirs(self.options.screenshot_dir, exist_ok=True)
            pygame.image.save(pygame.display.get_surface(), path)
        except (OSError, pygame.error) as e:  # a full disk or a bad folder must not end the session
            self._say(f"screenshot not saved: {e}".splitlines()[0])
            return None
        self.screenshots.append(path)
        self._say(f"screenshot saved: {path}")
        return path

    def _say(self, message: str, seconds: float = 3.0) -> None:
        self.notice, self._notice_until = message, time.perf_counter() + seconds
        log.info("%s", message)

    # --- drawing ---
    def _draw(self, screen: pygame.Surface) -> None:
        screen.fill((0, 0, 0))
        if self.current is not None:
            image = self.current.image
            h, w = image.shape[:2]
            surf = pygame.image.frombuffer(np.ascontiguousarray(image).tobytes(), (w, h), "RGB")
            rect = letterbox((w, h), screen.get_size())
            screen.blit(pygame.transform.smoothscale(surf, rect.size), rect)
            labels = getattr(self.world, "split_labels", None)  # --compare: which half is which
            if labels:
                draw_split_labels(screen, self.font, rect, labels)
        elif self.gen.error is None:
            draw_center(screen, self.font, f"generating the first block of {self.preset.name} ...")
        stats = self.stats()
        if self.show_hud:
            draw_hud(screen, self.font, stats)
        else:
            draw_badges(screen, self.font, stats)
            if stats.error:
                draw_error(screen, self.font, stats.error)

    def stats(self) -> HudStats:
        keys, mouse = self.input.snapshot()
        fps = self.new_frames.rate(time.perf_counter())
        notice = self.notice if time.perf_counter() < self._notice_until else self.gen.notice
        rec = self.gen.rollout.recorder if self.gen.rollout is not None else None
        record_failed = rec is not None and rec.failed
        if record_failed:
            notice = f"recording failed: {rec.error_text}"
        elif self.gen.record_errors and not notice:
            notice = self.gen.record_errors[-1]
        spec = self.world.spec
        return HudStats(
            preset=spec.name,
            mode=spec.mode,
            keys=[k for k in keys if k in self.keymap.action_keys()],
            mouse=(float(mouse[0]), float(mouse[1])),
            sensitivity=self.input.sensitivity,
            mouse_captured=self.mouse_captured,
            display_fps=fps,
            target_fps=self.options.fps,
            gen_fps=self.gen.generation_fps,
            block_ms=self.gen.block_ms[-1] if self.gen.block_ms else 0.0,
            latency_ms=self.latencies[-1] * 1000 if self.latencies else None,
            queue_depth=len(self.queue),
            queue_capacity=self.queue.capacity,
            block=self.current.block if self.current else 0,
            stalls=self.stall_events,
            stalled=self.stalled,
            paused=self.gen.paused.is_set(),
            recording=self.gen.recording,
            record_failed=record_failed,
            start_label=self.gen.start_label,
            dream_ms=self.gen.dream_ms,
            error=f"error: {self.gen.error_text}" if self.gen.error is not None else "",
            notice=notice,
            threads=self.options.threads_note,
        )

    def summary(self) -> dict:
        """Numbers of this run for logs, tests and benchmarks."""
        lat = self.latencies[1:] or self.latencies  # the first block includes warm-up
        return {
            "frames_shown": self.frames_shown,
            "blocks": self.gen.blocks_done,
            "generation_fps": round(self.gen.generation_fps, 2),
            "latency_ms_mean": round(1000 * float(np.mean(lat)), 1) if lat else None,
            "latency_ms_max": round(1000 * float(np.max(lat)), 1) if lat else None,
            "first_frame_s": None if self.first_frame_s is None else round(self.first_frame_s, 3),
            "stall_events": self.stall_events,
            "stall_ticks": self.stall_ticks,
        }

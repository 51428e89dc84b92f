"""The generation thread: owns the world session and keeps the frame queue fed.

Policy (`start_threshold`): the thread starts the next block when the queue holds fewer frames than
`min(T, ceil(1.25 * est * fps) + 1)`, where T is the next block's frame count (`world.actions_needed`),
est the median time of the last few blocks and fps the display rate, and it samples the input state
*at that moment* for every frame of the block. When generation is about real time or slower the
threshold is one block: the next block starts while fewer than one block of frames is left, so
input-to-display latency stays near one block (generation time plus the < T frames queued ahead).
When generation is much faster than real time the block starts "just in time" (the queue left covers
the expected generation time plus 25% and one frame), which cuts the latency to about the generation
time instead of a full block of playback. Deeper queues would smooth over slow blocks at the price of
more latency; shallower ones would stall whenever a block is late.

Everything that changes the session (restart, next start image, dream, recording on/off) is a command
handled by this thread between blocks, so the world is only ever touched from here. An exception
ends the thread; it is kept in `error` (with its traceback logged) for the display to show.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import traceback
from collections import deque
from typing import Callable, Optional

import numpy as np

from app.frame_queue import FrameQueue
from app.input_state import InputState
from app.recorder import Recorder
from app.rollout import Rollout
from app.start_images import StartImages
from engine.threads import use as use_threads
from engine.worlds import World

log = logging.getLogger("worldplayer")


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def start_threshold(block_frames: int, recent_block_s: list[float], fps: float, margin: float = 1.25) -> int:
    """Queue depth (frames) below which the next block of `block_frames` frames is started."""
    if not recent_block_s or fps <= 0:
        return block_frames
    est = sorted(recent_block_s)[len(recent_block_s) // 2]
    return max(1, min(block_frames, math.ceil(margin * est * fps) + 1))


class GenerationThread(threading.Thread):
    def __init__(
        self,
        world: World,
        input_state: InputState,
        frames: FrameQueue,
        images: StartImages,
        seed: int = 0,
        display_fps: float = 0.0,
        recorder_factory: Optional[Callable[[Rollout, str], Recorder]] = None,
        threads: int = 0,
    ):
        super().__init__(name="generation", daemon=True)
        self.world = world
        self.input = input_state
        self.frames = frames
        self.images = images
        self.seed = seed
        self.display_fps = display_fps  # 0 = always start at one block (no just-in-time start)
        self.recorder_factory = recorder_factory
        self.threads = threads  # torch threads for this thread (0 = leave torch's default)
        self.rollout: Optional[Rollout] = None
        self.start_label = ""
        self.session = 0
        self.paused = threading.Event()
        self.stop_event = threading.Event()
        self.error: Optional[BaseException] = None
        self.error_text = ""
        self.notice = ""  # last non-fatal message (e.g. "no start-scene generator")
        self.block_ms: deque[float] = deque(maxlen=20)
        self.blocks_done = 0
        self.frames_done = 0
        self.gen_seconds = 0.0
        self.dream_ms: Optional[float] = None
        self.recording_dir: Optional[str] = None
        self.record_errors: list[str] = []  # one line per recording that lost frames
        self._commands: queue.Queue = queue.Queue()
        self._inputs_seen: list = []  # InputSamples, kept only when `keep_inputs` (tests)
        self.keep_inputs = False

    # --- commands (any thread) ---
    def request(self, command: str, *args) -> None:
        """restart | next_image | dream | record_start | record_stop."""
        self._commands.put((command, args))

    def stop(self) -> None:
        self.stop_event.set()

    @property
    def recording(self) -> bool:
        return self.rollout is not None and self.rollout.recorder is not None

    @property
    def generation_fps(self) -> float:
        return self.frames_done / self.gen_seconds if self.gen_seconds > 0 else 0.0

    # --- the thread ---
    def run(self) -> None:
        try:
            if self.threads:
                use_threads(self.threads)  # this thread's own team (engine.threads)
            self._restart()
            while not self.stop_event.is_set():
                self._handle_commands()
                if self.paused.is_set():
                    time.sleep(0.02)
                    continue
                needed = self.rollout.actions_needed
                recent = [ms / 1000.0 for ms in list(self.block_ms)[-5:]] if self.blocks_done > 1 else []
                if not self.frames.wait_below(start_threshold(needed, recent, self.display_fps), 0.01):
                    continue
                self._generate_block(needed)
        except BaseException as e:  # noqa: B036 - any failure must reach the display and the log
            self.error = e
            self.error_text = f"{type(e).__name__}: {e}".splitlines()[0]
            log.error("generation thread failed:\n%s", traceback.format_exc())
        finally:
            self.stop_event.set()

    def _generate_block(self, needed: int) -> None:
        input_time = time.perf_counter()
        sample = self.input.take_block(needed)
        if self.keep_inputs:
            self._inputs_seen.append(sample)
        frames = self.rollout.step(sample.actions, keys=sample.keys)
        dt = time.perf_counter() - input_time
        self.block_ms.append(dt * 1000.0)
        self.gen_seconds += dt
        self.blocks_done += 1
        self.frames_done += len(frames)
        self.frames.put_block(frames, self.rollout.block_index - 1, input_time, self.session, self.stop_event)

    def _handle_commands(self) -> None:
        while True:
            try:
                command, args = self._commands.get_nowait()
            except queue.Empty:
                return
            if command in ("restart", "next_image"):
                self._restart(next_image=command == "next_image")
            elif command == "dream":
                self._dream()
            elif command == "record_start":
                self._record_start()
            elif command == "record_stop":
                self._record_stop()

    def _restart(self, next_image: bool = False, image: Optional[np.ndarray] = None, label: str = "") -> None:
        if image is None and next_image and self.rollout is not None:
            try:
                label, image = self.images.advance()
            except Exception as e:  # a broken start image must not end the running session
                self.notice = f"start image not changed: {_one_line(e)}"
                log.warning("%s", self.notice, exc_info=not isinstance(e, ValueError))
                return
        elif image is None:
            label, image = self.images.advance() if next_image else self.images.current()
        was_recording = self.recording
        self._record_stop()
        self.session += 1
        self.frames.clear()
        self.rollout = Rollout(self.world, image, self.seed)
        self.start_label = label
        self.blocks_done = 0
        if was_recording:
            self._record_start()

    def _dream(self) -> None:
        t0 = time.perf_counter()
        try:
            label, image = self.images.dream(self.seed + self.session)
        except Exception as e:  # a failed dream must not end the session
            self.notice = f"dream failed: {_one_line(e)}"
            log.warning("%s", self.notice, exc_info=not isinstance(e, ValueError))
            return
        self.dream_ms = (time.perf_counter() - t0) * 1000.0
        self._restart(image=image, label=label)

    def _record_start(self) -> None:
        if self.recording or self.recorder_factory is None or self.rollout is None:
            return
        try:
            recorder = self.recorder_factory(self.rollout, self.start_label)
        except (ValueError, OSError) as e:  # e.g. a link in the folder, a full disk: keep playing
            self.notice = f"recording not started: {_one_line(e)}"
            self.record_errors.append(self.notice)
            log.error("%s", self.notice)
            return
        self.rollout.attach(recorder)
        self.recording_dir = recorder.path
        log.info("recording to %s", recorder.path)

    def _record_stop(self) -> None:
        if self.rollout is not None and self.rollout.recorder is not None:
            self._log_finalised(self.rollout.detach())

    def finalise(self, failure: str = "") -> None:
        """Close the recording, if any, from whatever state the thread ended in (call after join).

        `failure`: why the session ended early outside this thread (the display loop failed)."""
        if self.rollout is not None and self.rollout.recorder is not None:
            rec = self.rollout.detach(failure=self.error_text if self.error is not None else failure)
            self._log_finalised(rec)

    def _log_finalised(self, rec: Recorder) -> None:
        if rec.failed:
            self.record_errors.append(f"recording {rec.path} is incomplete: {rec.error_text}")
            log.error("%s", self.record_errors[-1])
        else:
            log.info("recording finalised: %s (%d frames)", rec.path, rec.frames_written)

"""Session recording: a writer thread appends frames to a fragmented MP4 and actions to actions.jsonl.

A recording folder holds
- `video.mp4`: H.264 via imageio-ffmpeg, a fragmented MP4 (`-movflags frag_keyframe+empty_moov`) that
  ffmpeg flushes to disk frame by frame (`-tune zerolatency`: no frames held in the encoder's look-ahead;
  `-flush_packets 1`: none held in the muxer's buffer), so the file stays playable when the process
  group is killed mid-session and at most the last block is lost;
- `actions.jsonl`: one line per video frame of the session, in the model's action space
  (`{"frame", "keyboard", "mouse", "keys", "block"}`); frames before `video_start_frame` (when recording
  was switched on mid-session) have actions but no video;
- `blocks.jsonl`: per generated block its first frame, frame count and the sha256 of its raw uint8
  frames, so a replay can prove it is frame-identical (the MP4 itself is lossy);
- `start.png`: the start image, so the folder replays on its own;
- `meta.json`: preset (name and full config), checkpoint path and sha256, seed, start image, fps,
  device, dtype and worldplayer version; rewritten with the frame count when the recording finalises.
  `complete` is true only when every frame handed to the recorder reached the video; otherwise
  `frames_lost` and `error` say what happened.

The writer thread's queue is bounded (`QUEUE_BLOCKS` blocks): a producer faster than the encoder waits
(back-pressure) instead of piling frames up in memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import threading
import time
from typing import Any, Optional

import imageio_ffmpeg
import numpy as np
from PIL import Image

from app.out_folder import claim_out_dir
from engine.actions import ActionBlock

VERSION = "0.1.0"
QUEUE_BLOCKS = 4  # blocks waiting for the encoder before add_block waits


def frames_sha256(frames: np.ndarray) -> str:
    """sha256 of uint8 frames [T, H, W, 3] (C order)."""
    return hashlib.sha256(np.ascontiguousarray(frames, np.uint8).tobytes()).hexdigest()


def _num(v: float) -> float:
    """float32 value -> the shortest float that reads back as the same float32."""
    return float(str(np.float32(v)))


def action_rows(
    actions: ActionBlock, first_frame: int, block: int, keys: Optional[list[str]] = None
) -> list[dict]:
    """One JSON-ready dict per frame of `actions` (the action file format, plus raw keys and block)."""
    rows = []
    for i in range(len(actions)):
        row: dict[str, Any] = {"frame": first_frame + i, "keyboard": [_num(v) for v in actions.keyboard[i]]}
        if actions.mouse is not None:
            row["mouse"] = [_num(v) for v in actions.mouse[i]]
        if keys is not None:
            row["keys"] = keys
        row["block"] = block
        rows.append(row)
    return rows


def open_mp4_writer(path: str, width: int, height: int, fps: float):
    """A primed imageio-ffmpeg generator writing a fragmented H.264 MP4 (playable after SIGKILL).

    Every frame sent reaches the file at once (no look-ahead, packets flushed); `.send(uint8 [H, W, 3])`
    appends a frame. The path is made absolute so a folder named `-x` is not read as an ffmpeg option.
    """
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"cannot record {path}: fps must be a finite number > 0, got {fps}")
    gop = max(1, int(round(fps)))
    writer = imageio_ffmpeg.write_frames(
        os.path.abspath(path),
        (width, height),
        fps=fps,
        codec="libx264",
        quality=None,
        macro_block_size=2,
        ffmpeg_log_level="error",
        output_params=[
            *("-crf", "18", "-g", str(gop), "-tune", "zerolatency"),
            *("-movflags", "frag_keyframe+empty_moov", "-flush_packets", "1"),
        ],
    )
    writer.send(None)
    return writer


class Recorder:
    """Writes one recording folder; `add_block` hands frames to a writer thread (waiting only while
    `QUEUE_BLOCKS` blocks are already queued). `failed` turns true as soon as a frame cannot be written."""

    def __init__(
        self,
        out_dir: str,
        width: int,
        height: int,
        fps: float,
        meta: dict,
        start_image=None,
        video_start_frame: int = 0,
        video_name: str = "video.mp4",
        overwrite: bool = False,
    ):
        names = (video_name, "actions.jsonl", "blocks.jsonl", "start.png", "meta.json", "meta.json.tmp")
        claim_out_dir(out_dir, overwrite, names)
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"cannot record into {out_dir}: fps must be a finite number > 0, got {fps}")
        self.out_dir = out_dir
        self.width, self.height, self.fps = width, height, fps
        self.meta = dict(meta, version=VERSION, video_start_frame=video_start_frame, complete=False)
        self.video_start_frame = video_start_frame
        self.frames_queued = 0  # video frames handed to add_block
        self.frames_written = 0  # video frames sent to the encoder
        self.action_frames = 0  # action lines
        self.error: Optional[BaseException] = None
        self._video_path = os.path.join(out_dir, video_name)
        self.meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._write_meta()  # first: a folder that fails from here on says so
        try:
            if start_image is not None:
                Image.fromarray(start_image).save(os.path.join(out_dir, "start.png"))
                self.meta["start_image_file"] = "start.png"
                self._write_meta()
            self._actions = open(os.path.join(out_dir, "actions.jsonl"), "w")
            self._blocks = open(os.path.join(out_dir, "blocks.jsonl"), "w")
        except BaseException as e:  # noqa: B036 - a full disk while setting up: mark the folder, re-raise
            self.error = e
            self.meta["error"] = self.error_text
            try:
                self._write_meta()
            except OSError:
                pass  # the disk cannot take even meta.json; its complete: false stands
            raise
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    @property
    def path(self) -> str:
        return self.out_dir

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def error_text(self) -> str:
        """One line: what went wrong, or "" while all is well."""
        if self.error is None:
            return ""
        text = str(self.error).strip().splitlines()
        return f"{type(self.error).__name__}: {text[0] if text else ''}".rstrip(": ")

    def add_history(self, rows: list[dict], blocks: list[dict]) -> None:
        """Action lines and block hashes of the session before the video starts (no frames)."""
        self._put(("history", rows, blocks))

    def add_block(self, frames: np.ndarray, rows: list[dict], block_info: dict) -> None:
        """Queue one block: frames uint8 [T, H, W, 3], its action rows and {"block", "first_frame", ...}.

        Waits while the queue is full; after a failure the frames are counted as lost, not queued. They
        are counted once handed over: a Ctrl-C that lands while waiting stops the session before this
        block, which was never recorded, so it is not reported as lost."""
        if self._closed:
            return
        self._put(("block", frames, rows, block_info))
        self.frames_queued += len(frames)

    def _put(self, item: tuple) -> None:
        while self.error is None and self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self, extra_meta: Optional[dict] = None, timeout: float = 60.0, failure: str = "") -> None:
        """Finish writing and finalise video, actions and meta (idempotent).

        `failure`: why the session ended early (the recording is then marked incomplete)."""
        if self._closed:
            return
        self._closed = True
        self._put(("close",))
        self._thread.join(timeout)
        if self._thread.is_alive() and self.error is None:
            self.error = TimeoutError(
                f"the recorder was still encoding after {timeout:.0f} s "
                f"({self.frames_written} of {self.frames_queued} frames written)"
            )
        if self.error is None and self.frames_written < self.frames_queued:
            self.error = RuntimeError(f"{self.frames_queued - self.frames_written} frames were not written")
        self.meta.update(extra_meta or {})
        lost = max(0, self.frames_queued - self.frames_written)  # a put that Ctrl-C cut before counting
        self.meta.update(
            frames=self.frames_written,
            action_frames=self.action_frames,
            complete=self.error is None and not failure,
        )
        if lost:
            self.meta["frames_lost"] = lost
        if self.error is not None:
            self.meta["error"] = self.error_text
        if failure:
            self.meta["session_error"] = failure
        self._write_meta()

    def _write_meta(self) -> None:
        tmp = os.path.join(self.out_dir, "meta.json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.meta, f, indent=2)
        os.replace(tmp, os.path.join(self.out_dir, "meta.json"))

    def _run(self) -> None:
        writer = None
        try:
            while True:
                item = self._queue.get()
                if item[0] == "close":
                    break
                if item[0] == "history":
                    self._write_lines(item[1], item[2])
                    continue
                _, frames, rows, block_info = item
                if writer is None:
                    writer = self._open_writer()
                for frame in frames:
                    try:
                        writer.send(np.ascontiguousarray(frame, np.uint8))
                    except OSError as e:  # ffmpeg exited: its disk is full, or it was killed
                        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                        raise OSError(
                            f"the video encoder (ffmpeg) stopped ({first}); is the disk full?"
                        ) from e
                    self.frames_written += 1
                self._write_lines(rows, [block_info])
        except BaseException as e:  # noqa: B036 - keep the thread alive long enough to finalise
            self.error = e
        finally:
            if writer is not None:
                try:
                    writer.close()
                except Exception as e:  # ffmpeg failed to finalise
                    self.error = self.error or e
            for f in (self._actions, self._blocks):
                try:
                    f.close()
                except OSError as e:  # the last lines did not fit on the disk
                    self.error = self.error or e

    def _write_lines(self, rows: list[dict], blocks: list[dict]) -> None:
        for row in rows:
            self._actions.write(json.dumps(row, allow_nan=False) + "\n")
        self.action_frames += len(rows)
        for b in blocks:
            self._blocks.write(json.dumps(b) + "\n")
        self._actions.flush()
        self._blocks.flush()

    def _open_writer(self):
        return open_mp4_writer(self._video_path, self.width, self.height, self.fps)

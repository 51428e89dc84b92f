"""Session recording: a writer thread appends frames to a fragmented MP4 and actions to actions.jsonl.

A recording folder holds
- `video.mp4`: H.264 via imageio-ffmpeg with `-movflags frag_keyframe+empty_moov` and a keyframe every
  second, so the file stays playable when the process is killed mid-session (at most the last second
  is lost);
- `actions.jsonl`: one line per video frame of the session, in the model's action space
  (`{"frame", "keyboard", "mouse", "keys", "block"}`); frames before `video_start_frame` (when recording
  was switched on mid-session) have actions but no video;
- `blocks.jsonl`: per generated block its first frame, frame count and the sha256 of its raw uint8
  frames, so a replay can prove it is frame-identical (the MP4 itself is lossy);
- `start.png`: the start image, so the folder replays on its own;
- `meta.json`: preset (name and full config), checkpoint path and sha256, seed, start image, fps,
  device, dtype and worldplayer version; rewritten with the frame count when the recording finalises.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from typing import Any, Optional

import imageio_ffmpeg
import numpy as np
from PIL import Image

from engine.actions import ActionBlock

VERSION = "0.1.0"


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

    A keyframe every second bounds what a kill can lose; `.send(uint8 [H, W, 3])` appends a frame.
    """
    gop = max(1, int(round(fps)))
    writer = imageio_ffmpeg.write_frames(
        path,
        (width, height),
        fps=fps,
        codec="libx264",
        quality=None,
        macro_block_size=2,
        ffmpeg_log_level="error",
        output_params=["-crf", "18", "-g", str(gop), "-movflags", "frag_keyframe+empty_moov"],
    )
    writer.send(None)
    return writer


class Recorder:
    """Writes one recording folder; `add_block` never blocks the caller on encoding."""

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
    ):
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir = out_dir
        self.width, self.height, self.fps = width, height, fps
        self.meta = dict(meta, version=VERSION, video_start_frame=video_start_frame, complete=False)
        self.video_start_frame = video_start_frame
        self.frames_written = 0  # video frames
        self.action_frames = 0  # action lines
        self.error: Optional[BaseException] = None
        self._video_path = os.path.join(out_dir, video_name)
        if start_image is not None:
            Image.fromarray(start_image).save(os.path.join(out_dir, "start.png"))
            self.meta["start_image_file"] = "start.png"
        self.meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._write_meta()
        self._actions = open(os.path.join(out_dir, "actions.jsonl"), "w")
        self._blocks = open(os.path.join(out_dir, "blocks.jsonl"), "w")
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    @property
    def path(self) -> str:
        return self.out_dir

    def add_history(self, rows: list[dict], blocks: list[dict]) -> None:
        """Action lines and block hashes of the session before the video starts (no frames)."""
        self._queue.put(("history", rows, blocks))

    def add_block(self, frames: np.ndarray, rows: list[dict], block_info: dict) -> None:
        """Queue one block: frames uint8 [T, H, W, 3], its action rows and {"block", "first_frame", ...}."""
        if not self._closed:
            self._queue.put(("block", frames, rows, block_info))

    def close(self, extra_meta: Optional[dict] = None, timeout: float = 60.0) -> None:
        """Finish writing and finalise video, actions and meta (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(("close",))
        self._thread.join(timeout)
        self.meta.update(extra_meta or {})
        self.meta.update(
            frames=self.frames_written, action_frames=self.action_frames, complete=self.error is None
        )
        if self.error is not None:
            self.meta["error"] = f"{type(self.error).__name__}: {self.error}"
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
                    writer.send(np.ascontiguousarray(frame, np.uint8))
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
            self._actions.close()
            self._blocks.close()

    def _write_lines(self, rows: list[dict], blocks: list[dict]) -> None:
        for row in rows:
            self._actions.write(json.dumps(row) + "\n")
        self.action_frames += len(rows)
        for b in blocks:
            self._blocks.write(json.dumps(b) + "\n")
        self._actions.flush()
        self._blocks.flush()

    def _open_writer(self):
        return open_mp4_writer(self._video_path, self.width, self.height, self.fps)

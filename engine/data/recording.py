"""A worldplayer recording folder read back as a training episode.

`python main.py --record DIR` (the window, any preset, `--preset vizdoom` included) and
`python main.py --headless --out DIR` write `video.mp4`, `actions.jsonl` and `meta.json` (format in
`app.recorder`). Here video frame j is session frame `video_start_frame + j` (recording can be switched
on mid-session), and the action line with that `"frame"` is the action held while it was shown, as in
`engine.actions`. A `--compare` recording shows the game and the dream side by side; its episode is the
left (real game) half.

The video is H.264, so frames come back close to, not equal to, what was shown; it is decoded into
memory (about 110 MB per minute at 256x144, 17.5 fps).
"""

from __future__ import annotations

import json
from pathlib import Path

import imageio_ffmpeg
import numpy as np

RECORDING_FILES = ("video.mp4", "actions.jsonl", "meta.json")


def is_recording(folder: Path) -> bool:
    """True if `folder` holds a recording (video.mp4, actions.jsonl and meta.json)."""
    return all((folder / name).is_file() for name in RECORDING_FILES)


def find_recordings(folder: Path) -> list[Path]:
    """`folder` itself if it is a recording, else every recording below it, in sorted path order."""
    if is_recording(folder):
        return [folder]
    return sorted(m.parent for m in folder.rglob("meta.json") if is_recording(m.parent))


def read_video(path: Path) -> np.ndarray:
    """Every frame of an MP4 as uint8 [N, H, W, 3] (RGB)."""
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    width, height = reader.__next__()["size"]
    frames = [np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader]
    if not frames:
        return np.zeros((0, height, width, 3), np.uint8)
    return np.stack(frames)  # [N, H, W, 3]


def _action_rows(path: Path) -> dict[int, dict]:
    """Action lines of actions.jsonl by their `"frame"` number (ValueError naming the line if malformed)."""
    rows = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                frame = int(row["frame"])
                rows[frame] = {"keyboard": [float(v) for v in row["keyboard"]], "mouse": row.get("mouse")}
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(
                    f"{path} line {number}: not a recording action line ({type(e).__name__}: {e})"
                ) from None
    return rows


def read_recording(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames uint8 [N, H, W, 3], keyboard float32 [N, K], mouse float32 [N, 2]) of one recording.

    N counts the video frames that have an action line (a recording cut short loses at most its last
    block); a world without a mouse gets zero mouse rows."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{folder / 'meta.json'}: not valid JSON ({e.msg})") from None
    first = int(meta.get("video_start_frame", 0))
    frames = read_video(folder / "video.mp4")
    if meta.get("compare_preset"):
        frames = frames[:, :, : frames.shape[2] // 2]  # [N, H, W, 3]: the real game, left of the dream
    rows = _action_rows(folder / "actions.jsonl")
    n = 0
    while n < len(frames) and first + n in rows:
        n += 1
    picked = [rows[first + j] for j in range(n)]
    dims = {len(r["keyboard"]) for r in picked}
    if len(dims) > 1:
        raise ValueError(f"{folder / 'actions.jsonl'}: keyboard rows of different lengths {sorted(dims)}")
    k = dims.pop() if dims else 0
    keyboard = np.array([r["keyboard"] for r in picked], np.float32).reshape(n, k)
    mouse = np.array([r["mouse"] or [0.0, 0.0] for r in picked], np.float32).reshape(n, 2)
    return np.ascontiguousarray(frames[:n]), keyboard, mouse

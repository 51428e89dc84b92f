"""Output folders: a recording is never overwritten by accident and never written through a link.

`claim_out_dir` is called before anything is written into a folder (headless `--out`, replay `--out`,
`--record`, the recorder itself). It refuses
- a folder that is a symbolic link, or holds a symbolic link under a name worldplayer writes (the link's
  target would be overwritten);
- a folder that already holds a recording file, unless `force` (`--force`): then those files are
  removed first, so nothing is written through them.
"""

from __future__ import annotations

import os
from typing import Iterable

# every file a recording folder can hold (headless adds metrics.json, --compare real.mp4 / dream.mp4)
RECORDING_FILES = (
    "video.mp4",
    "actions.jsonl",
    "blocks.jsonl",
    "start.png",
    "meta.json",
    "meta.json.tmp",
    "metrics.json",
    "real.mp4",
    "dream.mp4",
)


def existing_recording_files(path: str, names: Iterable[str] = RECORDING_FILES) -> list[str]:
    """The recording files (or links under their names) present in `path`."""
    return [n for n in names if os.path.lexists(os.path.join(path, n))]


def holds_recording(path: str) -> bool:
    return os.path.isdir(path) and bool(existing_recording_files(path))


def check_no_links(path: str, names: Iterable[str] = RECORDING_FILES, flag: str = "--out") -> None:
    """ValueError when `path` or one of the files worldplayer writes there is a symbolic link."""
    if os.path.islink(path):
        raise ValueError(
            f"{flag} {path} is a symbolic link; worldplayer does not write through links, give a real folder"
        )
    for name in names:
        p = os.path.join(path, name)
        if os.path.islink(p):
            raise ValueError(
                f"{p} is a symbolic link; worldplayer does not write through links, remove it "
                f"or choose another {flag}"
            )


def claim_out_dir(
    path: str, force: bool = False, names: Iterable[str] = RECORDING_FILES, flag: str = "--out"
) -> str:
    """Make `path` ready for a new recording (created if missing); returns it.

    ValueError (one line, with what to do) for links, non-folders and, unless `force`, a folder that
    already holds a recording. With `force` the old recording files are deleted, not written through."""
    names = tuple(names)
    check_no_links(path, names, flag)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a file, not a folder; choose another {flag}")
    present = existing_recording_files(path, names) if os.path.isdir(path) else []
    if present and not force:
        raise ValueError(
            f"{path} already holds a recording ({', '.join(present)}); choose another {flag} "
            "or pass --force to overwrite it"
        )
    for name in present:
        os.unlink(os.path.join(path, name))
    os.makedirs(path, exist_ok=True)
    return path


def same_folder(a: str, b: str) -> bool:
    """True when two paths name the same folder (through links and relative paths)."""
    return os.path.realpath(a) == os.path.realpath(b)

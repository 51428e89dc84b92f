"""Headless soak: run one long headless session and sample its memory and block time over time.

    python benchmarks/soak.py --preset doom --minutes 60 --interval 30

Starts `main.py --headless` (bench:random actions, a frame count it never reaches) into a fresh folder,
samples the process's resident memory (VmRSS, Linux) and the mean block time of the blocks finished
since the last sample (from blocks.jsonl) every --interval seconds, stops it with Ctrl-C (SIGINT, which
finalises the recording) after --minutes, and prints every sample plus the trend: the least-squares
slope per hour of RSS (MB/h) and of block time (ms/h). A flat session has slopes near 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def block_ms(path: Path, seen: int) -> tuple[list[float], int]:
    """Block times (ms) of the blocks after the first `seen` lines of blocks.jsonl."""
    if not path.is_file():
        return [], seen
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [json.loads(line)["ms"] for line in lines[seen:]], len(lines)


def slope_per_hour(t_s: list[float], y: list[float]) -> float:
    n = len(t_s)
    if n < 2:
        return 0.0
    mt, my = sum(t_s) / n, sum(y) / n
    var = sum((t - mt) ** 2 for t in t_s)
    return 3600.0 * sum((t - mt) * (v - my) for t, v in zip(t_s, y, strict=True)) / var if var else 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="doom")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--out", help="recording folder (default: a fresh temporary one)")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="soak-")) / "run"
    argv = [sys.executable, "main.py", "--headless", "--preset", a.preset, "--actions", "bench:random"]
    argv += ["--frames", str(10**9), "--out", str(out), "--quiet"]
    argv += ["--threads", str(a.threads)] if a.threads else []
    proc = subprocess.Popen(argv, cwd=REPO)
    t0, seen, rows = time.time(), 0, []
    print(f"soak: {a.preset} into {out}, {a.minutes:g} min, a sample every {a.interval:g} s", flush=True)
    print(f"{'t_s':>7} {'rss_mb':>8} {'blocks':>7} {'block_ms':>9}", flush=True)
    try:
        while time.time() - t0 < a.minutes * 60 and proc.poll() is None:
            time.sleep(min(a.interval, max(0.0, a.minutes * 60 - (time.time() - t0))))
            if proc.poll() is not None:
                break
            ms, seen = block_ms(out / "blocks.jsonl", seen)
            row = (time.time() - t0, rss_mb(proc.pid), seen, sum(ms) / len(ms) if ms else float("nan"))
            rows.append(row)
            print(f"{row[0]:7.0f} {row[1]:8.1f} {row[2]:7d} {row[3]:9.1f}", flush=True)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
    timed = [r for r in rows if r[3] == r[3]]  # samples with finished blocks (not NaN)
    rss_slope = slope_per_hour([r[0] for r in rows], [r[1] for r in rows])
    ms_slope = slope_per_hour([r[0] for r in timed], [r[3] for r in timed])
    meta = json.loads((out / "meta.json").read_text()) if (out / "meta.json").is_file() else {}
    print(
        f"soak: {len(rows)} samples, {seen} blocks; RSS {rows[0][1]:.0f} -> {rows[-1][1]:.0f} MB "
        f"(slope {rss_slope:+.1f} MB/h); block time slope {ms_slope:+.1f} ms/h; "
        f"recording complete: {meta.get('complete')}, exit {proc.returncode}"
        if rows
        else "soak: no samples (the run ended early)"
    )
    return 0 if rows and os.path.isdir(out) else 1


if __name__ == "__main__":
    sys.exit(main())

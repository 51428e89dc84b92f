"""`--help` and `--list-presets` answer without importing torch (which takes seconds on a cold disk)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROBE = """
import contextlib, runpy, sys
sys.argv = ["main.py", *sys.argv[1:]]
with contextlib.suppress(SystemExit):  # --help and --list-presets exit; what matters is what was imported
    runpy.run_path("main.py", run_name="__main__")
print("torch imported:", "torch" in sys.modules)
"""


@pytest.mark.parametrize("flag", ["--help", "--list-presets"])
def test_help_does_not_import_torch(flag):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, flag], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.stdout.strip().endswith("torch imported: False"), done.stdout[-500:] + done.stderr[-2000:]
    assert "worldplayer" in done.stdout or "tiny" in done.stdout

"""A normal (non-editable) install works: the wheel carries the presets and the weights they name.

Builds the wheel from a copy of the project in a temporary folder (no network: the build uses this
environment's setuptools), installs it into a temporary venv that sees this environment's packages
(so torch is not downloaded again), then runs the console script from another directory. About 30 s.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROJECT = ("pyproject.toml", "README.md", "main.py", "app", "engine", "configs", "assets")
ENV = dict(os.environ, OMP_NUM_THREADS="1", SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")

pytestmark = pytest.mark.install


def run(cmd, cwd, timeout=300):
    done = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{cmd} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A venv with the wheel installed; returns its bin folder."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    src.mkdir()
    for name in PROJECT:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    pip_quiet = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run(pip_quiet + ["wheel", "--no-build-isolation", "--no-deps", "--no-index", "-w", str(root), "."], src)
    wheel = next(root.glob("worldplayer-*.whl"))
    run([sys.executable, "-m", "venv", "--system-site-packages", str(root / "venv")], root)
    bin_dir = root / "venv" / "bin"
    install = ["install", "--no-deps", "--no-index", "--force-reinstall", str(wheel)]
    run([str(bin_dir / "python"), "-m", "pip", "--disable-pip-version-check", "-q"] + install, root)
    shutil.rmtree(src)  # nothing may be found through the source tree
    return bin_dir


def test_installed_package_is_the_one_imported(venv, tmp_path):
    out = run(
        [str(venv / "python"), "-c", "import engine.config, app.cli; print(engine.config.__file__)"], tmp_path
    )
    assert str(venv.parent) in out, out  # not the checkout (this environment has an editable install)


def test_installed_list_presets(venv, tmp_path):
    names = run([str(venv / "worldplayer"), "--list-presets"], tmp_path).split()
    assert {"doom", "tiny", "vizdoom"} <= set(names), names


def test_installed_headless_tiny_and_default_weights(venv, tmp_path):
    out = tmp_path / "run"
    argv = ["--headless", "--preset", "tiny", "--frames", "12", "--out", str(out), "--quiet"]
    run([str(venv / "worldplayer")] + argv, tmp_path)
    assert json.loads((out / "metrics.json").read_text())["frames"] == 12
    # the default preset's weights and start images are in the installed package
    code = (
        "from engine.config import load_preset; import os; p = load_preset('doom'); "
        "files = [p.checkpoint, p.vae.checkpoint, *p.start_images]; "
        "print(all(os.path.isfile(f) for f in files) and len(files) > 2)"
    )
    assert run([str(venv / "python"), "-c", code], tmp_path).strip() == "True"

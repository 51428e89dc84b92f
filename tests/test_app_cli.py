"""The command line: bad input gives one line on stderr and a non-zero exit, never a traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main

REPO = Path(__file__).resolve().parent.parent


def run_main(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("worldplayer: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_list_presets(capsys):
    code, out, _ = run_main(capsys, "--list-presets")
    assert code == 0 and "tiny" in out.split()


def test_unknown_preset(capsys, tmp_path):
    code, _, err = run_main(capsys, "--headless", "--preset", "nope", "--out", str(tmp_path))
    assert_one_line_error(code, err, "unknown preset 'nope'", "tiny")


def test_missing_image(capsys, tmp_path):
    code, _, err = run_main(
        capsys, "--headless", "--preset", "tiny", "--image", "missing.png", "--out", str(tmp_path)
    )
    assert_one_line_error(code, err, "missing.png")


def test_bad_action_line_names_the_line(capsys, tmp_path):
    actions = tmp_path / "a.jsonl"
    good = json.dumps({"keyboard": [1, 0, 0, 0], "mouse": [0, 0]})
    actions.write_text(f'{good}\n{good}\n{{"keyboard": [1, 0]}}\n')
    code, _, err = run_main(
        capsys, "--headless", "--preset", "tiny", "--actions", str(actions), "--out", str(tmp_path / "o")
    )
    assert_one_line_error(code, err, "line 3")


def test_short_action_file_without_loop(capsys, tmp_path):
    actions = tmp_path / "a.jsonl"
    actions.write_text(json.dumps({"keyboard": [1, 0, 0, 0], "mouse": [0, 0]}) + "\n")
    code, _, err = run_main(
        capsys,
        "--headless",
        "--preset",
        "tiny",
        "--actions",
        str(actions),
        "--frames",
        "9",
        "--out",
        str(tmp_path / "o"),
    )
    assert_one_line_error(code, err, "--loop-actions")


def test_headless_needs_out(capsys):
    code, _, err = run_main(capsys, "--headless", "--preset", "tiny")
    assert_one_line_error(code, err, "--out")


def test_no_display_tells_to_pass_headless(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run(
        [sys.executable, "main.py", "--preset", "tiny"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(proc.returncode, proc.stderr, "--headless")


@pytest.mark.parametrize("argv", [["--frames", "0"], ["--fps", "-1"]])
def test_bad_numbers(capsys, tmp_path, argv):
    code, _, err = run_main(capsys, "--headless", "--preset", "tiny", "--out", str(tmp_path), *argv)
    assert_one_line_error(code, err)


def test_missing_default_start_image_falls_back_to_gray():
    from app.start_images import StartImages
    from engine.config import Preset

    messages = []
    preset = Preset(name="p", height=8, width=16, start_images=("assets/nope.png",))
    label, image = StartImages(preset, log=messages.append).current()
    assert label == "gray" and image.shape == (8, 16, 3) and (image == 128).all()
    assert "nope.png" in messages[0] and "gray" in messages[1]


def test_preset_without_weights_says_it_runs_random_ones(capsys, tmp_path):
    code, out, err = run_main(capsys, "--headless", "--preset", "tiny", "--frames", "9", "--quiet",
                              "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 0 and "wrote 9 frames" in out
    assert err.count("worldplayer: note: preset tiny has no world-model weights") == 1
    code, out, err = run_main(capsys, "--headless", "--preset", "doom", "--frames", "9", "--quiet",
                              "--out", str(tmp_path / "d"))  # fmt: skip
    assert code == 0 and "note:" not in err  # the default ships its weights

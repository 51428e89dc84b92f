"""Bad input found by a hostile tester (issue 20): out-of-range actions, NaN weights, broken start images,
bad devices, VAE files and preset YAML. Each is one line and a non-zero exit, or a notice in the window."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pygame
import pytest
import torch

from app.action_file import load_action_file
from app.cli import main
from app.start_images import StartImage
from tests.test_app_support import FakeWorld
from tests.test_faults import headless, one_error_line

REPO = Path(__file__).resolve().parent.parent
GOOD = {"keyboard": [1, 0, 0, 0], "mouse": [0.0, 0.1]}


# --- item 5: silent black video ---


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"keyboard": [1, 0, 0, 0], "mouse": [1e30, 0]}, '"mouse" values must lie in [-10, 10]'),
        ('{"keyboard": [1, 0, 0, 0], "mouse": [1e39, 0]}', '"mouse" values must lie in [-10, 10]'),
        ({"keyboard": [1e30, 0, 0, 0], "mouse": [0, 0]}, '"keyboard" values must lie in [0, 1]'),
        ({"keyboard": [-1, 0, 0, 0], "mouse": [0, 0]}, '"keyboard" values must lie in [0, 1]'),
        ('{"keyboard": [1, 0, 0, 0], "mouse": [' + "9" * 400 + ", 0]}", '"mouse" values must lie'),
        ('{"keyboard": [1, 0, 0, 0], "mouse": [0, 0], "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "line 2"),
    ],
    ids=["mouse-1e30", "mouse-1e39", "keyboard-1e30", "keyboard-negative", "400-digits", "100k-deep"],
)
def test_out_of_range_actions_are_one_line(tmp_path, capsys, bad, fragment):
    path = tmp_path / "actions.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + (bad if isinstance(bad, str) else json.dumps(bad)) + "\n")
    assert main(headless(tmp_path / "run", "--actions", str(path), frames=2)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "line 2" in line and fragment in line
    assert not (tmp_path / "run" / "meta.json").exists()


def test_action_ranges_allow_what_the_models_use(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"keyboard": [1, 0, 0.5, 0], "mouse": [-10, 10]}) + "\n")
    assert load_action_file(str(path), 4, True).mouse.tolist() == [[-10.0, 10.0]]


def nan_checkpoint(path: Path) -> Path:
    from safetensors.torch import save_file

    from engine.config import load_preset
    from engine.model.causal_wan import CausalWanModel

    state = CausalWanModel(load_preset("tiny").model).state_dict()
    save_file({k: torch.full_like(v, float("nan")) for k, v in state.items()}, str(path))
    return path


def test_nan_weights_stop_headless_with_one_line(tmp_path, capsys):
    ckpt = nan_checkpoint(tmp_path / "nan.safetensors")
    out = tmp_path / "run"
    assert main(headless(out, "--checkpoint", str(ckpt), frames=20)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "block 0" in line and "NaN/Inf latents" in line
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] is False and "NonFiniteLatents" in meta["session_error"]


# --- item 6: a broken start image on `]` ---


def test_broken_start_image_on_next_keeps_the_session(tmp_path):
    from tests.test_app_window import key, make_app

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    app = make_app(FakeWorld(), tmp_path, record=False)
    app.gen.images.choices.append(StartImage(str(broken), str(broken)))
    notices = []

    def script(app, tick):
        if tick == 5:
            key(pygame.KEYDOWN, pygame.K_RIGHTBRACKET)
        notices.append(app.gen.notice)

    assert app.run(max_frames=60, script=script) == 0
    assert app.gen.error is None and app.frames_shown == 60 and app.gen.session == 1
    assert any("start image not changed" in n and "broken.png" in n for n in notices)


# --- item 7: tracebacks instead of one line ---


@pytest.mark.parametrize("content", [b"garbage", b"", "pth"])
def test_bad_vae_checkpoint_on_the_default_preset(tmp_path, capsys, content):
    path = tmp_path / ("vae.pth" if content == "pth" else "vae.safetensors")
    if content == "pth":
        torch.save({"w": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    argv = headless(tmp_path / "run", "--vae-checkpoint", str(path), frames=1)
    argv[argv.index("tiny")] = "doom"
    assert main(argv) == 2
    assert str(path) in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("device, fragment", [("foo", "is not a device"), ("cuda:99", "cuda")])
def test_bad_device_is_one_line(tmp_path, capsys, device, fragment):
    assert main(headless(tmp_path / "run", "--device", device)) == 2
    assert fragment in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("height: [1\nwidth: 3\n", "not valid YAML"),
        ("- 1\n- 2\n", "got a list"),
        ("base: tiny\nheight: 0\n", "height and width must be >= 1"),
        ("base: tiny\nmodel:\n  num_layers: 0\n", "model.num_layers must be >= 1"),
        ("base: tiny\nsampler:\n  denoising_step_list: [333, 1000]\n", "denoising_step_list"),
        ("base: tiny\nsampler:\n  denoising_step_list: []\n", "denoising_step_list"),
        ("base: tiny\nsampler:\n  denoising_step_list: [2000]\n", "denoising_step_list"),
        ("", "image_encoder"),  # the 1.6 B defaults: refused before anything is built
    ],
)
def test_bad_preset_yaml_is_one_line_before_building(tmp_path, capsys, text, fragment):
    preset = tmp_path / "bad.yaml"
    preset.write_text(text)
    argv = headless(tmp_path / "run")
    argv[argv.index("tiny")] = str(preset)
    t0 = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - t0 < 10
    assert fragment in one_error_line(capsys.readouterr().err)


def test_nan_latents_raise_in_the_session():
    from engine.worlds import build_world
    from engine.worlds.session import NonFiniteLatents

    world = build_world("tiny", device="cpu", dtype="fp32")
    for p in world.model.parameters():
        p.data.fill_(float("nan"))
    world.start(np.full((32, 64, 3), 128, np.uint8))
    from engine.actions import ActionBlock

    with pytest.raises(NonFiniteLatents, match="block 0"):
        world.step(ActionBlock(np.zeros((9, 4), np.float32), np.zeros((9, 2), np.float32)))

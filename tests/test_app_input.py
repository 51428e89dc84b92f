"""Keymaps, input accumulation, action files and benchmark action sequences."""

import json

import numpy as np
import pytest

from app.action_file import block_slice, fit_actions, load_action_file
from app.bench_actions import bench_actions
from app.input_state import MOUSE_UNITS_PER_PIXEL, InputState
from app.keymaps import CAM_VALUE, keymap_for


def test_universal_keymap_rows():
    km = keymap_for("universal")
    assert km.keyboard_row({"w", "d"}).tolist() == [1, 0, 0, 1]
    assert km.camera_row({"l"}).tolist() == pytest.approx([0.0, CAM_VALUE])
    assert km.camera_row({"i", "j"}).tolist() == pytest.approx([CAM_VALUE, -CAM_VALUE])


def test_templerun_is_one_hot_with_idle():
    km = keymap_for("templerun")
    assert km.keyboard_row(set()).tolist() == [1, 0, 0, 0, 0, 0, 0]  # nomove
    assert km.keyboard_row({"w"}).tolist() == [0, 1, 0, 0, 0, 0, 0]  # jump
    assert km.keyboard_row({"left"}).tolist() == [0, 0, 0, 1, 0, 0, 0]  # turn left
    assert km.keyboard_row({"s", "d"}).sum() == 1
    assert not km.has_mouse


def test_gta_drive_steers_with_yaw():
    km = keymap_for("gta_drive")
    state = InputState(km)
    state.key_down("w")
    state.key_down("a")
    sample = state.take_block(12)
    assert sample.actions.keyboard[0].tolist() == [1, 0]
    assert sample.actions.mouse[0].tolist() == pytest.approx([0.0, -CAM_VALUE])
    state.mouse_motion(500, 0)  # no mouse look in this mode
    state.end_frame()
    assert state.take_block(12).actions.mouse[0].tolist() == pytest.approx([0.0, -CAM_VALUE])


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="no keymap"):
        keymap_for("flying")


def test_tap_counts_for_one_block_and_held_keys_persist():
    state = InputState(keymap_for("universal"))
    state.key_down("s")
    state.key_up("s")
    state.key_down("w")
    first = state.take_block(9)
    assert first.actions.keyboard.shape == (9, 4)
    assert first.actions.keyboard[0].tolist() == [1, 1, 0, 0]
    assert first.keys == ["s", "w"]
    assert state.take_block(12).actions.keyboard[0].tolist() == [1, 0, 0, 0]


def test_mouse_accumulates_per_frame_and_keeps_total_rotation():
    state = InputState(keymap_for("universal"), sensitivity=2.0)
    for dx in (10, 20, 30):  # three display frames
        state.mouse_motion(dx, -5)
        state.end_frame()
    sample = state.take_block(12)
    per_frame = MOUSE_UNITS_PER_PIXEL * 2.0 / 3
    assert sample.actions.mouse.shape == (12, 2)
    assert sample.actions.mouse[0, 1] == pytest.approx(60 * per_frame)  # yaw right
    assert sample.actions.mouse[0, 0] == pytest.approx(15 * per_frame)  # mouse up = pitch up
    assert sample.mouse_pixels == (60.0, -15.0)
    assert state.take_block(12).actions.mouse.tolist() == [[0.0, 0.0]] * 12  # consumed


def test_mouse_is_clamped_and_sensitivity_scales():
    state = InputState(keymap_for("universal"), mouse_clamp=0.3)
    state.mouse_motion(100000, 0)
    state.end_frame()
    assert state.take_block(12).actions.mouse[0, 1] == pytest.approx(0.3)
    assert state.scale_sensitivity(2.0) == 2.0
    state.key_down("l")
    assert state.take_block(12).actions.mouse[0, 1] == pytest.approx(2 * CAM_VALUE)


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_action_file_roundtrip_and_extra_fields(tmp_path):
    path = _write(
        tmp_path / "a.jsonl",
        [
            json.dumps({"keyboard": [1, 0, 0, 0], "mouse": [0.0, 0.1], "keys": ["w"], "t": 0.5}),
            "",
            json.dumps({"keyboard": [0, 0, 1, 0], "mouse": [-0.1, 0.0]}),
        ],
    )
    actions = load_action_file(path, 4, True)
    assert actions.keyboard.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]
    assert np.allclose(actions.mouse, [[0.0, 0.1], [-0.1, 0.0]])


@pytest.mark.parametrize(
    "bad, match",
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"keyboard": [1, 0, 0], "mouse": [0, 0]}', 'line 2: "keyboard" must be a list of 4 numbers'),
        ('{"keyboard": [1, 0, 0, 0]}', 'line 2: missing "mouse"'),
        ('{"keyboard": [1, 0, 0, "x"], "mouse": [0, 0]}', 'line 2: "keyboard" must hold finite numbers'),
        ("[1, 2]", "line 2: expected a JSON object"),
    ],
)
def test_bad_action_line_names_the_line(tmp_path, bad, match):
    path = _write(tmp_path / "a.jsonl", [json.dumps({"keyboard": [0, 0, 0, 0], "mouse": [0, 0]}), bad])
    with pytest.raises(ValueError, match=match):
        load_action_file(path, 4, True)


def test_short_action_file_needs_loop():
    actions = bench_actions("forward", "universal", 5, 4, True)
    with pytest.raises(ValueError, match="--loop-actions"):
        fit_actions(actions, 12, loop=False)
    looped = fit_actions(actions, 12, loop=True)
    assert len(looped) == 12
    tail = block_slice(looped, 9, 12)  # past the end repeats the last row
    assert len(tail) == 12 and tail.keyboard[-1].tolist() == [1, 0, 0, 0]


def test_bench_actions_follow_the_official_segments():
    a = bench_actions("random", "universal", 33, 4, True, seed=3)
    b = bench_actions("random", "universal", 33, 4, True, seed=3)
    assert np.array_equal(a.keyboard, b.keyboard) and np.array_equal(a.mouse, b.mouse)
    for start in (1, 13, 25):  # one action per 12-frame segment after frame 0
        seg = slice(start, start + 8)
        assert (a.keyboard[seg] == a.keyboard[start]).all() and (a.mouse[seg] == a.mouse[start]).all()
    t = bench_actions("random", "templerun", 25, 7, False)
    assert t.mouse is None and (t.keyboard.sum(1) == 1).all()
    combo = bench_actions("forward_left+camera_r", "universal", 4, 4, True)
    assert combo.keyboard[0].tolist() == [1, 0, 1, 0] and np.allclose(combo.mouse[0], [0, 0.1])
    with pytest.raises(ValueError, match="unknown universal bench action"):
        bench_actions("moonwalk", "universal", 4, 4, True)

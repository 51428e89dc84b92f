"""`worldplayer make-world`: the stage plan and its skips, one-line errors, presets that travel with their
folder, and the whole recipe on a tiny budget, resumed, and played headless."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from app.cli import main as cli_main
from engine.config import REPO_DIR, load_preset
from engine.make_world import (
    STAGE_NAMES,
    STAGES,
    Layout,
    build_parser,
    claim,
    plan,
    settings_from_args,
    write_state,
)
from engine.make_world_stages import spread_points

REPO = Path(__file__).resolve().parent.parent
TINY = ["--budget", "tiny", "--episodes", "2", "--eval-episodes", "2", "--frames-per-episode", "40"]
TINY += ["--vae-steps", "4", "--sharpen-steps", "2", "--world-steps", "4", "--start-images", "8"]
TINY += ["--workers", "1"]


def run_make(capsys, *argv):
    code = cli_main(["make-world", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code, err, *fragments):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("make-world: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_plan_runs_what_is_missing_and_what_it_needs():
    everything = set(STAGE_NAMES)
    assert plan(set(), lambda s: False) == STAGE_NAMES
    assert plan(everything, lambda s: True) == []
    # the world is exported: deleting work/ (data, runs) leaves it complete
    assert plan(everything, lambda s: s.name == "export") == []
    # interrupted during the world stage: the data and the VAE are kept, the world resumes
    assert plan(everything - {"world", "export"}, lambda s: True) == ["world", "export"]
    # the exported files and work/ were deleted, the VAE kept: the data and the world are made again
    kept = ("vae_sharpen", "sharpen_export")
    assert plan(everything, lambda s: s.name in kept) == ["record", "record_eval", "world", "export"]


def test_every_stage_has_outputs_and_known_needs(tmp_path):
    lay = Layout.of(tmp_path / "w")
    for i, stage in enumerate(STAGES):
        assert stage.outputs(lay) and all(str(p).startswith(str(lay.out)) for p in stage.outputs(lay))
        assert set(stage.needs) <= set(STAGE_NAMES[:i]), stage.name


def test_spread_points_are_far_apart():
    xy = np.array([[0, 0], [1, 0], [100, 0], [0, 100], [101, 1], [0, 0]], np.float64)
    picked = spread_points(xy, 3)
    assert picked[0] == 0 and sorted(picked[1:]) == [3, 4]
    assert len(spread_points(np.zeros((5, 2)), 4)) == 1  # only repeats: one point, no duplicates


def test_out_folder_holding_something_else_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("engine.make_world.check_map", lambda wad, m: wad)
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_make(capsys, "--map", "MAP01", "--out", str(tmp_path))
    one_error_line(code, err, "holds other files")
    assert (tmp_path / "notes.txt").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1


def test_other_settings_for_a_started_folder_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("engine.make_world.check_map", lambda wad, m: wad)
    out = tmp_path / "w"
    args = build_parser().parse_args(["--map", "MAP01", "--out", str(out), "--budget", "tiny"])
    lay = Layout.of(out)
    out.mkdir()
    write_state(lay, claim(lay, settings_from_args(args, "freedoom2.wad")))  # a started make
    code, _, err = run_make(
        capsys, "--map", "MAP01", "--out", str(out), "--budget", "tiny", "--world-steps", "7"
    )
    one_error_line(code, err, "other settings", "world_steps 20 (now 7)")
    code, _, err = run_make(capsys, "--map", "MAP02", "--out", str(out), "--budget", "tiny")
    one_error_line(code, err, "map MAP01 (now MAP02)")


def test_missing_vizdoom_names_the_data_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("engine.make_world.vizdoom_installed", lambda: False)
    code, _, err = run_make(capsys, "--map", "MAP01", "--out", str(tmp_path / "w"))
    one_error_line(code, err, 'pip install -e ".[data]"')
    assert not (tmp_path / "w").exists()


def test_unknown_wad_and_unknown_map_are_one_line(tmp_path, capsys):
    pytest.importorskip("vizdoom")
    code, _, err = run_make(capsys, "--wad", "nope.wad", "--map", "MAP01", "--out", str(tmp_path / "a"))
    one_error_line(code, err, "WAD not found", "nope.wad")
    code, _, err = run_make(capsys, "--wad", "freedoom2.wad", "--map", "E1M1", "--out", str(tmp_path / "b"))
    one_error_line(code, err, "freedoom2.wad has no map E1M1", "MAP01")
    code, _, err = run_make(capsys, "--wad", "freedoom1.wad", "--map", "E1M2", "--out", str(tmp_path / "c"))
    one_error_line(code, err, "held out for evaluation", "E1M1")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_help_does_not_import_torch():
    probe = (
        "import contextlib, sys\nfrom app.cli import main\n"
        "with contextlib.suppress(SystemExit):\n    main(['make-world', '--help'])\n"
        "print('torch imported:', 'torch' in sys.modules)"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.stdout.strip().endswith("torch imported: False"), done.stdout[-500:] + done.stderr[-2000:]
    assert "--world-steps" in done.stdout and "tiny" in done.stdout


def test_preset_outside_configs_finds_files_beside_it(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"")
    (tmp_path / "start").mkdir()
    (tmp_path / "start" / "a.png").write_bytes(b"")
    data = yaml.safe_load((REPO / "configs" / "e1m1.yaml").read_text())
    preset_file = tmp_path / "mine.yaml"
    preset_file.write_text(yaml.safe_dump(dict(data, checkpoint="w.safetensors")))
    preset = load_preset(str(preset_file))
    assert preset.checkpoint == str(tmp_path / "w.safetensors")  # beside the preset
    assert preset.vae.checkpoint == str(REPO_DIR / "assets/e1m1/vae.safetensors")  # not beside: the repo's
    variant = tmp_path / "variant.yaml"
    variant.write_text("base: e1m1\nstart_images: [start/a.png, assets/e1m1/start/e1m1_00.png]\n")
    preset = load_preset(str(variant))
    assert preset.start_images == (
        str(tmp_path / "start/a.png"),
        str(REPO_DIR / "assets/e1m1/start/e1m1_00.png"),
    )
    assert preset.vae.checkpoint == str(REPO_DIR / "assets/e1m1/vae.safetensors")  # inherited from configs/
    assert load_preset("e1m1").vae.checkpoint == str(REPO_DIR / "assets/e1m1/vae.safetensors")


def test_tiny_world_end_to_end_resumes_and_plays(tmp_path, capsys):
    """About 40 s on one shared core: record, train, export; a second run skips every stage; the
    world folder, moved, plays headless and its frames change."""
    pytest.importorskip("vizdoom")
    out = tmp_path / "world"
    t0 = time.time()
    code, stdout, err = run_make(capsys, "--wad", "freedoom2.wad", "--map", "MAP01", "--out", str(out), *TINY)
    first_s = time.time() - t0
    assert code == 0, err[-3000:]
    for name in STAGE_NAMES:
        assert f"] {name}: done in " in stdout, stdout
    assert f"--preset {out / 'preset.yaml'}" in stdout.splitlines()[-1]
    for rel in ("world.safetensors", "vae.safetensors", "preset.yaml", "README.txt", "make-world.json"):
        assert (out / rel).is_file(), rel
    assert len(list((out / "start").glob("*.png"))) == 8
    assert "worldplayer --preset" in (out / "README.txt").read_text()
    assert set(json.loads((out / "make-world.json").read_text())["done"]) == set(STAGE_NAMES)

    t0 = time.time()
    code, stdout, err = run_make(capsys, "--wad", "freedoom2.wad", "--map", "MAP01", "--out", str(out), *TINY)
    assert code == 0 and "is complete" in stdout, err[-2000:]
    assert time.time() - t0 < min(5.0, first_s / 4)

    moved = tmp_path / "moved"
    out.rename(moved)
    preset = load_preset(str(moved / "preset.yaml"))
    assert preset.checkpoint == str(moved / "world.safetensors") and preset.height == 72
    env = dict(os.environ, OMP_NUM_THREADS="1")
    rec = tmp_path / "play"
    cmd = [sys.executable, "main.py", "--preset", str(moved / "preset.yaml"), "--headless", "--frames", "6"]
    done = subprocess.run(
        cmd + ["--out", str(rec), "--quiet"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    blocks = [json.loads(line) for line in (rec / "blocks.jsonl").read_text().splitlines()]
    assert sum(b["frames"] for b in blocks) == 6
    assert len({b["sha256"] for b in blocks}) > 1  # the frames change

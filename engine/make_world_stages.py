"""The stages of `engine.make_world`: each a function (layout, settings, workers) that makes its outputs.

The trainers are called as functions with configs built from the recipe's YAML files (copied into the
world folder's work/recipe/ by `prepare`) and the budget's numbers; a run folder that holds state is
resumed by the trainer itself. Torch is imported here, never by `engine.make_world` (its --help is fast).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from engine.config import CONFIG_DIR, load_preset
from engine.make_world import Layout, Settings

RECIPE = {  # the E1M1 world's files (docs/training.md), copied once per world folder
    "world.yaml": CONFIG_DIR / "e1m1.yaml",
    "vae.yaml": CONFIG_DIR / "train" / "e1m1_vae.yaml",
    "vae_gan.yaml": CONFIG_DIR / "train" / "e1m1_vae_gan.yaml",
    "unet.yaml": CONFIG_DIR / "train" / "e1m1_unet.yaml",
}


def prepare(lay: Layout, s: Settings) -> None:
    """Copy the recipe (first run only) and write the training preset (absolute paths, every run)."""
    lay.recipe.mkdir(parents=True, exist_ok=True)
    for name, src in RECIPE.items():
        if not (lay.recipe / name).is_file():
            shutil.copyfile(src, lay.recipe / name)
    data = world_preset(lay, s, checkpoint="", vae=str(lay.vae.resolve()), start_images=[])
    lay.train_preset.write_text(yaml.safe_dump(data, sort_keys=False))


def world_preset(lay: Layout, s: Settings, checkpoint: str, vae: str, start_images: list[str]) -> dict:
    """The recipe's preset for this map and size, with the given weight and start-image paths."""
    data = yaml.safe_load((lay.recipe / "world.yaml").read_text())
    game = dict(data.get("game") or {}, wad=s.wad, maps=[s.map], auto_use=True)
    data.update(name=f"{Path(s.wad).stem}-{s.map}".lower(), height=s.numbers.height, width=s.numbers.width)
    data.update(checkpoint=checkpoint, start_images=start_images, game=game)
    data["vae"] = dict(data["vae"], checkpoint=vae)
    return data


def _run(run, out: Path, steps: int, batch: int = 0):
    """The recipe's RunConfig scaled to `steps` (warm-up, logging, checkpoints and evaluations fit in)."""
    scaled = replace(
        run,
        out_dir=str(out),
        steps=steps,
        warmup_steps=min(run.warmup_steps, max(1, steps // 10)),
        log_every=min(run.log_every, steps),
        ckpt_every=min(run.ckpt_every, steps),
        ckpt_every_s=min(run.ckpt_every_s, 300.0),  # Ctrl-C loses at most 5 minutes
        eval_every=min(run.eval_every, steps) if run.eval_every else 0,
    )
    return replace(scaled, batch_size=batch) if batch else scaled


def _record(lay: Layout, s: Settings, workers: int, held_out: bool) -> None:
    from engine.data import record

    b = s.numbers
    out, episodes, seed = (
        (lay.data_eval, b.eval_episodes, s.seed + 1) if held_out else (lay.data, b.episodes, s.seed)
    )
    argv = ["--out", str(out), "--wad", s.wad, "--maps", s.map, "--episodes", str(episodes)]
    argv += ["--frames-per-episode", str(b.frames), "--min-frames", str(min(33, b.frames))]
    argv += ["--workers", str(workers), "--height", str(b.height), "--width", str(b.width)]
    argv += ["--spawn", "random", "--auto-use", "--glances", "0", "--warmup-frames", "40"]
    argv += ["--seed", str(seed), "--resume"]
    with contextlib.redirect_stdout(io.StringIO()):  # the summary is kept in histograms.txt
        code = record.main(argv)
    if code != 0 or not (out / "index.json").is_file():
        raise ValueError(f"recording into {out} failed (see the lines above)")


def record_train(lay: Layout, s: Settings, workers: int) -> None:
    _record(lay, s, workers, held_out=False)


def record_eval(lay: Layout, s: Settings, workers: int) -> None:
    _record(lay, s, workers, held_out=True)


def train_vae(lay: Layout, s: Settings, workers: int) -> None:
    from engine.train.config import VAETrainConfig, load_train_config
    from engine.train.vae_trainer import train_vae as train

    cfg = load_train_config(VAETrainConfig, str(lay.recipe / "vae.yaml"))
    crop = (min(cfg.crop[0], s.numbers.height), min(cfg.crop[1], s.numbers.width))
    cfg = replace(cfg, preset=str(lay.train_preset), data=(str(lay.data),), eval_data=(str(lay.data_eval),))
    train(replace(cfg, crop=crop, run=_run(cfg.run, lay.vae_run, s.numbers.vae_steps)))


def export_vae(lay: Layout, s: Settings, workers: int) -> None:
    from engine.train.vae_trainer import export_vae as export

    export(str(lay.vae_run), str(lay.train_preset), [str(lay.data)], str(lay.vae_base))


def sharpen_vae(lay: Layout, s: Settings, workers: int) -> None:
    steps = s.numbers.sharpen_steps
    if steps == 0:  # no fine-tune: the base VAE as the run's result
        lay.sharpen_run.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lay.vae_base, lay.sharpen_run / "model.safetensors")
        return
    from engine.train.config import VAETrainConfig, load_train_config
    from engine.train.vae_trainer import train_vae as train

    cfg = load_train_config(VAETrainConfig, str(lay.recipe / "vae_gan.yaml"))
    crop = (min(cfg.crop[0], s.numbers.height), min(cfg.crop[1], s.numbers.width))
    cfg = replace(cfg, preset=str(lay.train_preset), data=(str(lay.data),), eval_data=(str(lay.data_eval),))
    cfg = replace(
        cfg, init=str(lay.vae_base), crop=crop, adversarial_start=min(cfg.adversarial_start, steps // 4)
    )
    train(replace(cfg, run=_run(cfg.run, lay.sharpen_run, steps)))


def export_sharpened(lay: Layout, s: Settings, workers: int) -> None:
    from engine.train.vae_trainer import export_vae as export

    export(str(lay.sharpen_run), str(lay.train_preset), [str(lay.data)], str(lay.vae), calibrate=False)


def train_world(lay: Layout, s: Settings, workers: int) -> None:
    from engine.train.config import UNetTrainConfig, load_train_config
    from engine.train.unet_trainer import train_unet

    cfg = load_train_config(UNetTrainConfig, str(lay.recipe / "unet.yaml"))
    cfg = replace(cfg, preset=str(lay.train_preset), data=(str(lay.data),), latents=str(lay.latents))
    train_unet(replace(cfg, run=_run(cfg.run, lay.world_run, s.numbers.world_steps, s.numbers.world_batch)))


def spread_points(xy: np.ndarray, k: int) -> list[int]:
    """Indices of k points of xy [N, 2] spread out (farthest-point order, starting with point 0)."""
    picked = [0]
    dist = np.linalg.norm(xy - xy[0], axis=1)
    while len(picked) < min(k, len(xy)):
        i = int(np.argmax(dist))
        if dist[i] <= 0 and len(picked) >= 1:  # only repeats of picked points are left
            break
        picked.append(i)
        dist = np.minimum(dist, np.linalg.norm(xy - xy[i], axis=1))
    return picked


def start_frames(data: Path, count: int) -> list[np.ndarray]:
    """`count` held-out frames uint8 [H, W, 3] from places far apart: every episode's first frame and a
    few later ones are candidates, blank frames are left out, the spread follows the recorded poses."""
    from engine.data.shards import load_shard, read_index

    index = read_index(data)
    frames, xy = [], []
    for entry in index["shards"]:
        shard = load_shard(data, entry, index["height"], index["width"])
        for _, first, n in shard.episodes():
            for i in range(first, first + n, max(1, n // 6)):
                frame = np.asarray(shard.frames[i])
                if frame.std() < 4.0:  # a blank screen (a wall face-on, a dark corner)
                    continue
                frames.append(frame)
                pose = shard.pose[i, :2] if shard.pose is not None else (len(xy), 0.0)
                xy.append(np.asarray(pose, np.float64))
    if not frames:
        raise ValueError(f"no usable start frame in {data}")
    return [frames[i] for i in spread_points(np.stack(xy), count)]


def export_world(lay: Layout, s: Settings, workers: int) -> None:
    """world.safetensors (the EMA weights), start/NN.png, preset.yaml (paths relative to it), README.txt."""
    from PIL import Image

    tmp = lay.world.with_name(lay.world.name + ".tmp")
    shutil.copyfile(lay.world_run / "ema.safetensors", tmp)
    os.replace(tmp, lay.world)
    if lay.start.is_dir():
        shutil.rmtree(lay.start)
    lay.start.mkdir()
    names = []
    for i, frame in enumerate(start_frames(lay.data_eval, s.start_images)):
        names.append(f"start/{i:02d}.png")
        Image.fromarray(frame).save(lay.out / names[-1])
    data = world_preset(lay, s, checkpoint=lay.world.name, vae=lay.vae.name, start_images=names)
    header = (
        f"# {data['name']}: a world model of {s.map} of {Path(s.wad).name}, made by `worldplayer\n"
        "# make-world` (docs/make-world.md). Relative paths are relative to this file's folder, so the\n"
        "# folder can be moved.\n"
    )
    lay.preset.write_text(header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
    preset = load_preset(str(lay.preset))  # the folder must play as it is: every path inside it
    inside = [preset.checkpoint, preset.vae.checkpoint, *preset.start_images]
    if any(Path(p).resolve().parent not in (lay.out.resolve(), lay.start.resolve()) for p in inside):
        raise ValueError(f"{lay.preset} names files outside {lay.out}: {inside}")
    lay.readme.write_text(readme(lay, s, len(names)))


def make_command(lay: Layout, s: Settings) -> str:
    """The command line that makes (or resumes) this world."""
    b = s.numbers
    return (
        f"worldplayer make-world --wad {s.wad} --map {s.map} --out {lay.out} --budget {s.budget} "
        f"--episodes {b.episodes} --frames-per-episode {b.frames} --eval-episodes {b.eval_episodes} "
        f"--vae-steps {b.vae_steps} --sharpen-steps {b.sharpen_steps} --world-steps {b.world_steps} "
        f"--world-batch {b.world_batch} --start-images {s.start_images} --seed {s.seed}"
    )


def readme(lay: Layout, s: Settings, images: int) -> str:
    b = s.numbers
    done = json.loads(lay.state.read_text()).get("done", {})
    times = ", ".join(f"{k} {v:.0f} s" for k, v in done.items())
    preset = lay.preset.resolve()
    return f"""A world model of {s.map} of {Path(s.wad).name}, made by worldplayer's `make-world`.

Play it (keys: `worldplayer --help`):
  worldplayer --preset {preset}
  python main.py --preset {preset}      (from a worldplayer checkout)
Headless, e.g. 120 frames into a video:
  worldplayer --preset {preset} --headless --frames 120 --out out/{preset.parent.name}

How it was made (budget {s.budget}; the recipe of the E1M1 world, docs/training.md and docs/make-world.md):
- data: {b.episodes} episodes x {b.frames} frames of scripted play from random spawn points
  ({b.width}x{b.height}, 17.5 fps, doors open when walked into; seed {s.seed}), and {b.eval_episodes} held-out
  episodes (seed {s.seed + 1}), where the {images} start images come from;
- the per-frame tiny VAE: {b.vae_steps} steps; its decoder sharpened (patch GAN): {b.sharpen_steps} steps;
- the latent U-Net world model: {b.world_steps} steps of batch {b.world_batch} (world.safetensors: EMA).
Seconds per stage: {times or "-"}.

Files: preset.yaml (its paths are relative to this folder, which can be moved), world.safetensors,
vae.safetensors, start/*.png, make-world.json (the settings and finished stages), work/ (recorded data,
training runs and the recipe's configs: delete it to save space; the world does not need it).

The command that made it (run it again to resume an interrupted make):
  {make_command(lay, s)}
"""


RUNNERS = {
    "record": record_train,
    "record_eval": record_eval,
    "vae": train_vae,
    "vae_export": export_vae,
    "vae_sharpen": sharpen_vae,
    "sharpen_export": export_sharpened,
    "world": train_world,
    "export": export_world,
}

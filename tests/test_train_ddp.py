"""DDP that has run: `torchrun --nproc_per_node 2 -m engine.train world` on CPU (gloo) trains what one
process with the same global batch trains, resumes exactly, shards the batch by rank and writes from
rank 0 only.

`run.batch_size` is per process, so 2 x 2 here is compared with 1 x 4 (a world size that "does not
divide the batch" cannot happen); what can go wrong is resuming with another global batch, which is
refused in one line. fp32 (`run.bf16=false`) so the tolerance says something: the two runs differ only
in float summation order (a batch of 4 against 2 + 2 all-reduced).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
PRESET = "configs/train/presets/synthetic.yaml"
STEPS = 4
TOL = 1e-5  # max |weight difference|, and loss difference, between 2 x 2 and 1 x 4 (fp32)

# torchrun runs this per rank: it notes every file the rank writes under the run folder (audit hook:
# open for writing, rename, remove) and the rank's clips per step, then runs the CLI.
ENTRY = """
import json, os, sys
rank, watch, notes = os.environ["RANK"], os.environ["WP_WATCH"], os.environ["WP_NOTES"]
written, clips = [], []
def hook(event, args):
    if event == "open" and str(args[0]).startswith(watch):
        mode, flags = args[1], args[2]
        if (mode and any(c in mode for c in "wax+")) or (mode is None and flags & (os.O_WRONLY | os.O_RDWR)):
            written.append(str(args[0]))
    elif event in ("os.rename", "os.remove") and str(args[0]).startswith(watch):
        written.append(str(args[0]))
sys.addaudithook(hook)
import engine.train.world_trainer as wt
real = wt.sample_batch
def spy(cache, b, n, start, gen, clips=None, **kw):
    globals()["clips"].append([start, list(clips)])
    return real(cache, b, n, start, gen, clips=clips, **kw)
wt.sample_batch = spy
from engine.train.__main__ import main
code = main(sys.argv[1:])
with open(os.path.join(notes, f"rank{rank}.json"), "w") as f:
    json.dump({"written": written, "clips": clips}, f)
sys.exit(code)
"""


def overrides(data, out, latents, batch, *extra) -> list[str]:
    return [f"preset={PRESET}", f"data=[{data}]", f"run.out_dir={out}", f"latents={latents}",
            f"run.batch_size={batch}", f"run.steps={STEPS}", "run.ckpt_every=2", "run.sample_every=2",
            "run.log_every=1", "run.progress=false", "run.warmup_steps=2", "run.bf16=false", "run.threads=1",
            "mode=autoregressive", "clip_latents=3", "context_latents=3", "curriculum_fraction=0.5",
            *extra]  # fmt: skip


def torchrun(tmp_path, out, args, tag):
    """`torchrun --standalone --nproc_per_node 2` of ENTRY; returns each rank's notes."""
    entry, notes = tmp_path / "entry.py", tmp_path / f"notes-{tag}"
    entry.write_text(ENTRY)
    notes.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", WP_WATCH=str(out), WP_NOTES=str(notes))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(entry)]
    proc = subprocess.run(
        [*cmd, "world", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((notes / f"rank{r}.json").read_text()) for r in (0, 1)]


def metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def losses(out) -> list[float]:
    return [r["loss"] for r in metrics(out) if "loss" in r]


def max_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(str(a)), load_file(str(b))
    assert x.keys() == y.keys()
    return max(float((x[k].float() - y[k].float()).abs().max()) for k in x)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_two_processes_equal_one_with_the_global_batch_and_resume(synthetic_data, tmp_path, one_thread):
    from engine.train.config import WorldTrainConfig, load_train_config
    from engine.train.world_trainer import train_world

    latents, single, ddp = tmp_path / "latents", tmp_path / "single", tmp_path / "ddp"

    # one process, global batch 4 (its clips per step noted, as the ranks' are)
    import engine.train.world_trainer as wt

    seen, real = [], wt.sample_batch

    def spy(cache, b, n, start, gen, clips=None, **kw):
        seen.append([start, list(clips)])
        return real(cache, b, n, start, gen, clips=clips, **kw)

    wt.sample_batch = spy
    try:
        train_world(load_train_config(WorldTrainConfig, None, overrides(synthetic_data, single, latents, 4)))
    finally:
        wt.sample_batch = real

    # two processes x 2, stopped at step 2 and resumed under DDP
    args = overrides(synthetic_data, ddp, latents, 2)
    first = torchrun(tmp_path, ddp, [*args, "run.stop_after=2"], "first")
    assert len(losses(ddp)) == 2
    interrupted = tmp_path / "interrupted"
    shutil.copytree(ddp, interrupted)
    second = torchrun(tmp_path, ddp, args, "resumed")

    # the loss curve and the weights (trained and EMA) equal one process with the global batch
    a, b = losses(single), losses(ddp)
    print(f"\nloss 1x4: {a}\nloss 2x2: {b}")
    assert len(a) == len(b) == STEPS and max(abs(x - y) for x, y in zip(a, b, strict=True)) < TOL
    for name in ("model.safetensors", "ema.safetensors"):
        diff = max_diff(single / name, ddp / name)
        print(f"{name}: max |1x4 - 2x2| = {diff:.2e}")
        assert diff < TOL, (name, diff)

    # sharding: each step the ranks train the two halves of the one global draw (rank 0 rows 0-1,
    # rank 1 rows 2-3), at the same block offset, so no row of the global batch is trained twice
    ranks = [first[r]["clips"] + second[r]["clips"] for r in (0, 1)]
    assert len(seen) == len(ranks[0]) == len(ranks[1]) == STEPS
    for step, (start, clips) in enumerate(seen):
        assert ranks[0][step] == [start, clips[:2]] and ranks[1][step] == [start, clips[2:]], step

    # rank 0 alone writes: checkpoints, state, metrics (one row per step, not two), config, samples
    assert first[1]["written"] == [] and second[1]["written"] == []
    names = {Path(p).name for p in first[0]["written"]}  # the hook sees what rank 0 writes
    assert {"metrics.jsonl", "config.yaml", "model.safetensors.tmp"} <= names, names
    assert [r["step"] for r in metrics(ddp) if "loss" in r] == list(range(1, STEPS + 1))
    assert any((ddp / "samples").iterdir())

    # resuming with another global batch is refused in one line; the same global batch in another
    # number of processes (1 x 4) continues the DDP run exactly
    odd = overrides(synthetic_data, interrupted, latents, 2)
    with pytest.raises(ValueError, match="global batch of 4") as e:
        train_world(load_train_config(WorldTrainConfig, None, odd))
    assert "\n" not in str(e.value)
    train_world(load_train_config(WorldTrainConfig, None, overrides(synthetic_data, interrupted, latents, 4)))
    assert max_diff(single / "ema.safetensors", interrupted / "ema.safetensors") < TOL

"""The latent U-Net world: EDM maths, the session's causality and determinism, training batches that
match what a session feeds the model, resume, checkpoint errors, and that a trained model follows keys."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.actions import ActionBlock
from engine.config import UNetConfig, load_preset

PRESET = "configs/train/presets/synthetic_unet.yaml"


@pytest.mark.parametrize("residual", [False, True])
def test_denoise_returns_x0_when_the_network_outputs_the_training_target(residual):
    from engine.edm import denoise, residual_base, training_target

    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 4, 5, 6, generator=g), torch.randn(3, 4, 5, 6, generator=g)
    context = torch.randn(3, 2, 4, 5, 6, generator=g)
    sigma = torch.tensor([0.01, 0.7, 20.0])
    x = x0 + sigma[:, None, None, None] * noise
    cfg = UNetConfig(sigma_data=0.75, residual=residual, turn_fov=90.0 if residual else 0.0)
    actions = torch.randn(3, 2, 6, generator=g)  # a turn: the residual base is warped
    target = training_target(x0, x, sigma, 0.75, residual_base(context, actions, cfg))
    out, f = denoise(lambda *a: target, x, sigma, context, torch.zeros(3), actions, cfg)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(f, target)


def test_a_residual_world_with_a_silent_network_copies_the_newest_context_frame():
    """With F = 0 a residual world's first step predicts the newest context latent (a plain world's
    predicts 0, the mean latent): an untrained or unsure model stands still instead of blurring."""
    from engine.edm import denoise

    g = torch.Generator().manual_seed(1)
    context = torch.randn(2, 4, 3, 5, 6, generator=g)
    sigma = torch.full((2,), 1e4)
    x = sigma[:, None, None, None] * torch.randn(2, 3, 5, 6, generator=g) + context[:, -1]
    silent = lambda x, *a: torch.zeros_like(x)  # noqa: E731
    args = (torch.zeros(2), torch.zeros(2, 4, 6))
    copy, _ = denoise(silent, x, sigma, context, *args, UNetConfig(sigma_data=0.75, residual=True))
    plain, _ = denoise(silent, x, sigma, context, *args, UNetConfig(sigma_data=0.75, residual=False))
    torch.testing.assert_close(copy, context[:, -1], atol=1e-3, rtol=0)
    assert float(plain.abs().max()) < 1e-3


def test_karras_sigmas_run_from_max_to_min_then_zero():
    from engine.edm import karras_sigmas

    cfg = load_preset("e1m1").unet
    s = karras_sigmas(cfg)
    assert len(s) == cfg.steps + 1 and s[-1] == 0
    assert float(s[0]) == pytest.approx(cfg.sigma_max, rel=1e-5) and float(s[-2]) == pytest.approx(
        cfg.sigma_min, rel=1e-5
    )
    assert bool((s[:-1] > s[1:]).all())


def random_session(block_frames: int = 3, weight_scale: float = 0.05, residual: bool = False):
    """A session of the synthetic U-Net preset with all weights random (the zero-initialised output
    layers too, so actions and context change the output)."""
    from engine.model.latent_unet import LatentUNet
    from engine.vae.factory import build_vae
    from engine.worlds.unet_session import UNetWorldSession

    preset = load_preset(PRESET)
    preset = replace(preset, unet=replace(preset.unet, block_frames=block_frames, residual=residual))
    torch.manual_seed(0)
    model = LatentUNet(preset.unet, preset.vae.z_dim)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * weight_scale)
    return UNetWorldSession(preset, model, build_vae(preset.vae), dtype="fp32")


def actions(n: int, seed: int = 0) -> ActionBlock:
    rng = np.random.default_rng(seed)
    return ActionBlock(
        (rng.random((n, 4)) > 0.5).astype(np.float32), rng.normal(0, 0.3, (n, 2)).astype(np.float32)
    )


def start_image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def test_block_size_does_not_change_the_frames():
    """Frames are generated one at a time: blocks of 3 and blocks of 1 give identical video."""
    from engine.worlds import play

    a = actions(10)
    videos = []
    for block in (1, 3):
        s = random_session(block)
        s.start(start_image(), seed=5)
        videos.append(play(s, a))
    assert videos[0].shape == (10, 64, 64, 3)
    np.testing.assert_array_equal(videos[0], videos[1])


@pytest.mark.parametrize("residual", [False, True])
def test_an_action_changes_only_the_frames_after_it(residual):
    """actions[i] takes frame i to i + 1: changing it leaves frames 0..i alone and changes frame i + 1."""
    from engine.worlds import play

    s = random_session(1, residual=residual)
    a = actions(8)
    s.start(start_image(), seed=1)
    base = play(s, a)
    b = ActionBlock(a.keyboard.copy(), a.mouse.copy())
    b.keyboard[4] = 1.0 - b.keyboard[4]
    b.mouse[4] += 1.0
    s.start(start_image(), seed=1)
    changed = play(s, b)
    np.testing.assert_array_equal(base[:5], changed[:5])
    assert np.abs(base[5].astype(int) - changed[5].astype(int)).mean() > 0.5


def test_session_is_deterministic_per_seed_and_starts_on_the_image_latent():
    from engine.worlds import play

    s = random_session()
    a = actions(7)
    runs = []
    for seed in (3, 3, 4):
        s.start(start_image(), seed=seed)
        runs.append(play(s, a))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0][1:], runs[2][1:])
    np.testing.assert_array_equal(runs[0][0], runs[2][0])  # frame 0 is the start image's latent, decoded


@pytest.fixture(scope="module")
def synthetic_cache(tmp_path_factory):
    from engine.train.config import UNetTrainConfig, load_train_config
    from engine.train.runtime import setup_dist
    from engine.train.world_trainer import load_or_build_cache
    from engine.worlds.synthetic import record_synthetic

    tmp = tmp_path_factory.mktemp("unet_cache")
    record_synthetic(tmp / "data", episodes=2, frames=30, height=64, width=64)
    cfg = load_train_config(
        UNetTrainConfig,
        None,
        [f"preset={PRESET}", f"data=[{tmp / 'data'}]", f"run.out_dir={tmp / 'run'}", "start_every=5"],
    )
    cache, vae = load_or_build_cache(cfg, load_preset(PRESET), setup_dist(cfg.run), 4)
    return cache, vae


def test_training_samples_are_consecutive_latents_and_their_actions(synthetic_cache):
    from engine.train.unet_batch import UNetSampler

    cache, _ = synthetic_cache
    sampler = UNetSampler(cache, 2)
    b = sampler.sample(64, torch.Generator().manual_seed(0))
    rows = torch.cat([cache.keyboard, cache.mouse], dim=1)
    for i in range(8):
        hits = [j for j in range(len(cache.latents)) if torch.equal(cache.latents[j].float(), b.target[i])]
        assert len(hits) == 1
        j = hits[0]
        ep = int((cache.ep_latent0 <= j).nonzero().max())
        p = j - int(cache.ep_latent0[ep])  # frame index in the episode (temporal 1)
        assert p >= 2
        torch.testing.assert_close(b.context[i], cache.latents[j - 2 : j].float())
        f = int(cache.ep_frame0[ep]) + p
        torch.testing.assert_close(b.actions[i], rows[f - 2 : f])


def test_start_samples_match_what_a_session_feeds_the_model(synthetic_cache):
    """Right after a start frame, training pads the context with the start frame encoded alone and gives
    zero actions before it, as `UNetWorldSession` does with its start image."""
    from engine.train.unet_batch import UNetSampler

    cache, vae = synthetic_cache
    sampler = UNetSampler(cache, 2)
    b = sampler.sample(32, torch.Generator().manual_seed(1), start_share=1.0)
    hits = 0
    for i in range(32):
        for c in range(cache.num_clips):
            start = cache.start_cond[c, 0].float()
            if torch.equal(b.context[i, 0], start) and torch.equal(b.context[i, 1], start):  # p = 1
                ep, j0 = cache.starts[c].tolist()
                f0 = int(cache.ep_frame0[ep]) + j0
                assert torch.equal(b.actions[i, 0], torch.zeros(6))
                torch.testing.assert_close(b.actions[i, 1], torch.cat([cache.keyboard[f0], cache.mouse[f0]]))
                hits += 1
                break
    assert hits > 0


def test_resume_continues_exactly(tmp_path):
    from engine.train.ckpt import load_weights
    from engine.train.config import UNetTrainConfig, load_train_config
    from engine.train.unet_trainer import train_unet
    from engine.worlds.synthetic import record_synthetic

    record_synthetic(tmp_path / "data", episodes=2, frames=20, height=64, width=64)
    base = [f"preset={PRESET}", f"data=[{tmp_path / 'data'}]", f"latents={tmp_path / 'lat'}",
            "run.batch_size=4", "run.steps=6", "run.progress=false", "run.log_every=1", "ema_start=0",
            "start_share=0.3", "own_context=0.5", "own_context_from=0.3"]  # fmt: skip
    train_unet(load_train_config(UNetTrainConfig, None, base + [f"run.out_dir={tmp_path / 'a'}"]))
    b = base + [f"run.out_dir={tmp_path / 'b'}"]
    train_unet(load_train_config(UNetTrainConfig, None, b + ["run.stop_after=3"]))
    train_unet(load_train_config(UNetTrainConfig, None, b))
    for name in ("model.safetensors", "ema.safetensors"):
        wa, wb = load_weights(tmp_path / "a" / name), load_weights(tmp_path / "b" / name)
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)


def test_a_new_session_goes_on_from_shipped_weights_at_their_step(tmp_path):
    """A run folder without state and `init`: the model starts as the init weights, and the run counts
    from `init_step` to run.steps (here 2 more steps)."""
    import json

    from engine.train.ckpt import load_weights
    from engine.train.config import UNetTrainConfig, load_train_config
    from engine.train.unet_trainer import train_unet
    from engine.worlds.synthetic import record_synthetic

    record_synthetic(tmp_path / "data", episodes=2, frames=20, height=64, width=64)
    base = [f"preset={PRESET}", f"data=[{tmp_path / 'data'}]", f"latents={tmp_path / 'lat'}",
            "run.batch_size=4", "run.progress=false", "run.log_every=1", "ema_start=0"]  # fmt: skip
    train_unet(
        load_train_config(UNetTrainConfig, None, base + ["run.steps=3", f"run.out_dir={tmp_path / 'a'}"])
    )
    init = tmp_path / "a" / "ema.safetensors"
    go_on = base + ["run.steps=5", f"init={init}", "init_step=3"]
    still = go_on + [f"run.out_dir={tmp_path / 'c'}", "run.lr=0", "run.weight_decay=0"]
    train_unet(load_train_config(UNetTrainConfig, None, still))  # lr 0: the weights stay the init's
    start = load_weights(tmp_path / "c" / "model.safetensors")
    for k, v in load_weights(init).items():
        torch.testing.assert_close(start[k], v, rtol=0, atol=0)
    go_on.append(f"run.out_dir={tmp_path / 'b'}")
    train_unet(load_train_config(UNetTrainConfig, None, go_on))
    steps = [json.loads(r)["step"] for r in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [4, 5]
    moved = load_weights(tmp_path / "b" / "model.safetensors")
    assert any(not torch.equal(moved[k], start[k]) for k in start)


def test_checkpoint_for_another_world_is_refused_in_one_line(tmp_path):
    from engine.checkpoint import CheckpointError, save_checkpoint
    from engine.model.causal_wan import CausalWanModel
    from engine.model.latent_unet import LatentUNet
    from engine.worlds.unet_session import load_unet_session

    dit_preset = load_preset("configs/train/presets/synthetic.yaml")
    save_checkpoint(tmp_path / "dit.safetensors", CausalWanModel(dit_preset.model), dit_preset)
    with pytest.raises(CheckpointError, match="not a latent U-Net world"):
        load_unet_session(PRESET, str(tmp_path / "dit.safetensors"))
    preset = load_preset(PRESET)
    wide = replace(preset, unet=replace(preset.unet, channels=(32, 64)))
    save_checkpoint(tmp_path / "wide.safetensors", LatentUNet(wide.unet, 16), wide)
    with pytest.raises(CheckpointError, match=r"unet.channels \[32, 64\] != \[32, 48\]") as e:
        load_unet_session(PRESET, str(tmp_path / "wide.safetensors"))
    assert "\n" not in str(e.value)


COARSE = dict(texture_scale=4, key_speed=4.0, mouse_speed=16.0)  # 4 px per frame: half a latent cell


def train_synthetic_unet(tmp_path, control: str, steps: int, vae_steps: int = 100):
    from engine.train.config import UNetTrainConfig, VAETrainConfig, load_train_config
    from engine.train.unet_trainer import train_unet
    from engine.train.vae_trainer import train_vae
    from tests._synthetic_helpers import record

    data = tmp_path / "data"
    record(data, episodes=12, frames=97, control=control, **COARSE)
    vae_cfg = load_train_config(
        VAETrainConfig, None,
        [f"preset={PRESET}", f"data=[{data}]", "crop=[0,0]", "clip_frames=3", "latent_noise=0.6",
         f"run.out_dir={tmp_path / 'vae'}", f"run.steps={vae_steps}", "run.batch_size=4", "run.lr=1e-3",
         "run.progress=false"],
    )  # fmt: skip
    train_vae(vae_cfg)
    text = (
        open(PRESET)
        .read()
        .replace("  temporal: 1\n", f"  temporal: 1\n  checkpoint: {tmp_path}/vae/model.safetensors\n")
    )
    preset_file = tmp_path / "synthetic_unet.yaml"
    preset_file.write_text(text)
    cfg = load_train_config(
        UNetTrainConfig, None,
        [f"preset={preset_file}", f"data=[{data}]", f"run.out_dir={tmp_path / 'world'}", f"run.steps={steps}",
         "run.batch_size=16", "run.lr=1e-3", "run.warmup_steps=20", "run.progress=false", "ema=0.98",
         "ema_start=50", "context_noise_max=0.3", "sampler_share=0.5"],
    )  # fmt: skip
    train_unet(cfg)
    return preset_file, tmp_path / "world" / "ema.safetensors"


@pytest.mark.slow  # not yet reliable at 1,000 steps: one of keys/mouse failed once (0.0350 vs 0.0357)
@pytest.mark.parametrize("control", ["keys", "mouse"])
def test_trained_unet_world_predicts_the_frame_the_action_makes(tmp_path, control):
    """Trained for 1,000 steps on the synthetic world (strafing or turning left moves the picture right),
    the model's prediction of the next frame from context and actions alone (sigma 5, the sampler's
    first level) is much closer to the real next frame with the true actions than with left and right
    swapped; with the action path cut (action_dropout 1) both would be the same. Rollouts of this
    small, briefly trained model are too noisy a judge (docs/training.md, the E1M1 world)."""
    from engine.edm import denoise
    from engine.train.latent_cache import load_latent_cache, vae_fingerprint
    from engine.train.unet_batch import UNetSampler
    from engine.worlds.unet_session import load_unet_session

    preset_file, weights = train_synthetic_unet(tmp_path, control, steps=1000)
    session = load_unet_session(str(preset_file), str(weights), dtype="fp32")
    p, vae = session.preset, session.vae
    cache = load_latent_cache(tmp_path / "world" / "latents", vae_fingerprint(vae.float(), p.vae), 64, 64)
    b = UNetSampler(cache, p.unet.context_frames).sample(256, torch.Generator().manual_seed(0))
    col = (2, 3) if control == "keys" else (5,)
    moving = b.actions[:, -1, list(col)].abs().sum(dim=1) > 0
    assert int(moving.sum()) >= 64
    swapped = b.actions.clone()
    if control == "keys":
        swapped[..., [2, 3]] = swapped[..., [3, 2]]
    else:
        swapped[..., 5] = -swapped[..., 5]
    noise = torch.randn(b.target.shape, generator=torch.Generator().manual_seed(1))
    sigma = torch.full((len(noise),), p.unet.sigma_max)
    errors = []
    for acts in (b.actions, swapped):
        with torch.no_grad():
            x_sigma = b.target + sigma[0] * noise
            level = torch.zeros(len(noise))
            x0, _ = denoise(session.model, x_sigma, sigma, b.context, level, acts, p.unet)
        errors.append(float((x0 - b.target)[moving].pow(2).mean()))
    assert errors[0] < 0.6 * errors[1], errors


def test_own_context_replaces_the_newest_frames_by_the_models_rollout(synthetic_cache):
    """With history 2 and share 1, the two newest context frames are the play-time sampler's rollout
    from the K frames before them under the recorded actions; share 0 keeps the real frames."""
    from engine.edm import karras_sigmas, sample_next
    from engine.train.unet_batch import UNetSampler, own_context

    cache, _ = synthetic_cache
    session = random_session()
    model, cfg = session.model, session.cfg
    k, sigmas = cfg.context_frames, karras_sigmas(cfg)
    batch = UNetSampler(cache, k, history=2).sample(3, torch.Generator().manual_seed(0))
    assert batch.context.shape[1] == k + 2
    kept = own_context(model, batch, k, 0.0, cfg, sigmas, torch.Generator())
    torch.testing.assert_close(kept.context, batch.context[:, 2:])
    torch.testing.assert_close(kept.actions, batch.actions[:, 2:])
    gen = torch.Generator().manual_seed(7)
    own = own_context(model, batch, k, 1.0, cfg, sigmas, gen)
    ref_gen = torch.Generator().manual_seed(7)
    torch.rand(3, generator=ref_gen)  # the share draw
    ctx = batch.context.clone()
    for j in range(2):
        ctx[:, k + j] = sample_next(
            model, ctx[:, j : j + k], torch.zeros(3), batch.actions[:, j : j + k], cfg, sigmas, ref_gen
        )
    torch.testing.assert_close(own.context, ctx[:, 2:])
    assert not torch.allclose(own.context[:, -1], batch.context[:, -1])
    torch.testing.assert_close(own.target, batch.target)


@pytest.mark.slow  # rank 1 aborted (SIGABRT, cause not found) in 1 of 3 full-suite runs; passes alone
def test_unet_training_on_two_processes_equals_one_with_the_global_batch(tmp_path):
    """`torchrun --nproc_per_node 2 -m engine.train unet` (CPU, gloo) with batch 2 per process trains
    what one process with batch 4 trains (fp32: only the summation order differs). Own-context rollouts
    use a per-rank generator, so they are off here."""
    import subprocess
    import sys

    from engine.train.ckpt import load_weights
    from engine.train.config import UNetTrainConfig, load_train_config
    from engine.train.unet_trainer import train_unet
    from engine.worlds.synthetic import record_synthetic

    record_synthetic(tmp_path / "data", episodes=2, frames=20, height=64, width=64)
    common = [f"preset={PRESET}", f"data=[{tmp_path / 'data'}]", f"latents={tmp_path / 'lat'}", "run.steps=4",
              "run.progress=false", "run.log_every=1", "run.bf16=false", "run.threads=1", "ema_start=0",
              "start_share=0.3"]  # fmt: skip
    train_unet(
        load_train_config(
            UNetTrainConfig, None, [*common, "run.batch_size=4", f"run.out_dir={tmp_path / 'one'}"]
        )
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "engine.train", "unet", *common, "run.batch_size=2",
           f"run.out_dir={tmp_path / 'two'}"]  # fmt: skip
    env = dict(__import__("os").environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-6000:]
    one, two = (
        load_weights(tmp_path / "one" / "model.safetensors"),
        load_weights(tmp_path / "two" / "model.safetensors"),
    )
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-5


def test_a_resumed_run_logs_every_step_once(tmp_path):
    """Rows an interrupted run logged after its last checkpoint are dropped when it resumes."""
    import json

    from engine.train.runtime import MetricsLog

    path = tmp_path / "metrics.jsonl"
    first = MetricsLog(path, True)
    for step in (10, 20, 30):
        first.write(step, loss=1.0)
    with open(path, "a") as f:
        f.write('{"step": 4')  # cut by a kill
    resumed = MetricsLog(path, True, resume_step=20)
    resumed.write(30, loss=0.5)
    rows = [json.loads(r) for r in path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30] and rows[-1]["loss"] == 0.5


def test_nan_weights_stop_the_session_with_one_line():
    from engine.worlds import NonFiniteLatents

    s = random_session(1)
    with torch.no_grad():
        next(s.model.parameters()).fill_(float("nan"))
    s.start(start_image(), seed=0)
    s.step(actions(1))  # block 0 is the start frame: no model call
    with pytest.raises(NonFiniteLatents, match="NaN/Inf latents") as e:
        s.step(actions(1))
    assert "\n" not in str(e.value)

"""World-model trainer contracts: exact resume, batches built like inference, clear errors on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

PRESET = "configs/train/presets/synthetic.yaml"


def world_cfg(data, out, *extra):
    from engine.train.config import WorldTrainConfig, load_train_config

    base = [f"preset={PRESET}", f"data=[{data}]", f"run.out_dir={out}", "run.batch_size=2", "run.log_every=1",
            "run.progress=false", "run.warmup_steps=2", "mode=autoregressive", "clip_latents=3",
            "context_latents=3", "curriculum_fraction=0.5"]  # fmt: skip
    return load_train_config(WorldTrainConfig, None, base + list(extra))


def losses(out) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_resume_gives_the_same_loss_curve(synthetic_data, tmp_path):
    from engine.train.world_trainer import train_world

    whole, split = tmp_path / "whole", tmp_path / "split"
    train_world(world_cfg(synthetic_data, whole, "run.steps=4"))
    train_world(world_cfg(synthetic_data, split, "run.steps=4", "run.ckpt_every=2", "run.stop_after=2"))
    assert len(losses(split)) == 2
    train_world(world_cfg(synthetic_data, split, "run.steps=4"))  # resumes from step 2
    assert losses(split) == losses(whole)
    from safetensors.torch import load_file

    a, b = load_file(str(whole / "ema.safetensors")), load_file(str(split / "ema.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_batch_matches_the_session_conditioning(synthetic_data, tmp_path):
    """Position 0 is the start image's own latent, cond is mask_latents of the condition stream."""
    from engine.conditioning import build_condition
    from engine.config import load_preset
    from engine.train.runtime import setup_dist
    from engine.train.world_batch import sample_batch
    from engine.train.world_trainer import cache_clip_latents, load_or_build_cache

    cfg = world_cfg(synthetic_data, tmp_path / "run")
    preset = load_preset(PRESET)
    cache, vae = load_or_build_cache(cfg, preset, setup_dist(cfg.run), cache_clip_latents(cfg, preset))
    batch = sample_batch(cache, 1, 6, 0, torch.Generator(), clips=[1])
    from engine.train.episodes import load_action_episodes

    ep_index, j0 = cache.starts[1].tolist()
    ep = load_action_episodes([str(synthetic_data)], 64, 64)[ep_index]
    image = torch.from_numpy(np.array(ep.frames[4 * j0])).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        want = build_condition(vae, image).next(6)  # what the session feeds the model
        clip = torch.from_numpy(np.array(ep.frames[4 * j0 : 4 * j0 + 21])).permute(0, 3, 1, 2)[None]
        z = vae.encode(clip.float() / 127.5 - 1)
    assert torch.allclose(batch.cond, want, atol=2e-2)  # cache stores bf16
    assert torch.allclose(batch.x0[:, 0], want[:, 0, 4:], atol=2e-2)
    assert torch.allclose(batch.x0[:, 1:], z[:, 1:], atol=0.1)  # continuous encode vs clip encode
    alone = sample_batch(cache, 1, 1, 0, torch.Generator(), clips=[1])  # latent 0 as a one-latent block
    assert torch.equal(alone.x0, batch.x0[:, :1]) and torch.equal(alone.mouse, batch.mouse[:, :1])


def test_empty_data_folder_is_an_error(tmp_path):
    from engine.train.world_trainer import train_world

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no episodes"):
        train_world(world_cfg(tmp_path / "empty", tmp_path / "out", "run.steps=1"))


def test_latent_cache_from_another_vae_is_an_error(synthetic_data, tmp_path):
    from engine.train.world_trainer import train_world

    out = tmp_path / "out"
    train_world(world_cfg(synthetic_data, out, "run.steps=1"))
    other = world_cfg(synthetic_data, tmp_path / "o2", "run.steps=1", "run.seed=5", f"latents={out}/latents")
    with pytest.raises(ValueError, match="another VAE"):  # a different random VAE (seed) -> other weights
        train_world(other)


def test_unknown_config_key_is_an_error(synthetic_data, tmp_path):
    with pytest.raises(ValueError, match="clip_latentz"):
        world_cfg(synthetic_data, tmp_path, "clip_latentz=3")


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    from engine.train.__main__ import main

    (tmp_path / "empty").mkdir()
    code = main(
        ["world", f"preset={PRESET}", f"data=[{tmp_path / 'empty'}]", f"run.out_dir={tmp_path / 'o'}"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data folder")


def test_first_block_steps_train_block_zero_alone(synthetic_data, tmp_path):
    """first_block=1: every step is positions 0..2 (the image latent in view), all noisy and trained."""
    from engine.config import load_preset
    from engine.scheduler import sampling_timesteps
    from engine.train.world_trainer import make_frame_plan, plan_sequence

    preset = load_preset(PRESET)
    few_t = sampling_timesteps(preset.sampler)
    fpb = preset.model.num_frame_per_block
    gen = torch.Generator().manual_seed(0)
    cfg = world_cfg(synthetic_data, tmp_path / "run", "first_block=1.0")
    for _ in range(5):
        start, n = plan_sequence(cfg, 2, fpb, 6, gen)
        assert (start, n) == (0, fpb)
        t, w = make_frame_plan(cfg, preset, 100, 2, gen, n, few_t)
        assert t.shape == (2, fpb) and bool((t > 0).all()) and bool((w == 1).all())
    cfg = world_cfg(synthetic_data, tmp_path / "run", "first_block=0.0")
    plans = {plan_sequence(cfg, 2, fpb, 6, gen) for _ in range(40)}
    assert plans == {(0, 6), (3, 6), (6, 6)}  # context + target sequences at every block offset
    t, w = make_frame_plan(cfg, preset, 10**6, 2, gen, 6, few_t)  # past the curriculum: context untrained
    assert bool((w[:, :3] == 0).all()) and bool((w[:, 3:] == 1).all())


def test_own_anchor_training_resumes_exactly(synthetic_data, tmp_path):
    """self_anchor + context noise reaching the anchors (anchor_inputs): the whole last_latent path,
    and its RNG, survive a resume."""
    from omegaconf import OmegaConf

    from engine.train.world_trainer import train_world

    preset = OmegaConf.load(PRESET)
    preset.condition = "last_latent"
    path = tmp_path / "last_latent.yaml"
    OmegaConf.save(preset, path)
    extra = [
        f"preset={path}",
        "self_anchor=1.0",
        "anchor_noise_max=0.1",
        "anchor_inputs=true",
        "context_noise_max=0.7",
        "curriculum_fraction=0",
        "run.steps=4",
    ]
    whole, split = tmp_path / "whole", tmp_path / "split"
    train_world(world_cfg(synthetic_data, whole, *extra))
    train_world(world_cfg(synthetic_data, split, *extra, "run.ckpt_every=2", "run.stop_after=2"))
    train_world(world_cfg(synthetic_data, split, *extra))
    assert losses(split) == losses(whole)
    assert all(np.isfinite(losses(whole)))


def test_anchor_inputs_need_a_last_latent_preset(synthetic_data, tmp_path):
    from engine.train.world_trainer import train_world

    with pytest.raises(ValueError, match="anchor_inputs needs condition last_latent"):
        train_world(world_cfg(synthetic_data, tmp_path / "run", "anchor_inputs=true"))

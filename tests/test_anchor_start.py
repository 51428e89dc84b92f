"""`from_anchor` training: the chosen frames' x_t is the noised anchor, exactly as a `start_from_anchor`
session builds it, and the flow-matching target's one-step x0 is the real latent."""

from __future__ import annotations

import pytest
import torch

from engine.conditioning import MASK_CHANNELS
from engine.scheduler import add_noise, training_target, x0_from_velocity
from engine.train.anchor_start import start_from_anchors
from engine.train.world_batch import WorldBatch

B, F, C, H, W = 6, 6, 4, 3, 5


def _batch(gen: torch.Generator) -> WorldBatch:
    x0 = torch.randn(B, F, C, H, W, generator=gen)
    cond = torch.randn(B, F, MASK_CHANNELS + C, H, W, generator=gen)
    return WorldBatch(x0, cond, torch.zeros(B, F, 12, 4), torch.zeros(B, F, 12, 2), start=3)


def test_chosen_frames_start_from_the_anchor_and_aim_at_the_real_latent():
    gen = torch.Generator().manual_seed(0)
    batch = _batch(gen)
    t = torch.full((B, F), 830.0)
    eps = torch.randn(B, F, C, H, W, generator=gen)
    weight = torch.cat([torch.zeros(B, 3), torch.ones(B, 3)], dim=1)  # clean context, then targets
    t2, noise = start_from_anchors(batch, t, eps, weight, torch.tensor([500.0, 250.0]), 1.0, gen)

    assert torch.equal(t2[:, :3], t[:, :3]) and torch.equal(noise[:, :3], eps[:, :3])  # context untouched
    assert set(t2[:, 3:].unique().tolist()) <= {500.0, 250.0}
    assert bool((t2[:, 3:] == t2[:, 3:4]).all())  # one sampler timestep per sample
    x_t = add_noise(batch.x0, noise, t2)
    anchor = batch.cond[:, :, MASK_CHANNELS:]
    played = add_noise(anchor, eps, t2)  # what a start_from_anchor session denoises
    assert torch.allclose(x_t[:, 3:], played[:, 3:], atol=1e-5)
    x0 = x0_from_velocity(x_t, training_target(batch.x0, noise), t2)
    assert torch.allclose(x0, batch.x0, atol=1e-5)  # the answer is the real latent


def test_share_picks_whole_samples():
    gen = torch.Generator().manual_seed(1)
    batch = _batch(gen)
    t = torch.full((B, F), 830.0)
    eps = torch.randn(B, F, C, H, W, generator=gen)
    weight = torch.ones(B, F)
    t0, n0 = start_from_anchors(batch, t, eps, weight, torch.tensor([500.0]), 0.0, gen)
    assert torch.equal(t0, t) and torch.equal(n0, eps)
    gen1 = torch.Generator().manual_seed(1)  # picks 3 of the 6 samples
    t5, n5 = start_from_anchors(batch, t, eps, weight, torch.tensor([500.0]), 0.5, gen1)
    moved = (t5 == 500.0).all(dim=1)
    assert bool(((t5 == 500.0) == moved[:, None]).all())  # a sample is moved whole or not at all
    assert 0 < int(moved.sum()) < B
    assert torch.equal(n5[~moved], eps[~moved])


def test_from_anchor_needs_a_preset_that_samples_from_the_anchor(synthetic_data, tmp_path):
    from engine.train.config import WorldTrainConfig, load_train_config
    from engine.train.world_trainer import train_world

    cfg = load_train_config(
        WorldTrainConfig,
        None,
        ["preset=configs/train/presets/synthetic.yaml", f"data=[{synthetic_data}]", f"run.out_dir={tmp_path}",
         "from_anchor=0.5"],
    )  # fmt: skip
    with pytest.raises(ValueError, match="start_from_anchor"):
        train_world(cfg)


def test_from_anchor_training_runs_and_resumes_exactly(synthetic_data, tmp_path):
    """The trainer path: one-step SDEdit preset, from_anchor on every sample, split run == whole run."""
    from omegaconf import OmegaConf

    from engine.train.world_trainer import train_world
    from tests.test_train_world import losses, world_cfg

    preset = OmegaConf.load("configs/train/presets/synthetic.yaml")
    preset.condition = "last_latent"
    preset.sampler.denoising_step_list, preset.sampler.start_from_anchor = [500], True
    path = tmp_path / "refine.yaml"
    OmegaConf.save(preset, path)
    extra = [f"preset={path}", "from_anchor=1.0", "curriculum_fraction=0", "run.steps=4"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    train_world(world_cfg(synthetic_data, whole, *extra))
    train_world(world_cfg(synthetic_data, split, *extra, "run.ckpt_every=2", "run.stop_after=2"))
    train_world(world_cfg(synthetic_data, split, *extra))
    assert losses(split) == losses(whole)
    plain = tmp_path / "plain"
    train_world(world_cfg(synthetic_data, plain, *extra[:1], "curriculum_fraction=0", "run.steps=4"))
    assert losses(plain) != losses(whole)  # the anchor start changes what is trained

"""`condition: last_latent` presets: each block is conditioned on the clean latent just before it, the
same way in the streaming session and in training batches."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.actions import ActionBlock
from engine.conditioning import MASK_CHANNELS, anchor_latents
from engine.config import load_preset
from tests._model_helpers import record_forward, synthetic_cache

PRESET = "configs/train/presets/synthetic.yaml"


def test_anchor_latents_repeat_the_anchor_and_mask_only_latent_zero():
    anchor = torch.randn(2, 1, 16, 4, 5)
    first, later = anchor_latents(anchor, 0, 3), anchor_latents(anchor, 3, 3)
    assert first.shape == later.shape == (2, 3, MASK_CHANNELS + 16, 4, 5)
    for cond in (first, later):
        assert all(torch.equal(cond[:, i, MASK_CHANNELS:], anchor[:, 0]) for i in range(3))
    assert bool((first[:, 0, :MASK_CHANNELS] == 1).all()) and bool((first[:, 1:, :MASK_CHANNELS] == 0).all())
    assert bool((later[:, :, :MASK_CHANNELS] == 0).all())


def test_unknown_condition_is_an_error():
    from engine.worlds.session import load_session

    preset = replace(load_preset(PRESET), condition="previous")
    with pytest.raises(ValueError, match="unknown condition 'previous'"):
        load_session(preset, dtype="fp32")


def test_session_conditions_each_block_on_its_previous_clean_latent():
    from engine.worlds.session import load_session

    torch.manual_seed(0)
    s = load_session(replace(load_preset(PRESET), condition="last_latent"), dtype="fp32")
    calls = record_forward(s)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    s.start(image, seed=0)
    image_latent = s.vae.encode(torch.from_numpy(image).permute(2, 0, 1)[None, None].float() / 127.5 - 1)
    rng = np.random.default_rng(1)
    passes = len(s.timesteps) + 1  # denoising passes + context pass
    for b in range(3):
        n = s.actions_needed
        s.step(
            ActionBlock(
                (rng.random((n, 4)) < 0.5).astype(np.float32), rng.normal(0, 0.1, (n, 2)).astype(np.float32)
            )
        )
        block = calls[b * passes : (b + 1) * passes]
        conds = {tuple(c[1].flatten()[:8].tolist()) for c in block}
        assert len(conds) == 1  # the same cond for every pass of a block
        cond = block[0][1]
        if b == 0:
            want = image_latent
            assert bool((cond[:, 0, :MASK_CHANNELS] == 1).all())
        else:
            context_x = calls[b * passes - 1][0]  # the previous block's context pass sees its clean x0
            want = context_x[:, -1:]
            assert bool((cond[:, :, :MASK_CHANNELS] == 0).all())
        for i in range(3):
            assert torch.allclose(cond[:, i, MASK_CHANNELS:], want[:, 0], atol=1e-5)


def test_training_batches_condition_on_the_latent_before_each_block(tmp_path):
    from engine.train.world_batch import noisy_anchors, sample_batch

    cache = synthetic_cache(tmp_path)
    gen = torch.Generator().manual_seed(0)
    for start in (0, 3):
        batch = sample_batch(cache, 2, 6, start, gen, condition="last_latent", frames_per_block=3)
        lat = batch.cond[:, :, MASK_CHANNELS:]
        if start == 0:
            assert all(torch.equal(lat[:, i], batch.x0[:, 0]) for i in range(3))  # the start image latent
        assert all(torch.equal(lat[:, i], batch.x0[:, 2]) for i in range(3, 6))  # block 1 sees latent 2
        noisy = noisy_anchors(batch, 3, 0.5, gen)
        changed = (noisy.cond - batch.cond).abs().amax(dim=(0, 2, 3, 4)) > 0  # per position
        assert changed.tolist() == [start > 0] * 3 + [True] * 3  # the exact start-image anchor stays clean


def test_noised_context_reaches_the_anchor_with_its_level_and_training_builds_the_same_conds():
    """With sampler.context_noise the context pass sees x0 noised to that level; the next block is
    anchored on exactly that latent with sigma in LEVEL_CHANNEL. `anchors_from_inputs`, the training
    form, rebuilds the same cond for the whole sequence from the context inputs."""
    from engine.conditioning import LEVEL_CHANNEL, anchors_from_inputs
    from engine.worlds.session import load_session

    torch.manual_seed(0)
    preset = load_preset(PRESET)
    preset = replace(preset, condition="last_latent", sampler=replace(preset.sampler, context_noise=200.0))
    s = load_session(preset, dtype="fp32")
    calls = record_forward(s)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    s.start(image, seed=0)
    passes, fpb = len(s.timesteps) + 1, s.frames_per_block
    rng = np.random.default_rng(1)
    for _ in range(3):
        n = s.actions_needed
        s.step(ActionBlock(np.zeros((n, 4), np.float32), rng.normal(0, 0.1, (n, 2)).astype(np.float32)))
    conds = [calls[b * passes][1] for b in range(3)]  # [1, F, 4 + C, h, w] per block
    ctx = [calls[(b + 1) * passes - 1] for b in range(3)]  # (x, cond, t) of each context pass
    assert all(bool((c[2] == 200.0).all()) for c in ctx)
    assert bool((conds[0][:, 1:, LEVEL_CHANNEL] == 0).all())  # block 0: the exact start image latent
    for b in (1, 2):
        assert torch.allclose(
            conds[b][:, :, MASK_CHANNELS:], ctx[b - 1][0][:, -1:].expand(-1, fpb, -1, -1, -1)
        )
        assert torch.allclose(conds[b][:, :, LEVEL_CHANNEL], torch.full_like(conds[b][:, :, 0], 0.2))
    x_seq = torch.cat([c[0] for c in ctx], dim=1)  # [1, 3F, C, h, w]
    t_seq = torch.cat([c[2] for c in ctx], dim=1)
    stale = torch.cat([conds[0]] + [torch.zeros_like(conds[0])] * 2, dim=1)
    rebuilt = anchors_from_inputs(stale, x_seq, t_seq, fpb)
    want = torch.cat([conds[0], conds[1], conds[2]], dim=1)
    want[:, :fpb] = stale[:, :fpb]
    assert torch.allclose(rebuilt, want, atol=1e-6)


def test_session_without_context_noise_is_unchanged_by_the_level_channel():
    """context_noise 0 (every shipped preset): anchors are the clean x0 and the level channel stays 0."""
    from engine.conditioning import LEVEL_CHANNEL
    from engine.worlds.session import load_session

    torch.manual_seed(0)
    s = load_session(replace(load_preset(PRESET), condition="last_latent"), dtype="fp32")
    calls = record_forward(s)
    s.start(np.zeros((64, 64, 3), np.uint8), seed=0)
    for _ in range(2):
        n = s.actions_needed
        s.step(ActionBlock(np.zeros((n, 4), np.float32), np.zeros((n, 2), np.float32)))
    passes = len(s.timesteps) + 1
    assert bool((calls[passes][1][:, :, LEVEL_CHANNEL] == 0).all())
    assert bool((calls[passes - 1][2] == 0).all())


def test_one_frame_blocks_start_from_the_exact_start_latent():
    """fpb 1 + last_latent: block 0 is the start image's latent (no denoising), and block 1 is anchored
    on exactly that latent, as training sees position 0."""
    from engine.worlds.session import load_session

    torch.manual_seed(0)
    preset = load_preset(PRESET)
    action = replace(preset.model.action, vae_time_compression_ratio=1)
    model = replace(preset.model, num_frame_per_block=1, local_attn_size=4, action=action)
    vae = replace(preset.vae, temporal=1)
    s = load_session(replace(preset, condition="last_latent", model=model, vae=vae), dtype="fp32")
    calls = record_forward(s)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    s.start(image, seed=0)
    start_latent = s._anchor.clone()
    zero = ActionBlock(np.zeros((1, 4), np.float32), np.zeros((1, 2), np.float32))
    s.step(zero)
    assert len(calls) == 1 and torch.equal(calls[0][0], start_latent)  # only the context pass ran
    s.step(zero)
    assert len(calls) == 1 + len(s.timesteps) + 1
    assert torch.equal(calls[1][1][:, :, MASK_CHANNELS:], start_latent)

"""`anchor_warp`: a last_latent block's anchor moved by the commanded turn and walk, the same way in the
streaming session and in training batches; and `self_anchor` training on the model's own context."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.actions import ActionBlock
from engine.anchor_warp import warp_anchor, warp_motion
from engine.conditioning import MASK_CHANNELS
from engine.config import AnchorWarpConfig, load_preset
from tests._model_helpers import record_forward, synthetic_cache

PRESET = "configs/train/presets/synthetic.yaml"
WARP = AnchorWarpConfig(yaw_px=3.5, zoom=0.03)


def warped_preset():
    return replace(load_preset(PRESET), condition="last_latent", anchor_warp=WARP)


def test_whole_pixel_shifts_move_columns_and_replicate_the_edge():
    anchor = torch.randn(1, 1, 3, 4, 8)
    out = warp_anchor(anchor, torch.tensor([[0.0, 2.0, -3.0]]), torch.ones(1, 3))
    assert torch.allclose(out[0, 0], anchor[0, 0], atol=1e-6)
    a = anchor[0, 0]
    right = torch.cat([a[..., :1], a[..., :1], a[..., :6]], dim=-1)  # content moved right by 2
    left = torch.cat([a[..., 3:], a[..., -1:].expand(-1, -1, 3)], dim=-1)  # moved left by 3
    assert torch.allclose(out[0, 1], right, atol=1e-5)
    assert torch.allclose(out[0, 2], left, atol=1e-5)


def test_zoom_keeps_the_centre_and_spreads_the_rest():
    anchor = torch.zeros(1, 1, 1, 9, 9)
    anchor[..., 4, 4] = 1.0
    anchor[..., 4, 6] = 1.0
    out = warp_anchor(anchor, torch.zeros(1, 1), torch.full((1, 1), 2.0))[0, 0, 0]
    assert out[4, 4] == pytest.approx(1.0, abs=1e-5)  # the centre stays
    assert out[4, 8] == pytest.approx(1.0, abs=1e-5)  # 2 columns right of centre -> 4 columns
    assert out[4, 6] == pytest.approx(0.0, abs=1e-5)


def test_motion_signs_follow_the_camera():
    kb = torch.zeros(1, 8, 4)
    kb[:, :, 0] = 1.0  # W held
    mouse = torch.zeros(1, 8, 2)
    mouse[:, :, 1] = 0.1  # turning right
    dx, scale = warp_motion(kb, mouse, [(0, 0), (0, 4), (4, 8)], WARP)
    assert torch.allclose(dx, torch.tensor([[0.0, -1.4, -1.4]]))  # turning right moves the image left
    assert torch.allclose(scale, torch.tensor([[1.0, 1.03**4, 1.03**4]]))  # walking forward zooms in


def test_warp_needs_last_latent():
    from engine.session import load_session

    with pytest.raises(ValueError, match="anchor_warp needs condition: last_latent"):
        load_session(replace(warped_preset(), condition="image"), dtype="fp32")


def test_session_warps_each_block_anchor_by_the_actions_since_it():
    from engine.session import load_session

    torch.manual_seed(0)
    s = load_session(warped_preset(), dtype="fp32")
    calls = record_forward(s)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    s.start(image, seed=0)
    passes = len(s.timesteps) + 1
    yaws = [0.2, -0.1, 0.05]  # per block, held every frame
    for b, yaw in enumerate(yaws):
        n = s.actions_needed
        kb = np.zeros((n, 4), np.float32)
        kb[:, 0] = b == 2  # W in the last block
        s.step(ActionBlock(kb, np.tile(np.float32([0.0, yaw]), (n, 1))))
    for b in (1, 2):
        cond = calls[b * passes][1][:, :, MASK_CHANNELS:]
        anchor = calls[b * passes - 1][0][:, -1:]  # the previous block's clean x0 (its context pass)
        # anchor latent 3b-1 ends at frame 12b-4, the previous block's last action; latent 3b+i ends at
        # frame 12b+4i, and this block's actions start at frame 12b-3: 1 frame of the old yaw, 3+4i new
        this = 3 + 4 * torch.arange(3.0)
        yaw_sum = yaws[b - 1] + this * yaws[b]
        walk = this if b == 2 else torch.zeros(3)
        want = warp_anchor(anchor, (-3.5 * yaw_sum)[None], (1.03**walk)[None])
        assert torch.allclose(cond, want, atol=1e-5)
        assert not torch.allclose(cond[:, 0], cond[:, 2], atol=1e-3)  # it moves within the block


def test_training_batches_warp_anchors_like_the_session(tmp_path):
    from engine.train.world_batch import sample_batch

    cache = synthetic_cache(tmp_path)
    clips = [0, cache.num_clips - 1]
    for start in (0, 3):
        plain = sample_batch(cache, 2, 6, start, torch.Generator(), clips=clips, condition="last_latent")
        batch = sample_batch(
            cache, 2, 6, start, torch.Generator(), clips=clips, condition="last_latent", warp=WARP
        )
        assert torch.equal(plain.x0, batch.x0)
        assert torch.allclose(plain.cond[:, :, :MASK_CHANNELS], batch.cond[:, :, :MASK_CHANNELS])
        for k, c in enumerate(clips):
            ep, j0 = cache.starts[c].tolist()
            frame0 = int(cache.ep_frame0[ep]) + 4 * j0  # the clip's frame 0 in the cache
            for i in range(6):
                p = start + i
                a = max(0, p // 3 * 3 - 1)  # the anchor latent: the last one before p's block
                rows = slice(frame0 + 4 * a, frame0 + 4 * p)
                dx = -3.5 * float(cache.mouse[rows, 1].sum())
                fwd = float((cache.keyboard[rows, 0] - cache.keyboard[rows, 1]).sum())
                anchor = plain.cond[k : k + 1, i : i + 1, MASK_CHANNELS:]
                want = warp_anchor(anchor, torch.tensor([[dx]]), torch.tensor([[1.03**fwd]]))
                assert torch.allclose(batch.cond[k, i, MASK_CHANNELS:], want[0, 0], atol=1e-5)
        if start == 0:
            assert torch.allclose(batch.cond[:, 0, MASK_CHANNELS:], batch.x0[:, 0], atol=1e-5)


def test_own_context_swaps_the_context_and_the_target_anchor(tmp_path):
    from engine.model.causal_wan import CausalWanModel
    from engine.train.self_anchor import own_context
    from engine.train.world_batch import sample_batch

    cache = synthetic_cache(tmp_path)
    preset = warped_preset()
    torch.manual_seed(0)
    model = CausalWanModel(preset.model).eval()
    batch = sample_batch(cache, 3, 6, 3, torch.Generator().manual_seed(2), condition="last_latent", warp=WARP)
    ts = torch.tensor([1000.0, 500.0])
    same = own_context(model, batch, 3, 0.0, ts, torch.Generator().manual_seed(0))
    assert torch.equal(same.x0, batch.x0) and torch.equal(same.cond, batch.cond)
    own = own_context(model, batch, 3, 1.0, ts, torch.Generator().manual_seed(0))
    assert torch.equal(own.x0[:, 3:], batch.x0[:, 3:])  # targets stay real
    assert not torch.allclose(own.x0[:, :3], batch.x0[:, :3], atol=1e-3)  # context is the model's
    assert torch.equal(own.cond[:, :3], batch.cond[:, :3])  # the context block keeps its real anchor
    dx, scale = (m[:, 3:] for m in batch.warp)
    want = warp_anchor(own.x0[:, 2:3], dx, scale)
    assert torch.allclose(own.cond[:, 3:, MASK_CHANNELS:], want, atol=1e-5)
    assert torch.equal(own.cond[:, :, :MASK_CHANNELS], batch.cond[:, :, :MASK_CHANNELS])


def test_start_from_anchor_noises_the_warped_anchor_instead_of_pure_noise():
    from engine.scheduler import add_noise
    from engine.session import load_session

    preset = warped_preset()
    sampler = replace(preset.sampler, denoising_step_list=(500, 250), start_from_anchor=True)
    torch.manual_seed(0)
    s = load_session(replace(preset, sampler=sampler), dtype="fp32")
    calls = record_forward(s)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    s.start(image, seed=3)
    n = s.actions_needed
    s.step(ActionBlock(np.zeros((n, 4), np.float32), np.tile(np.float32([0.0, 0.2]), (n, 1))))
    x, cond, t = calls[0]
    assert torch.all(t == 500)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))  # the session's first draw
    want = add_noise(cond[:, :, MASK_CHANNELS:], noise, t)
    assert torch.allclose(x, want, atol=1e-5)


def test_start_from_anchor_needs_last_latent():
    from engine.session import load_session

    preset = load_preset(PRESET)
    bad = replace(preset, sampler=replace(preset.sampler, start_from_anchor=True))
    with pytest.raises(ValueError, match="start_from_anchor needs condition: last_latent"):
        load_session(bad, dtype="fp32")


def test_a_checkpoint_trained_with_another_conditioning_is_refused(tmp_path):
    from engine.checkpoint import CheckpointError, save_checkpoint
    from engine.model.causal_wan import CausalWanModel
    from engine.session import load_session

    preset = warped_preset()
    path = tmp_path / "warped.safetensors"
    save_checkpoint(path, CausalWanModel(preset.model), preset)
    load_session(preset, checkpoint=str(path), dtype="fp32")  # the preset it was trained with
    plain = replace(preset, anchor_warp=AnchorWarpConfig())
    with pytest.raises(CheckpointError, match=r"anchor_warp .*yaw_px': 3.5.* != .*yaw_px': 0.0"):
        load_session(plain, checkpoint=str(path), dtype="fp32")
    with pytest.raises(CheckpointError, match="condition last_latent != image"):
        load_session(replace(plain, condition="image"), checkpoint=str(path), dtype="fp32")

"""Action windowing and frame counts from the config: the official rule (ratio 4) and ratio 1."""

import pytest
import torch

from engine.actions import OFFICIAL, Windowing, gather_windows, preset_windowing, window_indices
from engine.config import load_preset, preset_from_dict, preset_to_dict

PER_FRAME = Windowing(temporal=1, windows=3)


def test_ratio_one_windows_match_a_hand_computed_table():
    # latent f ends at video frame f and sees frames [f - 3, f), clamped to >= 0
    table = [[0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4]]
    assert window_indices(0, 6, PER_FRAME).tolist() == table
    assert window_indices(4, 2, PER_FRAME).tolist() == table[4:]
    assert PER_FRAME.window_frames == 3


def test_official_windows_are_unchanged():
    assert OFFICIAL.window_frames == 12
    assert window_indices(5, 1, OFFICIAL).tolist() == [list(range(8, 20))]  # [4f - 12, 4f)


@pytest.mark.parametrize(
    ("w", "counts", "video", "history"),
    [(OFFICIAL, [9, 12, 12], [1, 5, 9, 21], 24), (PER_FRAME, [3, 3, 3], [1, 2, 3, 6], 6)],
)
def test_frame_counts(w, counts, video, history):
    assert [w.block_frames(b, 3) for b in range(3)] == counts
    assert [w.video_frames(n) for n in (1, 2, 3, 6)] == video
    assert w.history_frames(3) == history


@pytest.mark.parametrize("w", [OFFICIAL, PER_FRAME])
def test_a_history_of_history_frames_gives_the_full_windows(w):
    """Streaming: keeping only `history_frames` actions, block by block, gives the windows of the
    whole action sequence (what training gathers)."""
    fpb, blocks = 3, 6
    total = sum(w.block_frames(b, fpb) for b in range(blocks))
    actions = torch.arange(total, dtype=torch.float32)[None, :, None]  # [1, T, 1] action = frame index
    kept, first, used = actions[:, :0], 0, 0
    for b in range(blocks):
        n = w.block_frames(b, fpb)
        kept, used = torch.cat([kept, actions[:, used : used + n]], dim=1), used + n
        drop = max(0, kept.shape[1] - w.history_frames(fpb))
        kept, first = kept[:, drop:], first + drop
        streamed = gather_windows(kept, first, b * fpb, fpb, w)
        assert torch.equal(streamed, gather_windows(actions, 0, b * fpb, fpb, w))


def test_preset_windowing_reads_the_config():
    assert preset_windowing(load_preset("tiny")) == OFFICIAL
    data = preset_to_dict(load_preset("tiny"))
    data["model"]["action"]["windows_size"] = 2
    assert preset_windowing(preset_from_dict(data)) == Windowing(4, 2)


def test_action_ratio_must_match_the_vae():
    data = preset_to_dict(load_preset("tiny"))
    data["vae"]["temporal"] = 1
    with pytest.raises(ValueError, match="vae_time_compression_ratio 4 != vae.temporal 1"):
        preset_from_dict(data)
    data["model"]["action"]["vae_time_compression_ratio"] = 1
    assert preset_windowing(preset_from_dict(data)) == PER_FRAME


def test_a_ratio_one_session_steps_frames_per_block_frames():
    """End to end: a preset on a per-frame tiny VAE (vae.temporal 1) plays F frames per block."""
    import numpy as np

    from engine.actions import ActionBlock
    from engine.worlds import build_world

    data = preset_to_dict(load_preset("tiny"))
    data["vae"] = {"kind": "tiny", "base_dim": 8, "dim_mult": [1, 2, 2], "num_res_blocks": 1, "temporal": 1}
    data["model"]["action"]["vae_time_compression_ratio"] = 1
    data["model"]["image_context_dim"], data["image_encoder"] = None, {"kind": "none"}
    world = build_world(preset_from_dict(data, "tiny-per-frame"), dtype="fp32")
    assert world.spec.block_frames == 3 and world.history == 6
    frames = world.generate(np.zeros((32, 64, 3), np.uint8), ActionBlock.idle(10, 4, True), seed=0)
    assert frames.shape == (10, 32, 64, 3)  # 4 blocks of 3, the last one cut to the 10 asked for

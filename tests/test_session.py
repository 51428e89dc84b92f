"""The streaming session (KV caches, ring buffers, streamed condition encode and decode) against a
reference built from the uncached full-sequence model and whole-video VAE encode/decode."""

import numpy as np
import pytest
import torch

from engine.actions import ActionBlock, gather_windows
from engine.conditioning import frames_to_uint8, mask_latents
from engine.scheduler import sample
from engine.worlds.session import WorldModelSession, load_session

BLOCKS = 3


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Re-randomise every parameter: zero-initialised heads and projections would hide bugs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.fixture(scope="module")
def session() -> WorldModelSession:
    s = load_session("tiny", dtype="fp32")
    _randomize(s.model, 0)
    return s


def _image(s: WorldModelSession, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (s.spec.height, s.spec.width, 3), dtype=np.uint8)


def _actions(s: WorldModelSession, frames: int, seed: int = 0) -> ActionBlock:
    rng = np.random.default_rng(seed)
    kb = (rng.random((frames, s.spec.keyboard_dim)) < 0.4).astype(np.float32)
    mouse = rng.normal(0, 0.1, (frames, 2)).astype(np.float32)
    return ActionBlock(kb, mouse)


def _reference(s: WorldModelSession, image: np.ndarray, actions: ActionBlock, seed: int) -> np.ndarray:
    """The session's algorithm on the uncached full-sequence path: every block re-runs all frames.

    The sampler itself (`engine.scheduler.sample`, tested in test_scheduler) is shared with the session:
    what is compared here is the cached, streamed model and VAE against the uncached ones."""
    model, vae, f, r = s.model, s.vae, s.frames_per_block, s.temporal
    n_lat = BLOCKS * f
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    video = torch.cat([pixels[:, None], torch.zeros(1, r * (n_lat - 1), *pixels.shape[1:])], dim=1)
    cond_all = mask_latents(vae.encode(video), 0)  # [1, n_lat, 20, h, w]
    context = s.image_encoder.encode(pixels)
    kb = gather_windows(torch.from_numpy(actions.keyboard)[None], 0, 0, n_lat, s.windowing)
    mouse = gather_windows(torch.from_numpy(actions.mouse)[None], 0, 0, n_lat, s.windowing)
    gen = torch.Generator().manual_seed(seed)
    clean: list[torch.Tensor] = []
    h, w = s.latent_hw
    for b in range(BLOCKS):
        end = (b + 1) * f

        def velocity(x: torch.Tensor, t: torch.Tensor, end: int = end) -> torch.Tensor:
            seq = torch.cat(clean + [x], dim=1)  # [1, end, C, h, w]: clean context, then the block
            tt = torch.cat([torch.zeros(1, end - f), t], dim=1)
            return model(seq, cond_all[:, :end], tt, context, mouse[:, :end], kb[:, :end])[:, -f:]

        noise = torch.randn(1, f, 16, h, w, generator=gen)
        clean.append(sample(s.preset.sampler.kind, velocity, noise, s.timesteps, gen))
    return frames_to_uint8(vae.decode(torch.cat(clean, dim=1)))


def test_block_frame_counts_and_shapes(session):
    session.start(_image(session), seed=3)
    counts = []
    for _ in range(3):
        n = session.actions_needed
        frames = session.step(ActionBlock.idle(n, session.spec.keyboard_dim, True))
        assert frames.dtype == np.uint8 and frames.shape == (n, session.spec.height, session.spec.width, 3)
        counts.append(n)
    assert counts == [9, 12, 12] and session.block_index == 3


def test_streaming_session_equals_uncached_reference(session):
    image, actions = _image(session, 1), _actions(session, 9 + 12 * (BLOCKS - 1), 1)
    streamed = session.generate(image, actions, seed=7)
    with torch.no_grad():
        reference = _reference(session, image, actions, seed=7)
    assert streamed.shape == reference.shape
    diff = np.abs(streamed.astype(int) - reference.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01, (diff.max(), diff.mean())
    assert streamed.std() > 5  # not a flat image


def test_same_seed_same_frames_and_actions_matter(session):
    image, actions = _image(session, 2), _actions(session, 21, 2)
    a = session.generate(image, actions, seed=11)
    b = session.generate(image, actions, seed=11)
    assert np.array_equal(a, b)
    other = _actions(session, 21, 3)
    c = session.generate(image, other, seed=11)
    assert not np.array_equal(a[9:], c[9:])  # later frames respond to the actions
    d = session.generate(image, actions, seed=12)
    assert not np.array_equal(a, d)


def test_bad_input_errors(session):
    with pytest.raises(ValueError, match="start image"):
        session.start(np.zeros((10, 10, 3), np.uint8))
    session.start(_image(session))
    with pytest.raises(ValueError, match="9 video frames"):
        session.step(ActionBlock.idle(12, session.spec.keyboard_dim, True))
    with pytest.raises(ValueError, match="keyboard"):
        session.step(ActionBlock.idle(9, 7, True))
    with pytest.raises(ValueError, match="unknown preset"):
        load_session("no-such-preset")

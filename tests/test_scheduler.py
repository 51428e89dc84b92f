import pytest
import torch

from engine import scheduler as S


def test_warped_timesteps_match_official():
    assert torch.allclose(
        S.warp_timesteps([1000, 666, 333]), torch.tensor([1000.0, 908.84, 713.98]), atol=0.01
    )
    assert torch.allclose(
        S.warp_timesteps([1000, 750, 500, 250]), torch.tensor([1000.0, 937.5, 833.33, 625.0]), atol=0.01
    )


def test_sigma_table_shift5_extra_step():
    sig = S.make_sigmas(1000, shift=5.0)
    assert sig.shape == (1000,)
    assert sig[0] == 1.0
    assert abs(float(sig[-1]) - 0.004980) < 1e-5  # s = 0.001 -> 5s / (1 + 4s)
    assert bool((sig[1:] < sig[:-1]).all())


def test_add_noise_and_x0_roundtrip():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 3, 4, 5, 6, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([[1000.0, 500.0, 10.0], [0.0, 250.0, 908.84]])
    xt = S.add_noise(x0, noise, t)
    v = S.training_target(x0, noise)
    assert torch.allclose(S.x0_from_velocity(xt, v, t), x0, atol=1e-5)
    assert torch.allclose(xt[0, 0], noise[0, 0]) and torch.allclose(xt[1, 0], x0[1, 0])


def test_training_weights_normalised():
    w = S.training_weights()
    assert abs(float(w.mean()) - 1.0) < 1e-6 and float(w.min()) == 0.0
    t = S.sample_train_timesteps((4, 6), generator=torch.Generator().manual_seed(1))
    assert t.shape == (4, 6) and float(t.min()) >= 4.97 and float(t.max()) <= 1000.0
    assert S.training_weight(t).shape == (4, 6)


@pytest.mark.parametrize("sampler", ["x0", "euler"])
def test_samplers_recover_exact_x0_with_oracle_velocity(sampler):
    """With the true velocity of a point mass at x0, both samplers must land exactly on x0."""
    g = torch.Generator().manual_seed(0)
    target = torch.randn(1, 3, 4, 2, 2, generator=g)
    noise = torch.randn(target.shape, generator=g)
    ts = S.warp_timesteps([1000, 666, 333])

    def oracle(x, t):  # v = (x_t - x0) / sigma
        return (x - target) / S._expand(S.sigma_of(t), x).to(x.dtype)

    out = S.sample_x0_renoise(oracle, noise, ts, g) if sampler == "x0" else S.sample_euler(oracle, noise, ts)
    assert torch.allclose(out, target, atol=1e-5)

"""The two-stochastic-layer model: gradient checks, bounds, exact log p(x), active units, checkpoints."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae.checkpoint import load_checkpoint, save_checkpoint
from minivae.evaluate import active_units_per_layer, log_likelihood
from minivae.two_layer import TwoLayerVAE
from tests.backends import BACKENDS
from tests.gradcheck import check_loss_gradients, draw_x


def small(backend="numpy", likelihood="bernoulli", seed=0, h1=2, h2=2, x_dim=4, dtype="float64"):
    return TwoLayerVAE(x_dim=x_dim, h1_dim=h1, h2_dim=h2, x_hidden=(3,), h_hidden=(3,),
                       likelihood=likelihood, dtype=dtype, seed=seed, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("objective,likelihood", [
    ("elbo", "bernoulli"), ("mc_elbo", "bernoulli"), ("iwae", "bernoulli"),
    ("iwae", "gaussian_learned"), ("elbo", "gaussian")])
@given(k=st.integers(1, 3), b=st.integers(1, 3), beta=st.sampled_from([1.0, 0.5]),
       seed=st.integers(0, 2**32 - 1))
def test_two_layer_gradients_match_finite_differences(backend, objective, likelihood, k, b, beta, seed):
    if objective == "iwae" and k == 1:
        k = 3
    model = small(backend, likelihood, seed=seed % 1000)
    check_loss_gradients(model, objective, likelihood, k, b, beta, np.random.default_rng(seed),
                         label="two layers: ")


def test_iwae_at_k1_equals_mc_elbo_and_log_weights_agree():
    rng = np.random.default_rng(0)
    model = small(seed=1)
    x = draw_x(rng, "bernoulli", 5, 4)
    eps = rng.standard_normal((1, 5, 4))
    np.testing.assert_allclose(model.bound(x, "iwae", 1, eps=eps), model.bound(x, "mc_elbo", 1, eps=eps))
    eps = rng.standard_normal((6, 5, 4))
    log_w = model.log_weights(x, eps)
    np.testing.assert_allclose(model.bound(x, "mc_elbo", 6, eps=eps), log_w.mean(0), rtol=1e-12)
    lme = np.log(np.exp(log_w).mean(0))
    np.testing.assert_allclose(model.bound(x, "iwae", 6, eps=eps), lme, rtol=1e-12)


def test_closed_form_top_kl_has_the_same_mean_as_monte_carlo():
    rng = np.random.default_rng(1)
    model = small(seed=2)
    x = draw_x(rng, "bernoulli", 3, 4)
    eps = rng.standard_normal((200_000, 3, 4))
    elbo = model.bound(x, "elbo", 200_000, eps=eps)
    mc = model.bound(x, "mc_elbo", 200_000, eps=eps)
    assert np.all(np.abs(elbo - mc) < 0.03), (elbo, mc)


def exact_log_px_two_layer(model, x, n=1201, half_width=20.0):
    """log p(x) = log double integral p(x|h1) p(h1|h2) p(h2) dh1 dh2, for h1, h2 one-dimensional."""
    t = np.linspace(-half_width, half_width, n)
    dt = t[1] - t[0]
    h1 = t[:, None, None]                                           # (n, 1, 1)
    log_px_h1, _ = model.likelihood.forward(x, model.px.forward(h1)[0])          # (n, B)
    mup, lvp = model.prior_h1(t[:, None])                            # (n2, 1) each
    log_p_h1_h2 = -0.5 * (np.log(2 * np.pi) + lvp.T + (t[:, None] - mup.T) ** 2 * np.exp(-lvp.T))
    log_p_h2 = -0.5 * (np.log(2 * np.pi) + t ** 2)                   # (n2,)
    log_f = log_px_h1[:, None, :] + (log_p_h1_h2 + log_p_h2[None, :])[:, :, None]  # (n1, n2, B)
    m = log_f.max(axis=(0, 1))
    return m + np.log(np.exp(log_f - m).sum(axis=(0, 1)) * dt * dt)


def test_estimator_approaches_exact_log_px_of_a_two_layer_model():
    model = small(seed=3, h1=1, h2=1, x_dim=3)
    rng = np.random.default_rng(3)
    for p in model.params.values():
        p[...] = 0.5 * rng.standard_normal(p.shape)
    x = np.array([[(i >> j) & 1 for j in range(3)] for i in range(8)], dtype=float)
    log_px = exact_log_px_two_layer(model, x)
    np.testing.assert_allclose(np.exp(log_px).sum(), 1.0, rtol=1e-4)       # a distribution over x
    gaps = []
    for k in (1, 20, 2000):
        est = np.mean([log_likelihood(model, x, k, rng) for _ in range(20)], axis=0)
        gaps.append(log_px.mean() - est.mean())
    assert gaps[0] > gaps[1] > gaps[2] > -0.01, gaps        # L_1 <= L_20 <= L_2000 <= log p(x)
    assert gaps[2] < 0.15 * gaps[0], gaps


def test_active_units_per_layer_and_sampling_shapes():
    model = TwoLayerVAE(x_dim=6, h1_dim=4, h2_dim=3, x_hidden=(5,), h_hidden=(5,), seed=0)
    W = model.params["q1.1.W"]
    W[:, 2:4] = 0                                # h1 means of units 2, 3 ignore x
    W[:, 0:2] *= 30
    model.params["q1.1.b"][...] = 0
    model.params["q2.1.W"][:, :3] = 0            # every h2 mean is constant
    x = (np.random.default_rng(0).random((300, 6)) < 0.5).astype(np.float32)
    assert active_units_per_layer(model, x) == [2, 0]
    assert model.sample(5).shape == (5, 6) and model.reconstruct(x[:3]).shape == (3, 6)


def test_two_layer_checkpoint_round_trip(tmp_path):
    model = TwoLayerVAE(x_dim=8, h1_dim=3, h2_dim=2, x_hidden=(5,), h_hidden=(4,), seed=4)
    path = save_checkpoint(tmp_path / "c.npz", model)
    loaded, opt, _ = load_checkpoint(path)
    assert isinstance(loaded, TwoLayerVAE) and opt is None and loaded.config == model.config
    for n, p in model.params.items():
        np.testing.assert_array_equal(loaded.params[n], p)


def test_paper_sizes():
    model = TwoLayerVAE()
    sizes = {n: m.sizes for n, m in model.networks.items()}
    assert sizes == {"q1": (784, 200, 200, 200), "q2": (100, 100, 100, 100),
                     "p1": (50, 100, 100, 200), "px": (100, 200, 200, 784)}

"""Each model's forward written once: the log-weight terms, their backward, the score, the layers.

The loss-level checks (tests/test_model.py, tests/test_two_layer.py) see the log-weight backward
only through one reduction's upstream gradient; here it gets arbitrary upstream gradients on both
terms, with the latent term sampled or in closed form, on both models.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae import gaussian as G
from minivae.backend import to_host
from minivae.model import VAE
from minivae.two_layer import TwoLayerVAE
from tests.backends import BACKENDS
from tests.gradcheck import draw_x, numeric_param_grads


def make(kind, backend="numpy", likelihood="bernoulli", seed=0):
    if kind == "vae":
        return VAE(x_dim=4, latent_dim=2, encoder_hidden=(3,), decoder_hidden=(3,),
                   likelihood=likelihood, dtype="float64", seed=seed, backend=backend)
    return TwoLayerVAE(x_dim=4, h1_dim=2, h2_dim=2, x_hidden=(3,), h_hidden=(3,),
                       likelihood=likelihood, dtype="float64", seed=seed, backend=backend)


def draws(model, rng, k, b, likelihood="bernoulli"):
    be = model.backend
    x = be.asarray(draw_x(rng, likelihood, b, model.x_dim), np.float64)
    eps = be.asarray(rng.standard_normal((k, b, model.eps_dim)), np.float64)
    return x, eps


def made_and_drawn(kind, seed, k, b):
    model = make(kind, seed=seed)
    return (model, *draws(model, np.random.default_rng(seed), k, b))


def log_q_at(model, x, samples):
    """log q(z|x) (K, B) at fixed samples, through the models' public encoders only."""
    mu, logvar = model.encode(x)
    log_q, _ = G.log_normal_forward(samples[0], mu, logvar)
    if len(samples) == 2:                                          # q(h2|h1), h1 held fixed
        mu2, logvar2 = model.encode_h2(samples[0])
        log_q = log_q + G.log_normal_forward(samples[1], mu2, logvar2)[0]
    return log_q


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,likelihood", [("vae", "bernoulli"), ("vae", "gaussian"),
                                             ("vae", "gaussian_learned"), ("two_layer", "bernoulli"),
                                             ("two_layer", "gaussian_learned")])
@pytest.mark.parametrize("analytic_kl", [False, True])
@given(k=st.integers(1, 3), b=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_log_weight_backward_matches_finite_differences(backend, kind, likelihood, analytic_kl,
                                                        k, b, seed):
    rng = np.random.default_rng(seed)
    model = make(kind, backend, likelihood, seed % 1000)
    x, eps = draws(model, rng, k, b, likelihood)
    x0, eps0 = to_host(x).copy(), to_host(eps).copy()
    log_px, log_latent, cache = model.log_weight_terms(x, eps, analytic_kl)
    assert log_px.shape == (k, b)
    # the latent term is (B,) only where the whole latent part is in closed form (the one-layer KL)
    assert log_latent.shape == ((b,) if analytic_kl and kind == "vae" else (k, b))
    dlog_px = model.backend.asarray(rng.standard_normal(log_px.shape), np.float64)
    dlog_latent = model.backend.asarray(rng.standard_normal(log_latent.shape), np.float64)
    grads = model.log_weight_backward(dlog_px, dlog_latent, cache)
    assert set(grads) == set(model.params)
    np.testing.assert_array_equal(to_host(x), x0)
    np.testing.assert_array_equal(to_host(eps), eps0)

    def surrogate():
        lp, ll, _ = model.log_weight_terms(x, eps, analytic_kl)
        return (lp * dlog_px).sum() + (ll * dlog_latent).sum()
    numeric = numeric_param_grads(model, surrogate)
    for n in model.params:
        np.testing.assert_allclose(to_host(grads[n]), numeric[n], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{kind}/{likelihood}/analytic_kl={analytic_kl}: d{n}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["vae", "two_layer"])
@given(k=st.integers(1, 3), b=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_score_backward_is_the_gradient_of_log_q_at_fixed_samples(backend, kind, k, b, seed):
    rng = np.random.default_rng(seed)
    model = make(kind, backend, seed=seed % 1000)
    x, eps = draws(model, rng, k, b)
    _, _, cache = model.log_weight_terms(x, eps)
    samples = [layer.sample.copy() for layer in model.latent_layers(cache)]   # held fixed
    dlog_q = model.backend.asarray(rng.standard_normal((k, b)), np.float64)
    grads = model.score_backward(dlog_q, cache)
    inference = {n for n in model.params if n.split(".")[0] in model.inference_networks}
    assert set(grads) == inference and inference
    numeric = numeric_param_grads(model, lambda: (log_q_at(model, x, samples) * dlog_q).sum())
    for n, g in numeric.items():
        expected = to_host(grads[n]) if n in grads else np.zeros_like(g)   # p's parameters: 0
        np.testing.assert_allclose(expected, g, rtol=1e-5, atol=1e-6, err_msg=f"{kind}: d{n}")


@pytest.mark.parametrize("kind", ["vae", "two_layer"])
def test_log_weights_are_the_two_terms_and_the_bound_reduces_them(kind):
    model, x, eps = made_and_drawn(kind, seed=2, k=4, b=3)
    log_px, log_latent, _ = model.log_weight_terms(x, eps)
    np.testing.assert_allclose(model.log_weights(x, eps), log_px + log_latent, rtol=1e-12)
    for beta in (1.0, 0.3):
        log_w = log_px + beta * log_latent
        np.testing.assert_allclose(model.bound(x, "mc_elbo", 4, beta, eps=eps), log_w.mean(0),
                                   rtol=1e-12)
        m = log_w.max(0)
        np.testing.assert_allclose(model.bound(x, "iwae", 4, beta, eps=eps),
                                   m + np.log(np.exp(log_w - m).mean(0)), rtol=1e-12)
    log_px_a, log_latent_a, _ = model.log_weight_terms(x, eps, analytic_kl=True)
    np.testing.assert_array_equal(log_px_a, log_px)                # only the latent term changes
    np.testing.assert_allclose(model.bound(x, "elbo", 4, eps=eps),
                               (log_px + log_latent_a).mean(0), rtol=1e-12)


@pytest.mark.parametrize("kind", ["vae", "two_layer"])
def test_latent_layers_are_what_the_forward_drew(kind):
    model, x, eps = made_and_drawn(kind, seed=1, k=3, b=2)
    _, _, cache = model.log_weight_terms(x, eps)
    layers = model.latent_layers(cache)
    mu, logvar = model.encode(x)
    np.testing.assert_array_equal(layers[0].mu, mu)
    np.testing.assert_allclose(layers[0].sample, mu + np.exp(logvar / 2) * eps[..., :mu.shape[-1]],
                               rtol=1e-12)
    if kind == "vae":
        assert [l.name for l in layers] == ["z"] and layers[0].prior is None
        return
    assert [l.name for l in layers] == ["h1", "h2"] and layers[1].prior is None
    mu2, logvar2 = model.encode_h2(layers[0].sample)
    np.testing.assert_array_equal(layers[1].mu, mu2)
    np.testing.assert_allclose(layers[1].sample, mu2 + np.exp(logvar2 / 2) * eps[..., 2:],
                               rtol=1e-12)
    mu_p, logvar_p = model.prior_h1(layers[1].sample)
    np.testing.assert_array_equal(layers[0].prior[0], mu_p)
    np.testing.assert_array_equal(layers[0].prior[1], logvar_p)

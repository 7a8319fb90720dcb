"""Reparameterisation, closed-form KL and log-densities: gradient checks and forward maths."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae import gaussian as G
from minivae.backend import get_backend, to_host
from tests.backends import BACKENDS
from tests.gradcheck import (assert_grads_close, assert_unmodified, device_inputs,
                             numeric_grads, snapshot)

shapes = dict(k=st.integers(0, 3), b=st.integers(1, 4), d=st.integers(1, 5),
              seed=st.integers(0, 2**32 - 1))


def draw(seed, k, b, d):
    rng = np.random.default_rng(seed)
    mu, logvar = rng.standard_normal((2, b, d))
    lead = (k, b, d) if k else (b, d)
    return rng, mu, logvar, lead


@pytest.mark.parametrize("backend", BACKENDS)
@given(**shapes)
def test_reparameterize_backward_matches_finite_differences(backend, k, b, d, seed):
    rng, mu, logvar, lead = draw(seed, k, b, d)
    eps, dz = rng.standard_normal((2,) + lead)          # eps fixed; dz a random upstream gradient
    inputs = device_inputs(backend, mu=mu, logvar=logvar, eps=eps)
    before = snapshot(inputs)
    z, cache = G.reparameterize_forward(**inputs)
    dmu, dlogvar = G.reparameterize_backward(get_backend(backend).asarray(dz, np.float64), cache)
    assert z.shape == lead and dmu.shape == (b, d) and dlogvar.shape == (b, d)
    assert not np.shares_memory(to_host(dmu), dz) and dmu is not dz
    assert_unmodified(inputs, before)
    numeric = numeric_grads(lambda **a: G.reparameterize_forward(**a)[0], inputs, [dz],
                            ["mu", "logvar"])
    assert_grads_close({"mu": dmu, "logvar": dlogvar}, numeric)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reparameterized_draws_have_mean_mu_and_variance_exp_logvar(backend):
    be = get_backend(backend, seed=1)
    mu = be.asarray([[0.5, -2.0, 3.0]], np.float64)
    logvar = be.asarray([[0.0, math.log(4.0), math.log(0.01)]], np.float64)
    n = 200_000
    eps = be.rng.standard_normal((n, 1, 3))
    z, _ = G.reparameterize_forward(mu, logvar, eps)
    z = to_host(z)[:, 0]
    var = np.exp(to_host(logvar)[0])
    # standard errors: sqrt(var / n) for the mean, var * sqrt(2 / n) for the variance
    np.testing.assert_allclose(z.mean(0), to_host(mu)[0], atol=5 * np.sqrt(var / n).max())
    np.testing.assert_allclose(z.var(0), var, rtol=5 * np.sqrt(2 / n))
    # exp(logvar) is the variance, not the standard deviation (the numpy-ml bug)
    assert abs(z[:, 1].std() - 2.0) < 0.02


@pytest.mark.parametrize("backend", BACKENDS)
@given(b=st.integers(1, 4), d=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_kl_backward_matches_finite_differences(backend, b, d, seed):
    rng, mu, logvar, _ = draw(seed, 0, b, d)
    dkl = rng.standard_normal(b)
    inputs = device_inputs(backend, mu=mu, logvar=logvar)
    before = snapshot(inputs)
    kl, cache = G.kl_normal_std_forward(**inputs)
    dmu, dlogvar = G.kl_normal_std_backward(get_backend(backend).asarray(dkl, np.float64), cache)
    assert kl.shape == (b,)
    assert_unmodified(inputs, before)
    numeric = numeric_grads(lambda **a: G.kl_normal_std_forward(**a)[0], inputs, [dkl],
                            ["mu", "logvar"])
    assert_grads_close({"mu": dmu, "logvar": dlogvar}, numeric)


@pytest.mark.parametrize("backend", BACKENDS)
def test_closed_form_kl_equals_monte_carlo_estimate(backend):
    be = get_backend(backend, seed=2)
    mu = be.asarray([[0.3, -1.2, 2.0], [0.0, 0.0, 0.0]], np.float64)
    logvar = be.asarray([[0.5, -1.0, 0.2], [0.0, 0.0, 0.0]], np.float64)
    kl, _ = G.kl_normal_std_forward(mu, logvar)
    z, _ = G.reparameterize_forward(mu, logvar, be.rng.standard_normal((400_000, 2, 3)))
    log_q, _ = G.log_normal_forward(z, mu, logvar)
    log_p, _ = G.log_std_normal_forward(z)
    kl_mc = to_host(log_q - log_p)                       # KL = E_q[log q - log p]
    se = kl_mc.std(0) / np.sqrt(kl_mc.shape[0])
    assert np.all(np.abs(kl_mc.mean(0) - to_host(kl)) < 5 * se + 1e-12)
    assert to_host(kl)[1] == 0.0                         # KL(N(0, I) || N(0, I)) = 0
    assert to_host(kl)[0] > 0


@pytest.mark.parametrize("backend", BACKENDS)
@given(**shapes)
def test_log_normal_backward_matches_finite_differences(backend, k, b, d, seed):
    rng, mu, logvar, lead = draw(seed, k, b, d)
    z = rng.standard_normal(lead) * 2
    dlogp = rng.standard_normal(lead[:-1])
    inputs = device_inputs(backend, z=z, mu=mu, logvar=logvar)
    before = snapshot(inputs)
    logp, cache = G.log_normal_forward(**inputs)
    dz, dmu, dlogvar = G.log_normal_backward(get_backend(backend).asarray(dlogp, np.float64), cache)
    assert logp.shape == lead[:-1] and dz.shape == lead and dmu.shape == (b, d)
    assert_unmodified(inputs, before)
    numeric = numeric_grads(lambda **a: G.log_normal_forward(**a)[0], inputs, [dlogp],
                            ["z", "mu", "logvar"])
    assert_grads_close({"z": dz, "mu": dmu, "logvar": dlogvar}, numeric)


@pytest.mark.parametrize("backend", BACKENDS)
@given(k=st.integers(0, 3), b=st.integers(1, 4), d=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_log_std_normal_backward_matches_finite_differences(backend, k, b, d, seed):
    rng = np.random.default_rng(seed)
    lead = (k, b, d) if k else (b, d)
    z, dlogp = rng.standard_normal(lead), rng.standard_normal(lead[:-1])
    inputs = device_inputs(backend, z=z)
    before = snapshot(inputs)
    logp, cache = G.log_std_normal_forward(inputs["z"])
    dz = G.log_std_normal_backward(get_backend(backend).asarray(dlogp, np.float64), cache)
    assert_unmodified(inputs, before)
    numeric = numeric_grads(lambda z: G.log_std_normal_forward(z)[0], inputs, [dlogp], ["z"])
    assert_grads_close({"z": dz}, numeric)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("closed_form", [False, True])
@given(k=st.integers(1, 3), b=st.integers(1, 4), d=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_std_normal_log_ratio_backward_matches_finite_differences(backend, closed_form, k, b, d,
                                                                  seed):
    rng, mu, logvar, lead = draw(seed, k, b, d)
    z = rng.standard_normal(lead) * 2
    dratio = rng.standard_normal((b,) if closed_form else (k, b))
    inputs = device_inputs(backend, z=z, mu=mu, logvar=logvar)
    before = snapshot(inputs)
    ratio, cache = G.std_normal_log_ratio_forward(closed_form=closed_form, **inputs)
    dz, dmu, dlogvar = G.std_normal_log_ratio_backward(
        get_backend(backend).asarray(dratio, np.float64), cache)
    assert ratio.shape == dratio.shape and dmu.shape == (b, d) and dlogvar.shape == (b, d)
    assert_unmodified(inputs, before)
    wrt = ["mu", "logvar"] if closed_form else ["z", "mu", "logvar"]
    numeric = numeric_grads(lambda **a: G.std_normal_log_ratio_forward(closed_form=closed_form,
                                                                       **a)[0],
                            inputs, [dratio], wrt)
    if closed_form:
        assert dz is None                                     # -KL does not depend on a sample
    assert_grads_close({"z": dz, "mu": dmu, "logvar": dlogvar}, numeric)


def test_std_normal_log_ratio_is_log_p_minus_log_q_and_averages_to_minus_kl():
    rng = np.random.default_rng(4)
    mu, logvar = rng.standard_normal((2, 3, 2))
    z, _ = G.reparameterize_forward(mu, logvar, rng.standard_normal((200_000, 3, 2)))
    ratio, _ = G.std_normal_log_ratio_forward(z, mu, logvar)
    np.testing.assert_allclose(ratio, G.log_std_normal_forward(z)[0]
                               - G.log_normal_forward(z, mu, logvar)[0], rtol=1e-12)
    closed, _ = G.std_normal_log_ratio_forward(z, mu, logvar, closed_form=True)
    np.testing.assert_allclose(closed, -G.kl_normal_std_forward(mu, logvar)[0], rtol=1e-12)
    se = ratio.std(0) / np.sqrt(ratio.shape[0])
    assert np.all(np.abs(ratio.mean(0) - closed) < 5 * se)


def test_log_densities_match_the_univariate_formula():
    rng = np.random.default_rng(3)
    z, mu = rng.standard_normal((2, 4, 3))
    sigma = np.exp(rng.standard_normal((4, 3)))
    pdf = np.exp(-0.5 * ((z - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(G.log_normal_forward(z, mu, 2 * np.log(sigma))[0],
                               np.log(pdf).sum(-1), rtol=1e-12)
    pdf0 = np.exp(-0.5 * z ** 2) / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(G.log_std_normal_forward(z)[0], np.log(pdf0).sum(-1), rtol=1e-12)
    # at mu = 0, logvar = 0 the two densities agree
    np.testing.assert_allclose(G.log_normal_forward(z, 0 * mu, 0 * mu)[0],
                               G.log_std_normal_forward(z)[0], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logvar_gives_finite_values_and_gradients(dtype):
    mu = np.array([[0.0, 1.0], [-3.0, 2.0]], dtype)
    logvar = np.array([[60.0, -60.0], [-60.0, 60.0]], dtype)
    eps = np.array([[[1.0, -1.0], [0.5, 2.0]]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            z, rc = G.reparameterize_forward(mu, logvar, eps)
            kl, kc = G.kl_normal_std_forward(mu, logvar)
            lq, qc = G.log_normal_forward(z, mu, logvar)
            lp, pc = G.log_std_normal_forward(z)
            outs = [z, kl, lq, lp, *G.reparameterize_backward(np.ones_like(z), rc),
                    *G.kl_normal_std_backward(np.ones_like(kl), kc),
                    *G.log_normal_backward(np.ones_like(lq), qc),
                    G.log_std_normal_backward(np.ones_like(lp), pc)]
    for a in outs:
        assert np.all(np.isfinite(a)) and a.dtype == dtype

"""The bounds as reductions over K (ELBO, k-sample ELBO, IWAE): gradient checks and properties."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae import objectives as obj
from minivae.backend import get_backend, to_host
from tests.backends import BACKENDS
from tests.gradcheck import (assert_grads_close, assert_unmodified, device_inputs,
                             numeric_grads, snapshot)

sizes = dict(k=st.integers(1, 5), b=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))


@pytest.mark.parametrize("backend", BACKENDS)
@given(beta=st.floats(0.0, 4.0), **sizes)
def test_elbo_is_the_mean_over_k_of_log_w_with_the_kl_in_closed_form(backend, beta, k, b, seed):
    # the model hands the "elbo" reduction log w = log p(x|z) - beta KL (the KL broadcast over K)
    rng = np.random.default_rng(seed)
    log_px_z, kl, dL = 10 * rng.standard_normal((k, b)), rng.random(b), rng.standard_normal(b)
    elbo = obj.OBJECTIVES["elbo"]
    assert elbo.analytic_kl and not obj.OBJECTIVES["mc_elbo"].analytic_kl
    inputs = device_inputs(backend, log_px_z=log_px_z, kl=kl)
    before = snapshot(inputs)
    L, cache = elbo.forward(inputs["log_px_z"] - beta * inputs["kl"])
    np.testing.assert_allclose(to_host(L), log_px_z.mean(0) - beta * kl, rtol=1e-12, atol=1e-12)
    dlog_w = elbo.backward(get_backend(backend).asarray(dL, np.float64), cache)
    dlpx, dkl = dlog_w, -beta * dlog_w.sum(axis=0)               # through log w = log p - beta KL
    assert L.shape == (b,) and dlpx.shape == (k, b)
    assert_unmodified(inputs, before)
    numeric = numeric_grads(lambda **a: elbo.forward(a["log_px_z"] - beta * a["kl"])[0], inputs,
                            [dL], ["log_px_z", "kl"])
    assert_grads_close({"log_px_z": dlpx, "kl": dkl}, numeric)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["elbo", "mc_elbo", "iwae"])
@given(scale=st.floats(0.1, 30.0), **sizes)
def test_log_w_objective_backward_matches_finite_differences(backend, name, scale, k, b, seed):
    rng = np.random.default_rng(seed)
    forward, backward = obj.OBJECTIVES[name].forward, obj.OBJECTIVES[name].backward
    log_w, dL = scale * rng.standard_normal((k, b)) - 100, rng.standard_normal(b)
    inputs = device_inputs(backend, log_w=log_w)
    before = snapshot(inputs)
    L, cache = forward(inputs["log_w"])
    dlog_w = backward(get_backend(backend).asarray(dL, np.float64), cache)
    assert L.shape == (b,) and dlog_w.shape == (k, b)
    assert_unmodified(inputs, before)
    numeric = numeric_grads(lambda log_w: forward(log_w)[0], inputs, [dL], ["log_w"])
    assert_grads_close({"log_w": dlog_w}, numeric)


def test_iwae_equals_log_mean_exp_and_its_weights_sum_to_one():
    rng = np.random.default_rng(0)
    log_w = rng.standard_normal((7, 5))
    L, w_tilde = obj.iwae_forward(log_w)
    np.testing.assert_allclose(L, np.log(np.exp(log_w).mean(0)), rtol=1e-12)
    np.testing.assert_allclose(w_tilde.sum(0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(w_tilde, np.exp(log_w) / np.exp(log_w).sum(0), rtol=1e-12)
    value, no_weights = obj.log_mean_exp(log_w)                   # the same function, weights off
    assert no_weights is None
    np.testing.assert_array_equal(value, L)
    np.testing.assert_allclose(obj.log_mean_exp(log_w[:, :, None] + [0.0, 3.0])[0],
                               L[:, None] + [0.0, 3.0], rtol=1e-12)   # any trailing axes


def test_iwae_at_k1_is_log_w_and_bounds_order():
    rng = np.random.default_rng(1)
    log_w = rng.standard_normal((1, 6))
    np.testing.assert_array_equal(obj.iwae_forward(log_w)[0], log_w[0])
    np.testing.assert_array_equal(obj.mean_forward(log_w)[0], log_w[0])
    # for the same samples, log-mean-exp >= mean (Jensen), with equality only if all log w agree
    log_w = rng.standard_normal((10, 6))
    assert np.all(obj.iwae_forward(log_w)[0] >= obj.mean_forward(log_w)[0])


def test_iwae_bound_does_not_decrease_in_k_on_average():
    # log w_i iid N(0, 2^2): E[L_k] increases with k towards log E[w] = 2 (Burda et al., Thm 1)
    rng = np.random.default_rng(2)
    means = [obj.iwae_forward(2 * rng.standard_normal((k, 20_000)))[0].mean() for k in (1, 2, 5, 20, 100)]
    assert all(a < b for a, b in zip(means, means[1:])), means
    assert means[-1] < 2.0


def test_unknown_objective_is_one_clear_error():
    with pytest.raises(ValueError, match="Unknown objective 'vae': choose one of elbo, mc_elbo, iwae"):
        obj.get_objective("vae")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_iwae_is_finite_for_huge_and_tiny_log_weights(dtype):
    log_w = np.array([[-1e4, 500.0, -5e25], [-1e4 - 1, 499.0, -5e25]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            L, w_tilde = obj.iwae_forward(log_w)
            dlog_w = obj.iwae_backward(np.ones(3, dtype), w_tilde)
    assert np.all(np.isfinite(L)) and np.all(np.isfinite(dlog_w))
    np.testing.assert_allclose(L[0], -1e4 + np.log((1 + np.exp(-1.0)) / 2), rtol=1e-6)
    assert L.dtype == dtype


@pytest.mark.parametrize("backend", BACKENDS)
def test_objectives_agree_across_backends_with_numpy(backend):
    rng = np.random.default_rng(3)
    log_w = rng.standard_normal((4, 3))
    be = get_backend(backend)
    for name in ("mc_elbo", "iwae"):
        forward = obj.OBJECTIVES[name].forward
        np.testing.assert_allclose(to_host(forward(be.asarray(log_w, np.float64))[0]),
                                   forward(log_w)[0], rtol=1e-12)

"""Every likelihood's gradient check; the Bernoulli and Gaussian forward maths.

The discretised logistic's own forward maths is in tests/test_discretized_logistic.py.
"""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae.backend import get_backend
from minivae import likelihoods
from minivae.likelihoods import (Bernoulli, DiscretizedLogistic, GaussianFixed, GaussianLearned,
                                 make_likelihood)
from tests.backends import BACKENDS
from tests.gradcheck import (assert_grads_close, assert_unmodified, device_inputs,
                             numeric_grads, snapshot)

LIKELIHOODS = {"bernoulli": Bernoulli(), "gaussian": GaussianFixed(0.7),
               "gaussian_learned": GaussianLearned(), "discretized_logistic": DiscretizedLogistic()}


def draw_data(name, rng, b, p):
    if name == "bernoulli":
        return (rng.random((b, p)) < 0.5).astype(float)       # binary pixels
    return rng.random((b, p))                                   # grey levels in [0, 1]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
@given(k=st.integers(0, 3), b=st.integers(1, 4), p=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_likelihood_backward_matches_finite_differences(backend, name, k, b, p, seed):
    rng = np.random.default_rng(seed)
    lik = LIKELIHOODS[name]
    lead = (k, b) if k else (b,)
    x = draw_data(name, rng, b, p)
    out = 2 * rng.standard_normal(lead + (lik.n_outputs(p),))
    dlogp = rng.standard_normal(lead)
    inputs = device_inputs(backend, x=x, out=out)
    before = snapshot(inputs)
    logp, cache = lik.forward(**inputs)
    dout = lik.backward(get_backend(backend).asarray(dlogp, np.float64), cache)
    assert logp.shape == lead and dout.shape == out.shape
    assert_unmodified(inputs, before)
    numeric = numeric_grads(lambda **a: lik.forward(**a)[0], inputs, [dlogp], ["out"])
    assert_grads_close({"out": dout}, numeric)


def test_bernoulli_equals_the_textbook_formula():
    rng = np.random.default_rng(0)
    x = (rng.random((3, 6)) < 0.4).astype(float)
    logits = 3 * rng.standard_normal((2, 3, 6))
    s = 1 / (1 + np.exp(-logits))
    expected = (x * np.log(s) + (1 - x) * np.log(1 - s)).sum(-1)
    np.testing.assert_allclose(Bernoulli().forward(x, logits)[0], expected, rtol=1e-10)
    np.testing.assert_allclose(Bernoulli().mean(logits), s, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bernoulli_extreme_logits_are_finite_and_right(dtype):
    x = np.array([[1.0, 0.0, 1.0, 0.0]], dtype)
    logits = np.array([[1e4, -1e4, -1e4, 1e4]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            logp, cache = Bernoulli().forward(x, logits)
            dout = Bernoulli().backward(np.ones(1, dtype), cache)
    # confident and right costs 0 nats, confident and wrong costs |logit| nats
    np.testing.assert_allclose(logp, [-2e4], rtol=1e-6)
    np.testing.assert_allclose(dout, [[0.0, 0.0, 1.0, -1.0]])
    assert logp.dtype == dtype and dout.dtype == dtype


@pytest.mark.parametrize("kind", ["random", "extremes"])
def test_float32_bernoulli_is_within_its_stated_bound_of_float64(kind):
    # per pixel: at most 6e-8 nats from softplus's log(1 + e) plus float32 rounding of the
    # terms x l and softplus(l); the sum over P pixels adds up to P such errors, and its own rounding
    rng = np.random.default_rng(8)
    extremes = np.array([-1e4, 1e4, -88.0, 88.0, -89.0, 89.0, 0.0, -0.0, 1e-45, -1e-45, 1e-40,
                         -17.0, 17.0, -16.0, 16.0, 3.0], np.float32)
    logits = ((rng.standard_normal((3, 4, 16)) * 6).astype(np.float32) if kind == "random"
              else np.broadcast_to(extremes, (3, 4, 16)).copy())
    x = (rng.random((4, 16)) < 0.5).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            logp, cache = Bernoulli().forward(x, logits)
            dout = Bernoulli().backward(np.ones((3, 4), np.float32), cache)
    l64, x64 = logits.astype(np.float64), x.astype(np.float64)
    terms = x64 * l64 - np.logaddexp(0.0, l64)                                # (3, 4, 16)
    per_pixel = 6e-8 + 2 * np.spacing(np.abs(x64 * l64).astype(np.float32)).astype(np.float64) \
        + 2 * np.spacing(np.logaddexp(0.0, l64).astype(np.float32)).astype(np.float64)
    bound = per_pixel.sum(-1) + 16 * np.spacing(np.abs(terms).sum(-1).astype(np.float32))
    assert logp.dtype == np.float32 and np.all(np.abs(logp - terms.sum(-1)) <= bound)
    e = np.exp(-np.abs(l64))
    sig = np.where(l64 >= 0, 1 / (1 + e), e / (1 + e))
    np.testing.assert_allclose(dout, x64 - sig, rtol=0, atol=2e-7)             # x - sigmoid(l)


def test_gaussian_fixed_equals_the_textbook_formula_and_squared_error():
    rng = np.random.default_rng(1)
    x, m = rng.random((2, 3, 5))
    sigma = 0.3
    pdf = np.exp(-0.5 * ((x - m) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    logp = GaussianFixed(sigma).forward(x, m)[0]
    np.testing.assert_allclose(logp, np.log(pdf).sum(-1), rtol=1e-12)
    # -log p = w * sum (x - m)^2 + const with w = 1 / (2 sigma^2)
    w = 1 / (2 * sigma ** 2)
    const = 5 * 0.5 * math.log(2 * math.pi * sigma ** 2)
    np.testing.assert_allclose(-logp, w * ((x - m) ** 2).sum(-1) + const, rtol=1e-12)


def test_gaussian_learned_equals_the_textbook_formula():
    rng = np.random.default_rng(2)
    x, m, v = rng.standard_normal((3, 4, 5))
    pdf = np.exp(-0.5 * (x - m) ** 2 / np.exp(v)) / np.sqrt(2 * np.pi * np.exp(v))
    out = np.concatenate([m, v], -1)
    np.testing.assert_allclose(GaussianLearned().forward(x, out)[0], np.log(pdf).sum(-1),
                               rtol=1e-12)
    np.testing.assert_array_equal(GaussianLearned().mean(out), m)
    m_out, v_out = GaussianLearned().split(out)                        # out = [m, v], each (4, 5)
    np.testing.assert_array_equal(m_out, m)
    np.testing.assert_array_equal(v_out, v)
    # with v = 2 log sigma it is the fixed-variance Gaussian
    np.testing.assert_allclose(
        GaussianLearned().forward(x, np.concatenate([m, np.full_like(m, 2 * np.log(0.5))], -1))[0],
        GaussianFixed(0.5).forward(x, m)[0], rtol=1e-12)


def test_likelihood_names_and_errors():
    assert set(LIKELIHOODS) == set(likelihoods.LIKELIHOODS)           # the gradient check sees them all
    for name in LIKELIHOODS:
        assert make_likelihood(name).name == name
    assert isinstance(make_likelihood("bernoulli"), Bernoulli)
    assert make_likelihood("gaussian", 0.2).sigma == 0.2
    with pytest.raises(ValueError, match="Unknown likelihood 'poisson'"):
        make_likelihood("poisson")
    with pytest.raises(ValueError, match="sigma > 0"):
        GaussianFixed(0.0)

"""The discretised logistic likelihood (PixelCNN++, eq. 2, one logistic per pixel) and bits_per_dim.

The gradient check stays away from the clamp at log s = -7 (a kink); the forward maths is checked on
its own: the 256 bin probabilities sum to one, the edge bins hold the tails, one pixel against the
textbook difference of sigmoids, and no warning or NaN at extreme parameters.
"""
import decimal
import math
import warnings
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae.backend import get_backend, to_host
from minivae.likelihoods import (LOG_S_MIN, DiscretizedLogistic, bits_per_dim, make_likelihood)
from minivae.model import VAE
from tests.backends import BACKENDS
from tests.gradcheck import (assert_grads_close, assert_unmodified, check_loss_gradients,
                             device_inputs, numeric_grads, snapshot)

LIK = DiscretizedLogistic()
GRID = np.arange(256) / 255                                     # every 8-bit value k/255


def sig(v):
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


def textbook(k, m, log_s) -> Decimal:
    """p(k/255) from the definition, one pixel: the plain difference of sigmoids (and the tails at
    the edges) in decimals with 60 digits more than the cancellation can eat (|a| / ln 10)."""
    reach = (abs(2 * k / 255 - 1 - m) + 1 / 255) * math.exp(-max(log_s, LOG_S_MIN))   # >= |a|, |b|
    with decimal.localcontext(decimal.Context(prec=60 + int(reach / math.log(10)), Emin=-10**6)):
        s = Decimal(max(log_s, LOG_S_MIN)).exp()
        y = Decimal(2 * k - 255) / 255
        sigmoid = lambda v: 1 / (1 + (-v).exp())                       # noqa: E731
        upper = 1 if k == 255 else sigmoid((y + Decimal(1) / 255 - Decimal(m)) / s)
        lower = 0 if k == 0 else sigmoid((y - Decimal(1) / 255 - Decimal(m)) / s)
        return +(upper - lower)


def all_bins(m, log_s, backend="numpy"):
    """p(k/255) for k = 0..255 given one pixel's (m, log_s), as a host array (256,)."""
    x, out = device_inputs(backend, x=GRID[:, None],
                           out=np.broadcast_to([m, log_s], (256, 2)).copy()).values()
    return np.exp(to_host(LIK.forward(x, out)[0]))


@pytest.mark.parametrize("backend", BACKENDS)
@given(k=st.integers(0, 3), b=st.integers(1, 4), p=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_backward_matches_finite_differences(backend, k, b, p, seed):
    rng = np.random.default_rng(seed)
    lead = (k, b) if k else (b,)
    levels = rng.integers(0, 256, (b, p))
    levels[rng.random((b, p)) < 0.3] = 0                        # the edge bins, often
    levels[rng.random((b, p)) < 0.3] = 255
    x = levels / 255
    m = 1.5 * rng.standard_normal(lead + (p,))
    log_s = rng.uniform(LOG_S_MIN + 0.5, 2.0, lead + (p,))      # away from the clamp's kink
    out = np.concatenate([m, log_s], -1)
    dlogp = rng.standard_normal(lead)
    inputs = device_inputs(backend, x=x, out=out)
    before = snapshot(inputs)
    logp, cache = LIK.forward(**inputs)
    dout = LIK.backward(get_backend(backend).asarray(dlogp, np.float64), cache)
    assert logp.shape == lead and dout.shape == out.shape and dout.dtype == np.float64
    assert_unmodified(inputs, before)
    numeric = numeric_grads(lambda **a: LIK.forward(**a)[0], inputs, [dlogp], ["out"])
    assert_grads_close({"out": dout}, numeric)


def test_log_s_below_the_clamp_scores_as_the_clamp_and_gets_no_gradient():
    x = np.array([[0.0, 100 / 255, 1.0]])
    m = np.array([[-0.99, 0.2, 0.99]])
    low, at = np.full((1, 3), -12.0), np.full((1, 3), LOG_S_MIN)
    logp_low, cache = LIK.forward(x, np.concatenate([m, low], -1))
    np.testing.assert_array_equal(logp_low, LIK.forward(x, np.concatenate([m, at], -1))[0])
    dout = LIK.backward(np.ones(1), cache)
    np.testing.assert_array_equal(dout[:, 3:], 0.0)             # d log_s = 0 under the floor
    assert np.all(dout[:, :3] != 0)                             # m still learns


@pytest.mark.parametrize("backend", BACKENDS)
@given(m=st.floats(-4, 4), log_s=st.floats(-9, 8))
def test_the_256_bins_sum_to_one(backend, m, log_s):
    p = all_bins(m, log_s, backend)                    # m outside [-1, 1], and tiny or huge s
    assert np.all(p >= 0)
    assert abs(p.sum() - 1) < 1e-6


@pytest.mark.parametrize("m,log_s", [(0.2, -2.5), (-0.7, -6.0), (0.0, 0.0), (2.5, 1.0),
                                     (-3.0, -1.0), (1.0, -7.0), (0.5, -20.0)])
def test_one_pixel_equals_the_textbook_formula(m, log_s):
    # bins across the range, the far tails included (p down to e^-6000), to 1e-9 of log p
    ks = np.array(sorted({0, 1, 7, 100, 128, 254, 255} | set(range(0, 256, 9))))
    logp = LIK.forward(ks[:, None] / 255, np.broadcast_to([m, log_s], (ks.size, 2)).copy())[0]
    expected = {k: float(textbook(int(k), m, log_s).ln()) for k in ks}
    np.testing.assert_allclose(logp, [expected[k] for k in ks], rtol=1e-9)
    # the same numbers as one (K, B, P) batch of 3 pixels: log p sums over P
    ks = np.array([[0, 100, 255], [7, 128, 254]])
    out = np.broadcast_to([m, m, m, log_s, log_s, log_s], (2, 2, 6))
    logp = LIK.forward(ks / 255, out)[0]
    assert logp.shape == (2, 2)
    np.testing.assert_allclose(logp[0], [sum(expected[k] for k in row) for row in ks], rtol=1e-9)


def test_edge_bins_hold_the_tails():
    for m in (-5.0, -1.0, 0.0, 1.0, 5.0):
        p = all_bins(m, -1.0)
        s = math.exp(-1.0)
        assert p[0] == pytest.approx(sig((-1 + 1 / 255 - m) / s), rel=1e-12)      # y <= -1 + 1/255
        assert p[255] == pytest.approx(1 - sig((1 - 1 / 255 - m) / s), rel=1e-12)  # y > 1 - 1/255
    assert all_bins(-5.0, -1.0)[0] > 0.999 and all_bins(5.0, -1.0)[255] > 0.999
    # at the floor s = e^-7 centred on a bin, that bin holds sigmoid(e^7/255) - sigmoid(-e^7/255)
    assert all_bins(2 * 100 / 255 - 1, LOG_S_MIN)[100] > 0.97


def test_off_grid_values_are_scored_with_the_nearest_edge_rule():
    out = np.array([[0.1, -1.0]])
    near_0 = LIK.forward(np.array([[0.4 / 255]]), out)[0]
    near_1 = LIK.forward(np.array([[254.6 / 255]]), out)[0]
    s = math.exp(-1.0)
    assert near_0[0] == pytest.approx(math.log(sig((2 * 0.4 / 255 - 1 + 1 / 255 - 0.1) / s)))
    assert near_1[0] == pytest.approx(math.log(1 - sig((2 * 254.6 / 255 - 1 - 1 / 255 - 0.1) / s)))


EXTREMES = [-1e4, -50.0, -7.0, -1.0, 0.0, 1.0, 7.0, 50.0, 120.0, 800.0, 1e4]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_parameters_give_no_warning_and_no_nan(dtype):
    ms, log_ss = np.meshgrid(EXTREMES, EXTREMES)                # every pair (11, 11)
    ms, log_ss = ms.ravel(), log_ss.ravel()
    x = np.broadcast_to(np.array([0, 1, 128, 254, 255]) / 255, (ms.size, 5)).astype(dtype)
    out = np.concatenate([np.repeat(ms[:, None], 5, 1), np.repeat(log_ss[:, None], 5, 1)], -1)
    out = out.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            logp, cache = LIK.forward(x, out)
            dout = LIK.backward(np.ones(ms.size, dtype), cache)
            mean = LIK.mean(out)
    assert logp.dtype == dtype and dout.dtype == dtype
    assert np.all(np.isfinite(logp)) and np.all(logp <= 0) and np.all(np.isfinite(dout))
    assert np.all((mean >= 0) & (mean <= 1))
    # a huge scale spreads the mass: each edge bin gets half, an interior bin 2/255 * e^-log_s / 4
    huge = (ms == 0) & (log_ss == 800.0)
    lp64 = LIK.forward(x[huge].astype(np.float64), out[huge].astype(np.float64))[0]
    np.testing.assert_allclose(lp64, 2 * math.log(0.5) + 3 * (math.log(1 / 510) - 800), rtol=1e-12)


def test_check_data_accepts_pixels_in_0_1_and_rejects_the_rest():
    assert LIK.check_data(GRID[None]) is None
    assert LIK.check_data(np.zeros((2, 0))) is None
    cases = [(np.array([[0.0, 255.0]]),
              r"x has values in \[0, 255\] but the discretized_logistic likelihood needs x in "
              r"\[0, 1\]: raw 0-255 pixels\? divide by 255"),
             (np.array([[-0.1, 0.5]]),
              r"x has values in \[-0.1, 0.5\] .*rescale 8-bit pixels k to k/255"),
             (np.array([[0.5, 1.5]]), r"needs x in \[0, 1\]"),
             (np.array([[0.5, np.nan]]),
              r"x holds NaN values but the discretized_logistic likelihood needs finite data"),
             (np.array([[np.inf]]), r"x holds infinite values")]
    for x, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            LIK.check_data(x)
        assert "\n" not in str(info.value) and str(info.value).endswith(".")


def test_mean_and_initial_bias():
    m = np.array([[-1.5, -1.0, 0.0, 0.6, 1.0, 3.0]])
    out = np.concatenate([m, np.zeros_like(m)], -1)
    np.testing.assert_allclose(LIK.mean(out), [[0.0, 0.0, 0.5, 0.8, 1.0, 1.0]])
    mean_x = np.array([0.0, 0.25, 1.0])
    b = np.full(6, 7.0)
    LIK.init_output_bias(b, mean_x)
    np.testing.assert_allclose(b, [-1.0, -0.5, 1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(LIK.mean(b), mean_x)          # the decoder starts at the mean image
    assert LIK.n_outputs(3072) == 6144


def test_bits_per_dim():
    assert bits_per_dim(3072 * 8 * math.log(2), 3072) == pytest.approx(8.0)
    assert bits_per_dim(3072 * math.log(256), 3072) == pytest.approx(8.0)   # the uniform 8-bit code
    assert bits_per_dim(math.log(2), 1) == pytest.approx(1.0)


def test_registered_and_a_whole_vae_checks_out():
    assert isinstance(make_likelihood("discretized_logistic"), DiscretizedLogistic)
    model = VAE(x_dim=4, latent_dim=2, encoder_hidden=(3,), decoder_hidden=(3,), dtype="float64",
                likelihood="discretized_logistic", seed=1)
    assert model.params[model.output_layer].shape[-1] == 8
    for objective, k in (("elbo", 1), ("iwae", 3)):
        check_loss_gradients(model, objective, "discretized_logistic", k, 3, 1.0,
                             np.random.default_rng(k))

"""Dense layer, activations and MLP: gradient checks and forward maths."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae.backend import get_backend, to_host
from minivae.layers import ACTIVATIONS, MLP, Dense, make_activation, sigmoid, softplus
from tests.backends import BACKENDS
from tests.gradcheck import (assert_grads_close, assert_unmodified, device_inputs,
                             numeric_grads, snapshot)

KINKED = {"relu", "leaky_relu", "elu"}        # not differentiable at 0


def away_from_kinks(x, margin=1e-3):
    """Push values within ``margin`` of 0 out to +-margin*10 so differences never straddle a kink."""
    return np.where(np.abs(x) < margin, np.where(x >= 0, 10 * margin, -10 * margin), x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       scale=st.floats(0.1, 5.0), seed=st.integers(0, 2**32 - 1))
def test_activation_backward_matches_finite_differences(backend, name, shape, scale, seed):
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal(shape)
    if name in KINKED:
        x = away_from_kinks(x)
    dy = rng.standard_normal(shape)
    act = make_activation(name)
    inputs = device_inputs(backend, x=x)
    before = snapshot(inputs)
    y, cache = act.forward(inputs["x"])
    dx, grads = act.backward(get_backend(backend).asarray(dy, np.float64), cache)
    assert grads == {} and dx.shape == x.shape and dx.dtype == np.float64
    assert_unmodified(inputs, before)
    numeric = numeric_grads(lambda x: act.forward(x)[0], inputs, [dy], ["x"])
    assert_grads_close({"x": dx}, numeric)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_forward_values(name):
    x = np.array([-3.0, -0.5, 0.5, 3.0])
    expected = {
        "identity": x, "relu": np.maximum(x, 0), "leaky_relu": np.where(x > 0, x, 0.01 * x),
        "tanh": np.tanh(x), "sigmoid": 1 / (1 + np.exp(-x)), "softplus": np.log(1 + np.exp(x)),
        "elu": np.where(x > 0, x, np.exp(x) - 1),
    }[name]
    np.testing.assert_allclose(make_activation(name).forward(x)[0], expected, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_extreme_inputs_are_finite(name, dtype):
    x = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=dtype)
    act = make_activation(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            y, cache = act.forward(x)
            dx, _ = act.backward(np.ones_like(x), cache)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    assert y.dtype == dtype and dx.dtype == dtype


def test_stable_sigmoid_and_softplus_at_the_extremes():
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    np.testing.assert_allclose(sigmoid(x), [0.0, np.exp(-50.0), 0.5, 1.0, 1.0], rtol=1e-12)
    # log(1 + e) drops an e below half an ulp of 1 (its stated bound): absolute, not relative
    np.testing.assert_allclose(softplus(x), [0.0, np.exp(-50.0), np.log(2.0), 50.0, 1e4],
                               rtol=1e-12, atol=np.finfo(np.float64).eps / 2)


# the extremes of float32 logits: beyond exp's range, at its edge, zeros, subnormals
EXTREMES = np.array([-1e4, 1e4, -88.0, 88.0, -89.0, 89.0, 0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40,
                     -17.0, 17.0, -16.0, 16.0], np.float32)


@pytest.mark.parametrize("kind", ["random", "extremes"])
def test_float32_softplus_and_sigmoid_are_within_their_bounds_of_float64(kind):
    # softplus: at most 6e-8 nats from dropping e = exp(-|x|) < 2^-24, plus float32 rounding of
    # the result (an ulp or two); sigmoid: float32 rounding
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(100_000) * 6).astype(np.float32) if kind == "random" else EXTREMES
    ref = np.logaddexp(0.0, x.astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            y = softplus(x)
            s = sigmoid(x)
    assert y.dtype == np.float32 and s.dtype == np.float32
    bound = 6e-8 + 2 * np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(y - ref) <= bound), np.max(np.abs(y - ref) - bound)
    e = np.exp(-np.abs(x.astype(np.float64)))
    s_ref = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    np.testing.assert_allclose(s, s_ref, rtol=4e-7, atol=1e-30)


@pytest.mark.parametrize("backend", BACKENDS)
@given(k=st.integers(0, 2), b=st.integers(1, 4), n_in=st.integers(1, 5), n_out=st.integers(1, 5),
       seed=st.integers(0, 2**32 - 1))
def test_dense_backward_matches_finite_differences(backend, k, b, n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    lead = (k, b) if k else (b,)                         # (B, I) or (K, B, I)
    be = get_backend(backend)
    layer = Dense(n_in, n_out, rng, dtype=np.float64, xp=be.xp)
    layer.params["b"][...] = be.asarray(rng.standard_normal(n_out), np.float64)
    x, dy = rng.standard_normal(lead + (n_in,)), rng.standard_normal(lead + (n_out,))
    inputs = device_inputs(backend, x=x, W=to_host(layer.params["W"]), b=to_host(layer.params["b"]))
    layer.params = {"W": inputs["W"], "b": inputs["b"]}
    before = snapshot(inputs)
    y, cache = layer.forward(inputs["x"])
    assert y.shape == lead + (n_out,)
    dx, grads = layer.backward(be.asarray(dy, np.float64), cache)
    assert_unmodified(inputs, before)

    def fn(x, W, b):
        layer.params = {"W": W, "b": b}
        return layer.forward(x)[0]
    numeric = numeric_grads(fn, inputs, [dy], ["x", "W", "b"])
    assert_grads_close({"x": dx, **grads}, numeric)


def test_dense_need_dx_false_skips_dx_only():
    rng = np.random.default_rng(0)
    layer = Dense(4, 3, rng, dtype=np.float64)
    x, dy = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    _, cache = layer.forward(x)
    dx, g1 = layer.backward(dy, cache)
    none, g2 = layer.backward(dy, cache, need_dx=False)
    assert none is None and dx.shape == x.shape
    for n in g1:
        np.testing.assert_array_equal(g1[n], g2[n])


def test_dense_glorot_init_and_dtypes():
    layer = Dense(300, 100, np.random.default_rng(0))
    W = layer.params["W"]
    a = np.sqrt(6 / 400)
    assert W.dtype == np.float32 and layer.params["b"].dtype == np.float32
    assert W.min() >= -a and W.max() <= a
    np.testing.assert_allclose(W.var(), a * a / 3, rtol=0.05)       # Var U(-a, a) = a^2 / 3
    assert np.all(layer.params["b"] == 0)
    assert Dense(3, 2, dtype=np.float64).params["W"].dtype == np.float64
    y, _ = layer.forward(np.ones((2, 300), np.float32))
    assert y.dtype == np.float32


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ["tanh", "softplus", "sigmoid", "elu"])
@given(k=st.integers(0, 2), b=st.integers(1, 3),
       sizes=st.lists(st.integers(1, 4), min_size=2, max_size=4), seed=st.integers(0, 2**32 - 1))
def test_mlp_backward_matches_finite_differences(backend, activation, k, b, sizes, seed):
    rng = np.random.default_rng(seed)
    be = get_backend(backend)
    mlp = MLP(sizes, activation, out_activation="tanh", rng=rng, dtype=np.float64, xp=be.xp)
    lead = (k, b) if k else (b,)
    x = rng.standard_normal(lead + (sizes[0],))
    if activation == "elu":
        x = away_from_kinks(x)
    dy = rng.standard_normal(lead + (sizes[-1],))
    inputs = {"x": be.asarray(x, np.float64), **mlp.params}
    before = snapshot(inputs)
    y, caches = mlp.forward(inputs["x"])
    dx, grads = mlp.backward(be.asarray(dy, np.float64), caches)
    assert set(grads) == set(mlp.params)
    assert_unmodified(inputs, before)

    def fn(x, **params):                     # params are perturbed in place: the layers see them
        return mlp.forward(x)[0]
    numeric = numeric_grads(fn, inputs, [dy], ["x"])
    # parameters: perturb the live arrays (the layers hold them), restoring each entry
    for name, p in mlp.params.items():
        g = np.zeros(p.shape)
        for idx in np.ndindex(*p.shape):
            old = float(p[idx])
            p[idx] = old + 1e-6
            s_plus = float((to_host(mlp.forward(inputs["x"])[0]) * dy).sum())
            p[idx] = old - 1e-6
            s_minus = float((to_host(mlp.forward(inputs["x"])[0]) * dy).sum())
            p[idx] = old
            g[idx] = (s_plus - s_minus) / 2e-6
        numeric[name] = g
    assert_grads_close({"x": dx, **grads}, numeric)


def test_mlp_structure_and_names():
    mlp = MLP([5, 4, 3, 2], "relu")
    assert list(mlp.params) == ["0.W", "0.b", "1.W", "1.b", "2.W", "2.b"]
    kinds = [type(layer).__name__ for layer in mlp.layers]
    assert kinds == ["Dense", "ReLU", "Dense", "ReLU", "Dense"]      # no activation after the last
    assert mlp.params["1.W"] is mlp.layers[2].params["W"]               # shared, not copied


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown activation 'swish'.*tanh"):
        make_activation("swish")

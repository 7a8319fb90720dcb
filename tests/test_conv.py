"""Convolutions, reshapes, bias, residual blocks, Sequential: gradient checks and forward maths."""
import math

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from minivae.backend import array_module, get_backend, to_host
from minivae.checks import InvalidInput
from minivae.conv import (Bias, Conv2d, ConvTranspose2d, Flatten, Reshape, ResidualBlock,
                          Unflatten, conv2d_transpose, conv_output_size,
                          conv_transpose_output_size)
from minivae.layers import Dense, Sequential
from tests.backends import BACKENDS
from tests.gradcheck import (assert_grads_close, assert_unmodified, central_differences,
                             numeric_grads, scalar, snapshot)

SEEDS = st.integers(0, 2**32 - 1)


def randomize_biases(layer, rng, scale=0.5):
    """Biases start at 0: give every ``*b`` parameter values (host draws), in place."""
    for name, p in layer.params.items():
        if name.endswith("b"):
            p[...] = array_module(p).asarray(scale * rng.standard_normal(p.shape), dtype=p.dtype)


def check_layer_gradients(layer, x, dy, backend):
    """backward(dy) against central differences of S = <forward(x), dy>, all in float64.

    dx and every parameter's gradient (the parameters are perturbed in place and restored); x and
    the parameters unmodified by forward and backward.  Returns the forward's output on the host.
    """
    be = get_backend(backend)
    x = be.asarray(x, np.float64)
    inputs = {"x": x, **layer.params}
    before = snapshot(inputs)
    y, cache = layer.forward(x)
    assert y.shape == dy.shape and y.dtype == np.float64
    dx, grads = layer.backward(be.asarray(dy, np.float64), cache)
    assert_unmodified(inputs, before)
    assert set(grads) == set(layer.params)
    numeric = numeric_grads(lambda x: layer.forward(x)[0], {"x": x}, [dy], ["x"])
    numeric.update(central_differences(layer.params, lambda: scalar((layer.forward(x)[0],), [dy])))
    assert_grads_close({"x": dx, **grads}, numeric)
    return to_host(y)


# ---------------------------------------------------------------- geometries

@st.composite
def conv_geometry(draw, square=False):
    """N, channels, an H x W image, stride 1-3, padding 0-2, a kernel from 1 to the padded image."""
    s, p = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    h = draw(st.integers(1, 5))
    w = h if square else draw(st.integers(1, 5))
    kh = draw(st.integers(1, h + 2 * p))
    kernel = (kh, kh if square else draw(st.integers(1, w + 2 * p)))
    return dict(n=draw(st.integers(1, 2)), c_in=draw(st.integers(1, 2)),
                c_out=draw(st.integers(1, 2)), hw=(h, w), kernel=kernel, stride=s, padding=p)


@st.composite
def conv_transpose_geometry(draw):
    """As conv_geometry, plus output_padding < stride; kernels give at least one output pixel."""
    s, p = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    op = draw(st.integers(0, s - 1))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    k_min = [max(1, 2 * p + 1 - (d - 1) * s - op) for d in (h, w)]
    kernel = tuple(draw(st.integers(k, k + 3)) for k in k_min)
    return dict(n=draw(st.integers(1, 2)), c_in=draw(st.integers(1, 2)),
                c_out=draw(st.integers(1, 2)), hw=(h, w), kernel=kernel, stride=s, padding=p,
                output_padding=op)


KERNEL_1 = dict(n=2, c_in=2, c_out=1, hw=(3, 4), kernel=1, stride=2, padding=1)
KERNEL_FILLS_PADDED = dict(n=1, c_in=2, c_out=2, hw=(3, 2), kernel=(7, 6), stride=3, padding=2)
KERNEL_FILLS_IMAGE = dict(n=2, c_in=1, c_out=2, hw=(4, 4), kernel=4, stride=1, padding=0)


def make(cls, g, rng, backend):
    """The layer of geometry ``g`` in float64 on ``backend``, with random biases."""
    kw = {k: v for k, v in g.items() if k not in ("n", "hw")}
    layer = cls(**kw, rng=rng, dtype=np.float64, xp=get_backend(backend).xp)
    randomize_biases(layer, rng)
    return layer


# ---------------------------------------------------------------- Conv2d

def conv_loop(x, W, b, s, p):
    """y[n, o, h, w] = b[o] + sum_{c,i,j} W[o, c, i, j] x_p[n, c, s h + i, s w + j], pixelwise."""
    xp_ = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    n, _, hp, wp = xp_.shape
    c_out, _, kh, kw = W.shape
    y = np.zeros((n, c_out, (hp - kh) // s + 1, (wp - kw) // s + 1))
    for i, o, h, w in np.ndindex(*y.shape):
        y[i, o, h, w] = b[o] + np.sum(W[o] * xp_[i, :, s * h:s * h + kh, s * w:s * w + kw])
    return y


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=20)
@given(g=conv_geometry(), seed=SEEDS)
@example(g=KERNEL_1, seed=0)
@example(g=KERNEL_FILLS_PADDED, seed=1)
@example(g=KERNEL_FILLS_IMAGE, seed=2)
def test_conv2d_matches_a_direct_loop_and_finite_differences(backend, g, seed):
    rng = np.random.default_rng(seed)
    conv = make(Conv2d, g, rng, backend)
    (h, w), (kh, kw) = g["hw"], conv.kernel
    h_out, w_out = (conv_output_size(d, k, g["stride"], g["padding"])
                    for d, k in zip((h, w), (kh, kw)))
    x = rng.standard_normal((g["n"], g["c_in"], h, w))
    dy = rng.standard_normal((g["n"], g["c_out"], h_out, w_out))
    y = check_layer_gradients(conv, x, dy, backend)
    W, b = to_host(conv.params["W"]), to_host(conv.params["b"])
    np.testing.assert_allclose(y, conv_loop(x, W, b, g["stride"], g["padding"]), rtol=1e-12,
                               atol=1e-12)


def test_conv2d_float32_and_leading_axes():
    rng = np.random.default_rng(0)
    conv = Conv2d(2, 3, 3, padding=1, rng=rng)
    x = rng.standard_normal((4, 5, 2, 6, 7)).astype(np.float32)     # (K, B, C, H, W)
    y, cache = conv.forward(x)
    dx, grads = conv.backward(np.ones_like(y), cache)
    assert y.shape == (4, 5, 3, 6, 7) and y.dtype == np.float32 and dx.dtype == np.float32
    assert grads["W"].dtype == np.float32 and dx.shape == x.shape
    y_rows, _ = conv.forward(x.reshape(20, 2, 6, 7))                 # the same 20 images, flat
    np.testing.assert_array_equal(y.reshape(20, 3, 6, 7), y_rows)


# ---------------------------------------------------------------- ConvTranspose2d

def conv_transpose_loop(x, W, b, s, p, op):
    """Each pixel stamps x[n, c, h, w] W[c] onto y_p at (s h, s w); y = y_p cropped by p, plus b."""
    n, _, h, w = x.shape
    _, c_out, kh, kw = W.shape
    hp, wp = (h - 1) * s + kh + op, (w - 1) * s + kw + op
    yp = np.zeros((n, c_out, hp, wp))
    for i, c, hh, ww in np.ndindex(*x.shape):
        yp[i, :, s * hh:s * hh + kh, s * ww:s * ww + kw] += x[i, c, hh, ww] * W[c]
    return yp[:, :, p:hp - p, p:wp - p] + b[:, None, None]


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=20)
@given(g=conv_transpose_geometry(), seed=SEEDS)
@example(g=dict(KERNEL_1, output_padding=1), seed=0)
@example(g=dict(n=1, c_in=2, c_out=1, hw=(1, 1), kernel=5, stride=2, padding=2, output_padding=0),
         seed=1)
def test_conv_transpose2d_matches_a_scatter_loop_and_finite_differences(backend, g, seed):
    rng = np.random.default_rng(seed)
    conv_t = make(ConvTranspose2d, g, rng, backend)
    h_out, w_out = conv_t.output_size(*g["hw"])
    x = rng.standard_normal((g["n"], g["c_in"]) + g["hw"])
    dy = rng.standard_normal((g["n"], g["c_out"], h_out, w_out))
    y = check_layer_gradients(conv_t, x, dy, backend)
    W, b = to_host(conv_t.params["W"]), to_host(conv_t.params["b"])
    expected = conv_transpose_loop(x, W, b, g["stride"], g["padding"], g["output_padding"])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@given(g=conv_geometry(square=True), seed=SEEDS)
@example(g=dict(KERNEL_1, hw=(3, 3)), seed=0)
@example(g=dict(KERNEL_FILLS_PADDED, hw=(3, 3), kernel=7), seed=1)
def test_conv_transpose_is_the_adjoint_of_conv(backend, g, seed):
    # <conv_W(x), u> = <x, conv_W^T(u)>, output_padding making conv_W^T's output x's size
    rng = np.random.default_rng(seed)
    be = get_backend(backend)
    conv = make(Conv2d, g, rng, backend)
    conv.params["b"][...] = 0
    s, p, (h, _), (k, _) = g["stride"], g["padding"], g["hw"], conv.kernel
    conv_t = ConvTranspose2d(g["c_out"], g["c_in"], k, s, p, output_padding=(h + 2 * p - k) % s,
                             dtype=np.float64, xp=be.xp)
    conv_t.params["W"][...] = conv.params["W"]                     # the very same weights
    x = be.asarray(rng.standard_normal((g["n"], g["c_in"]) + g["hw"]), np.float64)
    y = conv.forward(x)[0]
    u = be.asarray(rng.standard_normal(y.shape), np.float64)
    x_t = conv_t.forward(u)[0]
    assert x_t.shape == x.shape
    lhs, rhs = float((y * u).sum()), float((x * x_t).sum())
    assert abs(lhs - rhs) <= 1e-12 * (1 + float((abs(y) * abs(u)).sum()))


@pytest.mark.parametrize("h", [1, 2, 5, 8])
@pytest.mark.parametrize("k, s, p, op", [(1, 1, 0, 0), (3, 1, 1, 0), (3, 2, 1, 1), (4, 2, 1, 0),
                                         (1, 2, 0, 1), (5, 3, 2, 2)])
def test_output_shapes_follow_the_formulas(h, k, s, p, op):
    x = np.zeros((2, 3, 1, h, h + 1))                                # (K, B, C, H, W)
    if h + 2 * p >= k:
        y, _ = Conv2d(1, 2, k, s, p).forward(x)
        assert y.shape == (2, 3, 2, (h + 2 * p - k) // s + 1, (h + 1 + 2 * p - k) // s + 1)
    y, _ = ConvTranspose2d(1, 2, k, s, p, op).forward(x)
    assert y.shape == (2, 3, 2, (h - 1) * s - 2 * p + k + op, h * s - 2 * p + k + op)
    assert y.shape[-2:] == tuple(conv_transpose_output_size(d, k, s, p, op) for d in (h, h + 1))


@pytest.mark.parametrize("h, w", [(1, 1), (2, 3), (5, 4), (7, 7), (28, 28)])
def test_residual_blocks_keep_halve_and_double_the_image(h, w):
    x = np.zeros((2, 3, h, w))                                       # (N, C, H, W)
    same = ResidualBlock(3, 2, "same").forward(x)[0].shape
    down = ResidualBlock(3, 2, "down").forward(x)[0].shape
    up = ResidualBlock(3, 2, "up").forward(x)[0].shape
    assert same == (2, 2, h, w)
    assert down == (2, 2, math.ceil(h / 2), math.ceil(w / 2))
    assert up == (2, 2, 2 * h, 2 * w)
    assert conv_output_size(h, 3, 2, 1) == conv_output_size(h, 1, 2, 0) == math.ceil(h / 2)


# ---------------------------------------------------------------- reshapes and bias

@pytest.mark.parametrize("backend", BACKENDS)
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       shape=st.lists(st.integers(1, 3), min_size=1, max_size=3), seed=SEEDS)
def test_reshapes_and_bias_backward_match_finite_differences(backend, lead, shape, seed):
    rng = np.random.default_rng(seed)
    lead, shape, flat = tuple(lead), tuple(shape), (math.prod(shape),)
    x, dy = rng.standard_normal((2,) + lead + shape)
    check_layer_gradients(Flatten(shape), x, dy.reshape(lead + flat), backend)
    check_layer_gradients(Unflatten(shape), x.reshape(lead + flat), dy, backend)
    check_layer_gradients(Reshape(shape, shape[::-1]), x, dy.reshape(lead + shape[::-1]), backend)
    bias = Bias(shape, dtype=np.float64, xp=get_backend(backend).xp)
    randomize_biases(bias, rng)
    y = check_layer_gradients(bias, x, dy, backend)
    np.testing.assert_array_equal(y, x + to_host(bias.params["b"]))


def test_flatten_and_unflatten_are_inverse_views():
    x = np.arange(2 * 3 * 12.0).reshape(2, 3, 12)                   # (K, B, C*H*W)
    images, _ = Unflatten((3, 2, 2)).forward(x)
    assert images.shape == (2, 3, 3, 2, 2) and np.shares_memory(images, x)
    np.testing.assert_array_equal(Flatten((3, 2, 2)).forward(images)[0], x)
    assert Bias(12).params["b"].shape == (12,) and not Bias(12).params["b"].any()


# ---------------------------------------------------------------- residual block

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind, c_in, c_out", [("same", 2, 2), ("same", 1, 2), ("down", 2, 3),
                                               ("up", 2, 1)])
@settings(max_examples=12)
@given(n=st.integers(1, 2), h=st.integers(1, 4), w=st.integers(1, 4), seed=SEEDS)
def test_residual_block_backward_matches_finite_differences(backend, kind, c_in, c_out, n, h, w,
                                                            seed):
    rng = np.random.default_rng(seed)
    block = ResidualBlock(c_in, c_out, kind, activation="tanh", rng=rng, dtype=np.float64,
                          xp=get_backend(backend).xp)
    randomize_biases(block, rng)
    assert ("skip.W" in block.params) == (kind != "same" or c_in != c_out)
    x = rng.standard_normal((n, c_in, h, w))
    y, _ = block.forward(x)
    dy = rng.standard_normal(y.shape)
    check_layer_gradients(block, x, dy, backend)


def test_residual_block_is_pre_activation():
    # y = skip(x) + conv2(act(conv1(act(x)))), each part run by hand
    rng = np.random.default_rng(3)
    block = ResidualBlock(2, 3, "down", activation="relu", rng=rng, dtype=np.float64)
    randomize_biases(block, rng)
    x = rng.standard_normal((2, 2, 5, 4))
    relu = lambda a: np.maximum(a, 0)                                 # noqa: E731
    branch = block.conv2.forward(relu(block.conv1.forward(relu(x))[0]))[0]
    np.testing.assert_allclose(block.forward(x)[0], block.skip.forward(x)[0] + branch, rtol=1e-14)
    same = ResidualBlock(2, 2, "same", activation="relu", rng=rng, dtype=np.float64)
    branch = same.conv2.forward(relu(same.conv1.forward(relu(x))[0]))[0]
    np.testing.assert_allclose(same.forward(x)[0], x + branch, rtol=1e-14)


# ---------------------------------------------------------------- Sequential: a conv VAE's networks

def conv_encoder(rng, xp, dtype=np.float64):
    """x (B, 1*6*5) -> images -> down block -> same block -> rows -> Dense -> (B, 2 D), D = 2."""
    return Sequential([Unflatten((1, 6, 5)),
                       ResidualBlock(1, 2, "down", activation="tanh", rng=rng, dtype=dtype, xp=xp),
                       ResidualBlock(2, 2, "same", activation="tanh", rng=rng, dtype=dtype, xp=xp),
                       Flatten((2, 3, 3)), Dense(18, 4, rng, dtype, xp)])


def conv_decoder(rng, xp, dtype=np.float64):
    """z (K, B, 2) -> Dense -> images (2, 2, 2) -> up block -> transposed conv -> rows -> bias."""
    return Sequential([Dense(2, 8, rng, dtype, xp), Unflatten((2, 2, 2)),
                       ResidualBlock(2, 2, "up", activation="tanh", rng=rng, dtype=dtype, xp=xp),
                       ConvTranspose2d(2, 1, 3, stride=2, padding=1, output_padding=1, rng=rng,
                                       dtype=dtype, xp=xp),
                       Flatten((1, 8, 8)), Bias(64, dtype, xp)])


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=8)
@given(k=st.integers(1, 2), b=st.integers(1, 2), seed=SEEDS)
def test_conv_decoder_and_encoder_run_with_leading_axes(backend, k, b, seed):
    rng = np.random.default_rng(seed)
    xp = get_backend(backend).xp
    decoder, encoder = conv_decoder(rng, xp), conv_encoder(rng, xp)
    randomize_biases(decoder, rng)
    randomize_biases(encoder, rng)
    assert "2.conv1.W" in decoder.params and "5.b" in decoder.params and "4.W" in encoder.params
    z = rng.standard_normal((k, b, 2))                                # (K, B, D)
    logits = check_layer_gradients(decoder, z, rng.standard_normal((k, b, 64)), backend)
    assert logits.shape == (k, b, 64)                                 # (K, B, O)
    x = rng.random((b, 30))                                           # (B, P) flat images
    h = check_layer_gradients(encoder, x, rng.standard_normal((b, 4)), backend)
    assert h.shape == (b, 4)


LAYERS_WITH_PARAMS = {
    "conv": (lambda: Conv2d(2, 3, 3, 2, 1, dtype=np.float64), (2, 2, 5, 5)),
    "conv_t": (lambda: ConvTranspose2d(2, 3, 4, 2, 1, dtype=np.float64), (2, 2, 3, 3)),
    "block": (lambda: ResidualBlock(2, 3, "down", dtype=np.float64), (2, 2, 5, 5)),
    "bias": (lambda: Bias((2, 5, 5), dtype=np.float64), (3, 2, 5, 5)),
    "encoder": (lambda: conv_encoder(np.random.default_rng(1), np), (3, 30)),
    "flat_first": (lambda: Sequential([Flatten((2, 5, 5)), Dense(50, 3, dtype=np.float64)]),
                   (4, 2, 5, 5)),
}


@pytest.mark.parametrize("name", sorted(LAYERS_WITH_PARAMS))
def test_need_dx_false_skips_dx_only(name):
    build, shape = LAYERS_WITH_PARAMS[name]
    layer = build()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    y, cache = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dx, g1 = layer.backward(dy, cache)
    none, g2 = layer.backward(dy, cache, need_dx=False)
    assert none is None and dx.shape == x.shape and set(g1) == set(g2) == set(layer.params)
    for n in g1:
        np.testing.assert_array_equal(g1[n], g2[n])


def test_sequential_need_dx_false_stops_at_the_first_layer_with_parameters():
    calls = []

    class Spy(Bias):
        def backward(self, dy, cache, need_dx=True):
            calls.append(need_dx)
            return super().backward(dy, cache, need_dx)

    net = Sequential([Flatten((1, 2, 2)), Spy(4), Spy(4)])
    _, caches = net.forward(np.ones((3, 1, 2, 2)))
    assert net.backward(np.ones((3, 4)), caches, need_dx=False)[0] is None
    assert calls == [True, False]                                    # last layer first


def test_sequential_shares_its_layers_arrays():
    net = conv_encoder(np.random.default_rng(0), np)
    assert list(net.params)[:2] == ["1.conv1.W", "1.conv1.b"]
    assert net.params["1.conv1.W"] is net.layers[1].conv1.params["W"]
    assert net.params["4.W"] is net.layers[4].params["W"]
    assert Sequential([Flatten((2, 2))]).backward(np.ones((1, 4)), [(1, 2, 2)], need_dx=False) \
        == (None, {})


# ---------------------------------------------------------------- initialisation and bad inputs

@pytest.mark.parametrize("cls", [Conv2d, ConvTranspose2d])
def test_he_and_glorot_initialisation(cls):
    he = cls(64, 32, 3, rng=np.random.default_rng(0)).params["W"]
    fan_in = 64 * 9                                                   # C_in kh kw (stride 1)
    assert he.dtype == np.float32 and he.shape[2:] == (3, 3)
    np.testing.assert_allclose(he.std(), np.sqrt(2 / fan_in), rtol=0.03)
    glorot = cls(64, 32, 3, init="glorot", rng=np.random.default_rng(0)).params["W"]
    a = np.sqrt(6 / (64 * 9 + 32 * 9))
    assert glorot.min() >= -a and glorot.max() <= a
    np.testing.assert_allclose(glorot.var(), a * a / 3, rtol=0.05)
    np.testing.assert_array_equal(cls(3, 2, 3, rng=np.random.default_rng(5)).params["W"],
                                  cls(3, 2, 3, rng=np.random.default_rng(5)).params["W"])


BAD = [
    (lambda: Conv2d(3, 2, 3).forward(np.zeros((4, 1, 8, 8))),
     r"Conv2d expects images of shape \(\.\.\., 3, H, W\) with 3 channels, got shape "
     r"\(4, 1, 8, 8\): pass 3-channel images"),
    (lambda: Conv2d(1, 2, 3).forward(np.zeros((4, 64))), r"got shape \(4, 64\): .*Unflatten"),
    (lambda: Conv2d(1, 2, 5, padding=1).forward(np.zeros((4, 1, 2, 8))),
     r"Conv2d's 5x5 kernel is larger than the 2x8 image padded by 1 on each side: use larger"),
    (lambda: ConvTranspose2d(2, 1, 4).forward(np.zeros((4, 1, 3, 3))), r"with 2 channels"),
    (lambda: ConvTranspose2d(1, 1, 1, padding=1).forward(np.zeros((4, 1, 2, 2))),
     r"ConvTranspose2d would turn the 2x2 image into 0x0 pixels .*use less padding"),
    (lambda: ConvTranspose2d(1, 1, 3, stride=2, output_padding=2),
     r"output_padding must be smaller than stride, got output_padding=2 with stride=2"),
    (lambda: Conv2d(1, 1, (3, 0)), r"kernel must be an integer >= 1, got 0"),
    (lambda: Conv2d(1, 1, "3"), r"kernel must be an integer >= 1 or a pair"),
    (lambda: Conv2d(1, 1, 3, stride=0), r"stride must be an integer >= 1, got 0"),
    (lambda: Conv2d(1, 1, 3, init="xavier"), r"Unknown init 'xavier': choose one of he, glorot"),
    (lambda: ResidualBlock(2, kind="sideways"), r"Unknown residual block kind 'sideways'"),
    (lambda: Unflatten((1, 4, 4)).forward(np.zeros((3, 15))),
     r"Unflatten expects inputs of shape \(\.\.\., 16\), got shape \(3, 15\)"),
    (lambda: Reshape((2, 3), (4, 2)), r"Reshape cannot turn \(2, 3\) into \(4, 2\)"),
    (lambda: Bias(5).forward(np.zeros((3, 1))), r"Bias expects inputs of shape \(\.\.\., 5\)"),
]


@pytest.mark.parametrize("call, message", BAD)
def test_bad_inputs_are_one_clear_sentence(call, message):
    with pytest.raises(InvalidInput, match=message) as err:
        call()
    assert "\n" not in str(err.value) and str(err.value).endswith(".")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("c_out,c_in,kernel,padding", [
    (2, 2, 3, 1), (4, 2, 3, 0), (3, 1, 3, 1),          # flipped convolution, then col2im (c_out > 2 c_in)
    (1, 3, 5, 2), (2, 1, 1, 0), (2, 2, 3, 3)])         # ... and col2im again: padding beyond k - 1
def test_both_forms_of_the_stride_1_transposed_convolution_match_the_scatter_loop(
        backend, c_out, c_in, kernel, padding):
    """conv2d_transpose at stride 1 sums by a convolution with the flipped kernel where that reads
    less memory, else by col2im: both against the pixelwise loop."""
    rng = np.random.default_rng(c_out + 3 * c_in + 7 * kernel + padding)
    be = get_backend(backend)
    W = rng.standard_normal((c_out, c_in, kernel, kernel))
    dy = rng.standard_normal((2, c_out, 4, 5))
    hw = (4 + kernel - 1 - 2 * padding, 5 + kernel - 1 - 2 * padding)
    dx = conv2d_transpose(be.asarray(dy, np.float64), be.asarray(W, np.float64), 1, padding, hw)
    expected = conv_transpose_loop(dy, W, np.zeros(c_in), 1, padding, 0)
    np.testing.assert_allclose(to_host(dx), expected, rtol=1e-12, atol=1e-12)

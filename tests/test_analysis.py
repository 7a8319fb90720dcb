"""minivae.analysis against known answers: KL per unit, attribute vectors, stroke width, paths."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae import VAE, TwoLayerVAE, to_host
from minivae.analysis import (attribute_vector, bits_per_pixel, decode_along, dequantize,
                              describe_units, interpolate, kl_per_dimension, mean_encoding, quantile_split,
                              sigma_for_r_loss_factor, stroke_thickness, unit_statistics)
from minivae.backend import get_backend
from minivae.checkpoint import save_checkpoint
from minivae.commands import analysis_main
from minivae.evaluate import latent_mean_variances
from minivae.likelihoods import GaussianFixed
from tests.backends import BACKENDS
from tests.realdata import data_root, mnist


def random_model(backend="numpy", x_dim=6, latent_dim=3, seed=0):
    """A float64 VAE with non-trivial weights (Glorot's are too small to move logvar much)."""
    model = VAE(x_dim=x_dim, latent_dim=latent_dim, encoder_hidden=(5,), decoder_hidden=(5,),
                dtype="float64", seed=seed, backend=backend)
    rng = np.random.default_rng(seed)
    model.load_params({n: rng.standard_normal(p.shape) for n, p in model.params.items()})
    return model


def linear_model(backend="numpy"):
    r"""x (3 pixels) -> [mu, logvar] by one dense layer, set by hand:

        mu_0 = 2 x_0 - x_1,  logvar_0 = log 4;    mu_1 = 0,  logvar_1 = 0  (an unused unit)
    """
    model = VAE(x_dim=3, latent_dim=2, encoder_hidden=(), decoder_hidden=(4,), dtype="float64",
                backend=backend)
    W = np.zeros((3, 4))
    W[0, 0], W[1, 0] = 2.0, -1.0
    b = np.array([0.0, 0.0, math.log(4.0), 0.0])
    model.load_params({**{n: to_host(p) for n, p in model.params.items()},
                       "encoder.0.W": W, "encoder.0.b": b})
    return model


# ---------------------------------------------------------------- KL per unit

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_kl_per_dimension_sums_to_the_models_mean_kl(backend, batch_size):
    model = random_model(backend)
    x = np.random.default_rng(1).random((23, 6))
    kl = kl_per_dimension(model, x, batch_size=batch_size)
    _, _, stats = model.forward(model.backend.asarray(x, np.float64))
    assert isinstance(kl, np.ndarray) and kl.shape == (3,) and np.all(kl >= 0)
    np.testing.assert_allclose(kl.sum(), float(stats["kl"]), rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kl_per_dimension_of_a_hand_set_encoder(backend):
    model = linear_model(backend)
    x = np.random.default_rng(2).random((50, 3))
    mu0 = 2 * x[:, 0] - x[:, 1]
    expected = [0.5 * (4 + np.mean(mu0 ** 2) - 1 - math.log(4)), 0.0]   # the unused unit: 0 nats
    np.testing.assert_allclose(kl_per_dimension(model, x, batch_size=8), expected, rtol=1e-12,
                               atol=1e-15)


def test_kl_per_dimension_rejects_empty_data():
    with pytest.raises(ValueError, match="no rows"):
        kl_per_dimension(random_model(), np.zeros((0, 6)))


# ---------------------------------------------------------------- unit_statistics

def random_two_layer(backend="numpy", seed=0):
    """A float64 two-layer model (6 pixels, h1 = 3, h2 = 2) with non-trivial random weights."""
    model = TwoLayerVAE(x_dim=6, h1_dim=3, h2_dim=2, x_hidden=(5,), h_hidden=(4,), dtype="float64",
                        seed=seed, backend=backend)
    rng = np.random.default_rng(seed)
    model.load_params({n: 0.7 * rng.standard_normal(p.shape) for n, p in model.params.items()})
    return model


def hand_set_two_layer(backend="numpy"):
    r"""A two-layer model whose unit statistics are known:

        q(h1|x)  = N(0, diag(4, 1, 1))      p(h1|h2) = N(0, I)      (the last layers' weights are 0)
        q(h2|h1) = N((0.5, 0), I)

    so per unit KL(h1) = (1/2 (4 - 1 - log 4), 0, 0), KL(h2) = (0.5^2 / 2, 0), E_x Var_q = (4, 1, 1)
    and (1, 1), and no mean moves with x.
    """
    model = random_two_layer(backend)
    params = {n: to_host(p) for n, p in model.params.items()}
    for net, bias in (("q1", [0, 0, 0, math.log(4.0), 0, 0]), ("q2", [0.5, 0, 0, 0]),
                      ("p1", [0.0] * 6)):
        last = len(getattr(model, net).sizes) - 2
        params[f"{net}.{last}.W"] = np.zeros_like(params[f"{net}.{last}.W"])
        params[f"{net}.{last}.b"] = np.array(bias, dtype=np.float64)
    model.load_params(params)
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_layer_unit_kls_sum_to_the_elbos_kl_for_the_same_noise(backend):
    model = random_two_layer(backend)
    xp = model.xp
    x = xp.asarray(np.random.default_rng(1).integers(0, 2, (7, 6)), dtype=xp.float64)
    stats = unit_statistics(model, x, n_samples=4, rng=model.backend.generator("unit_statistics", 11))
    eps = model.draw_eps(4, 7, model.backend.generator("unit_statistics", 11))
    _, _, elbo_stats = model.forward(x, "elbo", k=4, eps=eps)
    assert [s["kl"].shape for s in stats] == [(3,), (2,)]
    assert stats[0]["kl"].sum() + stats[1]["kl"].sum() == pytest.approx(float(elbo_stats["kl"]),
                                                                         rel=1e-10)
    for s, mean_var in zip(stats, latent_mean_variances(model, x)):
        np.testing.assert_allclose(s["mean_var"], mean_var)
        assert (s["post_var"] > 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_layer_unit_statistics_of_a_hand_set_model(backend):
    model = hand_set_two_layer(backend)
    x = model.xp.asarray(np.random.default_rng(2).integers(0, 2, (40, 6)), dtype=model.xp.float64)
    h1, h2 = unit_statistics(model, x, n_samples=2500, batch_size=16)
    # unit 0 of h1: log q - log p = -log 2 + 3/8 h^2, h ~ N(0, 4): sd 2.1 a draw, 100,000 draws
    assert h1["kl"][0] == pytest.approx(0.5 * (4 - 1 - math.log(4)), abs=0.03)
    np.testing.assert_allclose(h1["kl"][1:], 0.0, atol=1e-12)       # q and p are the same N(0, 1)
    np.testing.assert_allclose(h2["kl"], [0.125, 0.0], atol=1e-12)  # closed form: no noise
    np.testing.assert_allclose(h1["post_var"], [4.0, 1.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(h2["post_var"], [1.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(np.concatenate([h1["mean_var"], h2["mean_var"]]), 0.0, atol=1e-20)
    h1_exact_kl = dict(h1, kl=np.array([0.5 * (4 - 1 - math.log(4)), 0.0, 0.0]))
    assert describe_units([h1_exact_kl, h2]).splitlines() == [
        "h1 (3 units): 0 active (Cov_x E_q[u] > 0.01); 1 carry > 0.1 nats of KL (0.81 in all); "
        "0 have Cov_x E_q[u] / (Cov_x E_q[u] + E_x Var_q u) > 0.01; median posterior sd 1.00",
        "h2 (2 units): 0 active (Cov_x E_q[u] > 0.01); 1 carry > 0.1 nats of KL (0.12 in all); "
        "0 have Cov_x E_q[u] / (Cov_x E_q[u] + E_x Var_q u) > 0.01; median posterior sd 1.00"]
    with pytest.raises(ValueError, match="n_samples must be at least 2"):
        unit_statistics(model, x, n_samples=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_layer_unit_statistics_of_a_hand_set_encoder(backend):
    model = linear_model(backend)                   # mu_0 = 2 x_0 - x_1, sigma_0^2 = 4; unit 1 unused
    x = model.xp.asarray([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 5.0], [0.0, 0.0, 1.0]])
    (z,) = unit_statistics(model, x)
    mu0 = np.array([2.0, -1.0, 1.0, 0.0])
    np.testing.assert_allclose(z["kl"], kl_per_dimension(model, x))
    np.testing.assert_allclose(z["mean_var"], [mu0.var(), 0.0], atol=1e-15)
    np.testing.assert_allclose(z["post_var"], [4.0, 1.0])
    assert describe_units([z]).startswith("z (2 units): 1 active")


def test_command_line_describes_each_layer(tmp_path, capsys):
    mnist()                                                    # fails in CI if the data is missing
    model = TwoLayerVAE(h1_dim=4, h2_dim=2, x_hidden=(8,), h_hidden=(4,), seed=0)
    path = save_checkpoint(tmp_path / "c.npz", model, None, {"dataset": "mnist"})
    args = ["--n", "30", "--samples", "3", "--data-dir", str(data_root()), "--offline"]
    assert analysis_main([str(path), *args, "--per-unit"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "mnist test, 30 images:"
    assert out[1].startswith("h1 (4 units): ") and out[2].startswith("h2 (2 units): ")
    assert len(out) == 3 + (1 + 4) + (1 + 2)                   # a header and a row per unit
    assert analysis_main([str(path), *args[:-1], "--samples", "1"]) == 2
    assert "n_samples must be at least 2" in capsys.readouterr().err
    assert analysis_main([str(tmp_path / "nope.npz")]) == 2
    assert "No checkpoint at" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    assert analysis_main([str(tmp_path / "bad.npz"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


# ---------------------------------------------------------------- attribute vectors

@pytest.mark.parametrize("backend", BACKENDS)
def test_attribute_vector_of_identical_groups_is_zero(backend):
    model = random_model(backend)
    x = np.random.default_rng(3).random((10, 6))
    v = attribute_vector(model, x, x[::-1], batch_size=3)                  # same rows, other order
    assert v.shape == (3,) and type(v) is type(model.params["encoder.0.W"])   # on the device
    np.testing.assert_allclose(to_host(v), 0.0, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_attribute_vector_of_a_hand_set_encoder(backend):
    model = linear_model(backend)
    rng = np.random.default_rng(4)
    x_a, x_b = rng.random((9, 3)), rng.random((14, 3))
    d = x_a.mean(0) - x_b.mean(0)
    v = to_host(attribute_vector(model, x_a, x_b, batch_size=4))
    np.testing.assert_allclose(v, [2 * d[0] - d[1], 0.0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(to_host(mean_encoding(model, x_a)),
                               [2 * x_a[:, 0].mean() - x_a[:, 1].mean(), 0.0], rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_along_adds_w_v_to_the_encoder_mean_and_decodes(backend):
    model = random_model(backend)
    x = np.random.default_rng(5).random((4, 6))
    v, weights = model.xp.asarray([0.5, -1.0, 2.0]), np.array([-1.0, 0.0, 2.5])
    out = decode_along(model, x, v, weights)                                 # (R, W, P)
    assert out.shape == (4, 3, 6) and type(out) is type(v)                  # on the device
    mu, _ = model.encode(model.xp.asarray(x))
    for j, w in enumerate(weights):
        np.testing.assert_allclose(to_host(out[:, j]), to_host(model.decode(mu + w * v)),
                                   rtol=1e-12)


# ---------------------------------------------------------------- stroke width

def bar(top, left, height, width, side=28, value=1.0):
    x = np.zeros((side, side))
    x[top:top + height, left:left + width] = value
    return x


@given(h=st.integers(1, 20), w=st.integers(1, 20), top=st.integers(0, 27), left=st.integers(0, 27),
       value=st.floats(0.05, 1.0))
def test_stroke_thickness_of_a_bar_is_area_over_half_its_outline(h, w, top, left, value):
    h, w = min(h, 28 - top), min(w, 28 - left)                  # keep the bar inside the image
    t = stroke_thickness(bar(top, left, h, w, value=value)[None])
    np.testing.assert_allclose(t, [h * w / (h + w)], rtol=1e-12)   # -> the width when long


def test_stroke_thickness_ranks_bars_by_width_and_reads_flat_rows():
    images = np.stack([bar(5, 2, 1, 24), bar(5, 2, 2, 24), bar(5, 2, 4, 24), np.zeros((28, 28))])
    t = stroke_thickness(images.reshape(4, 784))               # (N, P) rows of square images
    assert t.shape == (4,) and np.all(np.diff(t[:3]) > 0)
    np.testing.assert_allclose(t[:3], [24 / 25, 48 / 26, 96 / 28])
    assert t[3] == 0.0                                          # no ink, no division by zero
    with pytest.raises(ValueError, match="square"):
        stroke_thickness(np.zeros((2, 10)))


def test_quantile_split_works_within_each_group():
    values = np.array([1, 2, 3, 4, 10, 20, 30, 40], dtype=float)
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    high, low = quantile_split(values, 0.25, groups)
    np.testing.assert_array_equal(np.flatnonzero(high), [3, 7])  # the largest of each group
    np.testing.assert_array_equal(np.flatnonzero(low), [0, 4])
    high, low = quantile_split(values, 0.25)                     # one group: the tails overall
    np.testing.assert_array_equal(np.flatnonzero(high), [6, 7])
    np.testing.assert_array_equal(np.flatnonzero(low), [0, 1])


# ---------------------------------------------------------------- interpolation

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["linear", "spherical"])
@given(lead=st.lists(st.integers(1, 3), max_size=2), d=st.integers(1, 5), steps=st.integers(2, 7),
       seed=st.integers(0, 2**32 - 1))
def test_interpolation_starts_and_ends_exactly_at_the_two_codes(backend, method, lead, d, steps,
                                                                seed):
    rng = np.random.default_rng(seed)
    be = get_backend(backend)
    z_a, z_b = (be.asarray(rng.standard_normal((*lead, d)), np.float64) for _ in range(2))
    path = to_host(interpolate(z_a, z_b, steps, method))
    assert path.shape == (*lead, steps, d)
    np.testing.assert_array_equal(path[..., 0, :], to_host(z_a))
    np.testing.assert_array_equal(path[..., -1, :], to_host(z_b))


def test_linear_and_spherical_midpoints():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    np.testing.assert_allclose(interpolate(a, b, 3)[1], [0.5, 0.5])
    np.testing.assert_allclose(interpolate(a, b, 3, "spherical")[1], [2 ** -0.5, 2 ** -0.5])
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, 4, 8))
    b *= (np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1))[:, None]   # equal norms
    path = interpolate(a, b, 11, "spherical")                                  # (4, 11, 8)
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1),
                               np.repeat(np.linalg.norm(a, axis=-1)[:, None], 11, 1), rtol=1e-12)


def test_spherical_interpolation_of_parallel_or_zero_codes_is_linear():
    a = np.array([1.0, 2.0, 3.0])
    for b in (2 * a, a, -a, np.zeros(3)):                 # W = 0 or pi, and a zero vector
        np.testing.assert_allclose(interpolate(a, b, 5, "spherical"), interpolate(a, b, 5))
    with pytest.raises(ValueError, match="linear or spherical"):
        interpolate(a, a, 5, "cubic")
    with pytest.raises(ValueError, match="at least 2"):
        interpolate(a, a, 1)


# ---------------------------------------------------------------- Gaussian decoders

@given(r=st.floats(1.0, 1e5), p=st.integers(1, 50), seed=st.integers(0, 2**32 - 1))
def test_weighted_squared_error_is_a_gaussian_with_sigma_for_r(r, p, seed):
    r"""r/P sum (x - m)^2 and -log N(x; m, sigma^2 I) differ by a constant and share gradients."""
    rng = np.random.default_rng(seed)
    sigma = sigma_for_r_loss_factor(r, p)
    np.testing.assert_allclose(sigma ** 2, p / (2 * r), rtol=1e-14)
    lik = GaussianFixed(sigma)
    x, m = rng.random((2, 6, p))                                 # 6 images, p pixels
    logp, cache = lik.forward(x, m)
    keras = r * ((x - m) ** 2).mean(axis=-1)                     # Foster's r_loss_factor * MSE
    const = 0.5 * p * math.log(2 * math.pi * sigma ** 2)
    np.testing.assert_allclose(-logp - keras, const, rtol=1e-10, atol=1e-9 * (1 + abs(const)))
    dm = -lik.backward(np.ones(6), cache)                        # d(-log p)/dm
    np.testing.assert_allclose(dm, -2 * r / p * (x - m), rtol=1e-10, atol=1e-12)


def test_bits_per_pixel_of_the_uniform_density_is_eight_and_one_nat_per_pixel_adds_a_bit():
    assert bits_per_pixel(0.0, 784) == pytest.approx(8.0)          # log p = 0 on [0, 1]^P
    assert bits_per_pixel(784 * math.log(2), 784) == pytest.approx(9.0)
    assert bits_per_pixel(0.0, 10, levels=2) == pytest.approx(1.0)


def test_sigma_for_r_loss_factor_known_value_and_bad_input():
    assert sigma_for_r_loss_factor(1000, 784) == pytest.approx(math.sqrt(0.392))
    with pytest.raises(ValueError, match="> 0"):
        sigma_for_r_loss_factor(0, 784)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dequantize_spreads_each_grey_level_over_its_bin(backend):
    be = get_backend(backend)
    k = np.random.default_rng(6).integers(0, 256, size=(50, 784))
    x = be.asarray(k / 255, np.float32)                          # what load_dataset returns
    xq = dequantize(x, be.generator("figures"))
    lo = be.asarray(k / 256, np.float32)
    assert xq.dtype == x.dtype and xq.shape == x.shape
    assert bool((xq >= lo).all()) and bool((xq <= lo + 1 / 256).all())
    u = to_host(xq * 256).astype(np.float64) - k                 # the noise, U[0, 1)
    assert abs(u.mean() - 0.5) < 0.01 and u.std() == pytest.approx(12 ** -0.5, rel=0.02)
    assert np.unique(to_host(xq[:, 0])).size == 50               # no two images agree exactly

"""The whole VAE: loss gradients for every objective, the bounds' properties, the model's API."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae.backend import get_backend, to_host
from minivae.model import VAE
from tests.backends import BACKENDS, needs_gpu
from tests.gradcheck import check_loss_gradients, draw_x


def small_model(backend="numpy", likelihood="bernoulli", activation="tanh", seed=0, x_dim=5,
                latent_dim=2, dtype="float64"):
    return VAE(x_dim=x_dim, latent_dim=latent_dim, encoder_hidden=(4,), decoder_hidden=(3,),
               activation=activation, likelihood=likelihood, dtype=dtype, seed=seed,
               backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("objective,likelihood", [
    ("elbo", "bernoulli"), ("elbo", "gaussian"), ("elbo", "gaussian_learned"),
    ("mc_elbo", "bernoulli"), ("mc_elbo", "gaussian_learned"),
    ("iwae", "bernoulli"), ("iwae", "gaussian"), ("iwae", "gaussian_learned")])
@given(k=st.integers(1, 4), b=st.integers(1, 3), beta=st.sampled_from([1.0, 0.5, 3.0]),
       seed=st.integers(0, 2**32 - 1))
def test_model_gradients_match_finite_differences(backend, objective, likelihood, k, b, beta, seed):
    if objective == "iwae" and k == 1:
        k = 3                                                 # the importance-weighted case, k > 1
    model = small_model(backend, likelihood, seed=seed % 1000)
    check_loss_gradients(model, objective, likelihood, k, b, beta, np.random.default_rng(seed))


def test_loss_is_the_negative_mean_bound_and_deterministic_given_eps():
    rng = np.random.default_rng(0)
    model = small_model()
    x = draw_x(rng, "bernoulli", 6, 5)
    eps = rng.standard_normal((5, 6, 2))
    for objective in ("elbo", "mc_elbo", "iwae"):
        loss1, g1, _ = model.loss_and_grads(x, objective, 5, eps=eps)
        loss2, g2, _ = model.loss_and_grads(x, objective, 5, eps=eps)
        assert float(loss1) == float(loss2)
        np.testing.assert_allclose(float(loss1), -model.bound(x, objective, 5, eps=eps).mean())
        for n in g1:
            np.testing.assert_array_equal(g1[n], g2[n])


def test_iwae_at_k1_equals_the_single_sample_elbo_for_the_same_eps():
    rng = np.random.default_rng(1)
    model = small_model()
    x = draw_x(rng, "bernoulli", 8, 5)
    eps = rng.standard_normal((1, 8, 2))
    loss_i, g_i, _ = model.loss_and_grads(x, "iwae", 1, eps=eps)
    loss_m, g_m, _ = model.loss_and_grads(x, "mc_elbo", 1, eps=eps)
    np.testing.assert_allclose(float(loss_i), float(loss_m), rtol=1e-12)
    for n in g_i:
        np.testing.assert_allclose(g_i[n], g_m[n], rtol=1e-10, atol=1e-12)


def test_log_weights_are_the_terms_of_the_sampled_bounds():
    rng = np.random.default_rng(6)
    model = small_model(seed=4)
    x = draw_x(rng, "bernoulli", 5, 5)
    eps = rng.standard_normal((7, 5, 2))
    log_w = model.log_weights(x, eps)
    assert log_w.shape == (7, 5)
    np.testing.assert_allclose(model.bound(x, "mc_elbo", 7, eps=eps), log_w.mean(0), rtol=1e-12)
    np.testing.assert_allclose(model.bound(x, "iwae", 7, eps=eps), np.log(np.exp(log_w).mean(0)),
                               rtol=1e-12)


def test_monte_carlo_elbo_averages_to_the_analytic_elbo():
    # E_eps[log p(x|z) + log p(z) - log q(z|x)] = E_eps[log p(x|z)] - KL: same mean, more noise
    rng = np.random.default_rng(2)
    model = small_model(seed=3)
    x = draw_x(rng, "bernoulli", 4, 5)
    eps = rng.standard_normal((100_000, 4, 2))
    mc = model.forward(x, "mc_elbo", 100_000, eps=eps)[0]
    analytic = model.forward(x, "elbo", 100_000, eps=eps)[0]
    assert np.all(np.abs(mc - analytic) < 0.02), (mc, analytic)


def exact_log_px(model, x, half_width=8.0, n=801):
    """log p(x) = log integral p(x|z) N(z; 0, I) dz for a 2-D latent, by the trapezoid-free grid sum."""
    t = np.linspace(-half_width, half_width, n)
    z = np.stack(np.meshgrid(t, t), -1).reshape(-1, 2)          # (n^2, 2)
    out, _ = model.decoder.forward(z[:, None, :])                # (n^2, 1, P), broadcast over x
    log_px_z, _ = model.likelihood.forward(x, out)               # (n^2, B)
    log_f = log_px_z - 0.5 * (z * z).sum(-1, keepdims=True) - np.log(2 * np.pi)
    m = log_f.max(0)
    return m + np.log(np.exp(log_f - m).sum(0) * (t[1] - t[0]) ** 2)


def test_iwae_bound_increases_with_k_and_stays_below_exact_log_px():
    rng = np.random.default_rng(4)
    model = small_model(seed=5)
    x = draw_x(rng, "bernoulli", 3, 5)
    log_px = exact_log_px(model, x)
    means, ses = [], []                               # E[L_k] from 2000 independent draws of L_k
    for k in (1, 5, 50):
        eps = rng.standard_normal((2000, k, 3, 2))
        L = np.array([model.bound(x, "iwae", k, eps=e) for e in eps])
        means.append(L.mean(0))
        ses.append(L.std(0) / np.sqrt(len(L)))
    means, ses = np.array(means), np.array(ses)       # (3 values of k, B)
    assert np.all(np.diff(means, axis=0) > 0), means
    assert np.all(means < log_px + 4 * ses), (means, ses, log_px)
    assert np.all(log_px - means[-1] < 0.1 * (log_px - means[0]))   # L_50 is most of the way there


@pytest.mark.parametrize("objective", ["elbo", "mc_elbo", "iwae"])
def test_extreme_encoder_outputs_give_finite_loss_and_gradients(objective):
    rng = np.random.default_rng(5)
    model = VAE(x_dim=6, latent_dim=2, encoder_hidden=(3,), decoder_hidden=(3,), seed=0)
    # last encoder layer: logvar outputs of +-60, mu outputs large; decoder logits of +-1e4
    enc_b = model.params["encoder.1.b"]
    enc_b[...] = [5.0, -5.0, 60.0, -60.0]
    model.params["encoder.1.W"][...] = 0
    dec_b = model.params["decoder.1.b"]
    dec_b[...] = [1e4, -1e4, 1e4, -1e4, 1e4, -1e4]
    x = draw_x(rng, "bernoulli", 4, 6).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            loss, grads, stats = model.loss_and_grads(x, objective, 5)
    assert np.isfinite(float(loss)) and np.isfinite(float(stats["kl"]))
    for n, g in grads.items():
        assert np.all(np.isfinite(g)), n


def test_api_shapes_dtypes_and_sampling():
    model = VAE(x_dim=12, latent_dim=3, encoder_hidden=(8,), decoder_hidden=(8, 6), seed=0)
    rng = np.random.default_rng(0)
    x = (rng.random((5, 12)) < 0.5).astype(np.float32)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 3) and mu.dtype == np.float32
    r = model.reconstruct(x)
    assert r.shape == (5, 12) and np.all((r > 0) & (r < 1))
    s = model.sample(7)
    assert s.shape == (7, 12) and s.dtype == np.float32
    assert model.decode(np.zeros((2, 3), np.float32)).shape == (2, 12)
    assert model.n_params == sum(p.size for p in model.params.values())
    loss, grads, stats = model.loss_and_grads(x.astype(np.float64))    # cast to the model's dtype
    assert loss.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    assert set(stats) == {"kl", "recon"}


def test_same_seed_same_weights_and_params_are_shared_with_layers():
    a, b = small_model(seed=7), small_model(seed=7)
    for n in a.params:
        np.testing.assert_array_equal(a.params[n], b.params[n])
    assert a.params["encoder.0.W"] is a.encoder.layers[0].params["W"]
    assert not np.array_equal(a.params["encoder.0.W"], small_model(seed=8).params["encoder.0.W"])


def test_bad_inputs_are_clear_errors():
    model = small_model()
    with pytest.raises(ValueError, match=r"expects \(batch, 5\)"):
        model.loss_and_grads(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"expects \(batch, 5\)"):
        model.encode(np.zeros(5))
    with pytest.raises(ValueError, match=r"eps has shape .* need \(2, 3, 2\)"):
        model.loss_and_grads(np.zeros((3, 5)), "iwae", 2, eps=np.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match="Unknown objective 'vae'"):
        model.loss_and_grads(np.zeros((3, 5)), "vae")
    with pytest.raises(ValueError, match="missing"):
        model.load_params({})
    with pytest.raises(ValueError, match="architecture differs"):
        model.load_params({n: np.zeros(p.shape + (1,)) for n, p in model.params.items()})


def test_load_params_copies_in_place_and_output_bias_init():
    a, b = small_model(seed=1), small_model(seed=2)
    w_before = b.params["encoder.0.W"]
    b.load_params(a.params)
    assert b.params["encoder.0.W"] is w_before
    for n in a.params:
        np.testing.assert_array_equal(a.params[n], b.params[n])
    mean_x = np.array([0.0, 0.2, 0.5, 0.9, 1.0])
    b.init_output_bias(mean_x)
    p = np.clip(mean_x, 0.001, 0.999)
    np.testing.assert_allclose(b.params["decoder.1.b"], np.log(p / (1 - p)))
    b.params["decoder.1.W"][...] = 0                  # the output is then the bias alone
    np.testing.assert_allclose(b.decode(np.zeros((1, 2)))[0], p)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("objective", ["elbo", "mc_elbo", "iwae"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numpy_and_cupy_give_the_same_loss_and_gradients(objective, dtype):
    rng = np.random.default_rng(0)
    x = (rng.random((16, 784)) < 0.3).astype(dtype)
    eps = rng.standard_normal((5, 16, 50)).astype(dtype)
    cpu = VAE(dtype=dtype, seed=3, backend="numpy")
    gpu = VAE(dtype=dtype, seed=3, backend="cupy")
    be = get_backend("cupy")
    l_cpu, g_cpu, _ = cpu.loss_and_grads(x, objective, 5, eps=eps)
    l_gpu, g_gpu, _ = gpu.loss_and_grads(be.asarray(x, dtype), objective, 5, eps=be.asarray(eps, dtype))
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == "float64" else dict(rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(float(l_gpu), float(l_cpu), **tol)
    for n in g_cpu:
        np.testing.assert_allclose(to_host(g_gpu[n]), g_cpu[n], err_msg=n, **tol)

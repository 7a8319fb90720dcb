"""STL, DReG, MIWAE, PIWAE and CIWAE: gradient checks where an estimator is the gradient of a scalar
(or of a surrogate with the score path's parameters held fixed), identities, and Monte-Carlo tests
of the expectations no finite difference can see."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae import gaussian as G
from minivae.backend import to_host
from minivae.model import VAE
from minivae.objectives import ESTIMATORS, get_estimator
from minivae.two_layer import TwoLayerVAE
from tests.backends import BACKENDS
from tests.gradcheck import central_differences, draw_x


def tiny(backend="numpy", seed=0):
    return VAE(x_dim=5, latent_dim=2, encoder_hidden=(3,), decoder_hidden=(3,), dtype="float64",
               seed=seed, backend=backend)


def inputs(model, rng, s, b):
    be = model.backend
    return (be.asarray(draw_x(rng, "bernoulli", b, model.x_dim), np.float64),
            be.asarray(rng.standard_normal((s, b, model.eps_dim)), np.float64))


def assert_close(grads, numeric, names, label):
    for n in names:
        np.testing.assert_allclose(to_host(grads[n]), numeric[n], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{label}: d{n}")


def split_names(model):
    enc = [n for n in model.params if n.split(".")[0] in model.inference_networks]
    return enc, [n for n in model.params if n not in enc]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("estimator", ["miwae", "ciwae"])
@given(k=st.integers(1, 3), m=st.integers(1, 3), b=st.integers(1, 3),
       ciwae_beta=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_bounds_with_a_gradient_match_finite_differences(backend, estimator, k, m, b, ciwae_beta,
                                                         seed):
    # MIWAE and CIWAE are bounds: their estimator is the gradient of the loss they report
    rng = np.random.default_rng(seed)
    model = tiny(backend, seed % 1000)
    m = m if estimator == "miwae" else 1
    x, eps = inputs(model, rng, m * k, b)
    x0, eps0 = to_host(x).copy(), to_host(eps).copy()
    kw = dict(m=m, ciwae_beta=ciwae_beta, eps=eps)
    _, grads, _ = model.estimator_loss_and_grads(x, estimator, k, **kw)
    np.testing.assert_array_equal(to_host(x), x0)
    np.testing.assert_array_equal(to_host(eps), eps0)
    numeric = central_differences(
        model.params, lambda: float(model.estimator_loss_and_grads(x, estimator, k, **kw)[0]))
    assert_close(grads, numeric, model.params, estimator)


def path_only_surrogate(model, x, eps, coef):
    r"""-(1/B) sum_sb coef_sb log w_sb with z = mu(phi) + sigma(phi) eps, and log q(z|x) evaluated at
    the *current* z but with the encoder's output frozen at the parameters it had when this was
    made (the score path's parameters held fixed); coef (S, B) fixed too."""
    mu0, logvar0 = (a.copy() for a in model.encode(x))
    B = x.shape[0]

    def value():
        mu, logvar = model.encode(x)
        z, _ = G.reparameterize_forward(mu, logvar, eps)
        log_px, _ = model.likelihood.forward(x, model.decoder.forward(z)[0])
        log_w = log_px + G.log_std_normal_forward(z)[0] - G.log_normal_forward(z, mu0, logvar0)[0]
        return float(-(coef * log_w).sum() / B)
    return value


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("estimator", ["stl", "dreg"])
@given(k=st.integers(1, 4), b=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_path_only_estimators_are_the_gradient_of_their_surrogate(backend, estimator, k, b, seed):
    rng = np.random.default_rng(seed)
    model = tiny(backend, seed % 1000)
    x, eps = inputs(model, rng, k, b)
    _, grads, _ = model.estimator_loss_and_grads(x, estimator, k, eps=eps)
    _, iwae, _ = model.loss_and_grads(x, "iwae", k, eps=eps)
    enc, dec = split_names(model)
    for n in dec:                                   # the decoder gets IWAE's gradient
        np.testing.assert_allclose(to_host(grads[n]), to_host(iwae[n]), rtol=1e-12, atol=1e-14)
    log_w = model.log_weights(x, eps)
    w = log_w - log_w.max(axis=0)
    w_tilde = np.exp(to_host(w))
    w_tilde /= w_tilde.sum(axis=0)
    coef = model.backend.asarray(w_tilde if estimator == "stl" else w_tilde ** 2, np.float64)
    numeric = central_differences({n: model.params[n] for n in enc},
                                  path_only_surrogate(model, x, eps, coef))
    assert_close(grads, numeric, enc, estimator)


def test_piwae_is_iwae_of_all_samples_on_the_decoder_and_miwae_on_the_encoder():
    rng = np.random.default_rng(1)
    model = tiny(seed=3)
    x, eps = inputs(model, rng, 6, 4)                   # M = 2 groups of K = 3
    _, piwae, _ = model.estimator_loss_and_grads(x, "piwae", 3, m=2, eps=eps)
    _, iwae, _ = model.loss_and_grads(x, "iwae", 6, eps=eps)
    _, miwae, _ = model.estimator_loss_and_grads(x, "miwae", 3, m=2, eps=eps)
    enc, dec = split_names(model)
    for n in dec:
        np.testing.assert_allclose(piwae[n], iwae[n], rtol=1e-12, atol=1e-14, err_msg=n)
    for n in enc:
        np.testing.assert_allclose(piwae[n], miwae[n], rtol=1e-12, atol=1e-14, err_msg=n)
    assert not np.allclose(piwae[enc[0]], iwae[enc[0]])   # the two paths really differ


def test_identities_between_the_estimators():
    rng = np.random.default_rng(2)
    model = tiny(seed=4)
    x, eps = inputs(model, rng, 4, 3)

    def same(a, b):
        (la, ga, _), (lb, gb, _) = a, b
        np.testing.assert_allclose(la, lb, rtol=1e-12)
        for n in ga:
            np.testing.assert_allclose(ga[n], gb[n], rtol=1e-10, atol=1e-14, err_msg=n)

    est = model.estimator_loss_and_grads
    same(est(x, "miwae", 1, m=4, eps=eps), model.loss_and_grads(x, "mc_elbo", 4, eps=eps))
    same(est(x, "miwae", 4, m=1, eps=eps), model.loss_and_grads(x, "iwae", 4, eps=eps))
    same(est(x, "ciwae", 4, ciwae_beta=1.0, eps=eps), model.loss_and_grads(x, "mc_elbo", 4, eps=eps))
    same(est(x, "ciwae", 4, ciwae_beta=0.0, eps=eps), model.loss_and_grads(x, "iwae", 4, eps=eps))
    same(est(x, "iwae", 4, eps=eps), model.loss_and_grads(x, "iwae", 4, eps=eps))
    same(est(x, "stl", 1, eps=eps[:1]), est(x, "dreg", 1, eps=eps[:1]))   # w_tilde = 1 at k = 1


def encoder_gradients(model, x, estimator, k, draws, rng):
    """(draws, n) encoder gradients of ``estimator`` over independent eps (k, B, D)."""
    enc, _ = split_names(model)
    out = []
    for _ in range(draws):
        eps = rng.standard_normal((k, x.shape[0], model.eps_dim))
        if estimator == "mc_elbo":
            _, g, _ = model.loss_and_grads(x, "mc_elbo", k, eps=eps)
        else:
            _, g, _ = model.estimator_loss_and_grads(x, estimator, k, eps=eps)
        out.append(np.concatenate([g[n].ravel() for n in enc]))
    return np.array(out)


def assert_same_expectation(a, b, z=5.0):
    diff = a.mean(0) - b.mean(0)
    se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
    assert np.all(np.abs(diff) <= z * se + 1e-12), np.max(np.abs(diff) / se)
    # ... and the test can see a wrong gradient: the standard errors are small against it
    assert np.linalg.norm(se) < 0.1 * np.linalg.norm(b.mean(0))


def paired_encoder_gradients(seed, estimators, k, draws):
    """Encoder gradients of each estimator on one tiny model and batch, independent draws each."""
    model, rng = tiny(seed=seed), np.random.default_rng(seed)
    x = draw_x(rng, "bernoulli", 2, 5)
    return [encoder_gradients(model, x, e, k, draws, rng) for e in estimators]


def test_dreg_has_the_iwae_encoder_gradient_in_expectation():
    dreg, iwae = paired_encoder_gradients(5, ("dreg", "iwae"), 5, 3000)
    assert_same_expectation(dreg, iwae)
    assert dreg.var(0).sum() < iwae.var(0).sum()          # and, here, with less variance


def test_stl_at_k1_has_the_elbo_gradient_in_expectation():
    assert_same_expectation(*paired_encoder_gradients(6, ("stl", "mc_elbo"), 1, 4000))


def test_two_layers_refuse_the_path_only_estimators_and_run_the_others():
    model = TwoLayerVAE(x_dim=5, h1_dim=2, h2_dim=2, x_hidden=(3,), h_hidden=(3,), dtype="float64")
    rng = np.random.default_rng(7)
    x = draw_x(rng, "bernoulli", 2, 5)
    for estimator in ("stl", "dreg"):
        with pytest.raises(ValueError, match="one stochastic layer"):
            model.estimator_loss_and_grads(x, estimator, 3)
    for estimator, m in (("miwae", 2), ("piwae", 2), ("ciwae", 1), ("iwae", 1)):
        loss, grads, _ = model.estimator_loss_and_grads(x, estimator, 3, m=m)
        assert np.isfinite(loss) and set(grads) == set(model.params)


def test_the_estimator_table_and_bad_arguments():
    assert set(ESTIMATORS) == {"iwae", "stl", "dreg", "miwae", "piwae", "ciwae"}
    with pytest.raises(ValueError, match="Unknown estimator 'vr'"):
        get_estimator("vr")
    model = tiny()
    x = np.zeros((2, 5))
    with pytest.raises(ValueError, match="m=2 groups mean nothing"):
        model.estimator_loss_and_grads(x, "dreg", 3, m=2)
    with pytest.raises(ValueError, match="ciwae_beta"):
        model.estimator_loss_and_grads(x, "ciwae", 3, ciwae_beta=1.5)

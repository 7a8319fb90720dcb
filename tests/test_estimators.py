"""Score-function and reparameterised gradients of the ELBO: unbiasedness, variance, the example."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minivae.backend import to_host
from minivae.estimators import (RunningMoments, estimator_moments, flatten, gradient_estimates,
                                leave_one_out_advantage, reparameterization_grads,
                                score_function_backward, score_function_forward,
                                score_function_grads, summarize_moments)
from minivae import gaussian as G
from minivae.model import VAE
from tests.backends import BACKENDS
from tests.gradcheck import central_differences
from tests.realdata import REPO, data_root, mnist

# Every pixel is on in some row, so no encoder weight's gradient is identically zero.
X = np.array([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=float)


def small_model(backend="numpy", seed=0, likelihood="bernoulli"):
    return VAE(x_dim=4, latent_dim=2, encoder_hidden=(3,), decoder_hidden=(3,),
               likelihood=likelihood, dtype="float64", seed=seed, backend=backend)


def chunked_estimates(model, x, fn, chunks, k, rng):
    """(chunks, n_entries) host array: one estimate of k samples per chunk, eps from ``rng``."""
    return np.stack([to_host(flatten(fn(model.draw_eps(k, x.shape[0], rng))))
                     for _ in range(chunks)])


@pytest.mark.parametrize("seed,beta,likelihood,baseline", [
    (0, 1.0, "bernoulli", None), (1, 1.0, "bernoulli", "mean"),
    (2, 0.5, "bernoulli", None), (3, 0.5, "gaussian", "mean")])
def test_score_function_mean_matches_reparameterized_mean(seed, beta, likelihood, baseline):
    # 200,000 samples of each estimator in 100 chunks of 2,000; each chunk's estimate is
    # independent of the others, so their spread gives the standard error of the mean.
    model = small_model(seed=seed, likelihood=likelihood)
    x = model.backend.asarray(X if likelihood == "bernoulli" else X * 0.8 + 0.1, np.float64)
    rng = np.random.default_rng(seed)
    chunks, k = 100, 2000
    sf = chunked_estimates(model, x, lambda e: score_function_grads(model, x, e, beta, baseline),
                           chunks, k, rng)
    rp = chunked_estimates(model, x, lambda e: reparameterization_grads(model, x, e, beta),
                           chunks, k, rng)
    diff = sf.mean(axis=0) - rp.mean(axis=0)
    se = np.sqrt((sf.var(axis=0, ddof=1) + rp.var(axis=0, ddof=1)) / chunks)
    assert np.all(np.abs(diff) < 5 * se + 1e-8), np.max(np.abs(diff) / se)
    # ... and the test can see a wrong gradient: the standard errors are a few % of its size.
    assert np.linalg.norm(se) < 0.06 * np.linalg.norm(rp.mean(axis=0))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("baseline", [None, "mean"])
def test_score_function_backward_is_the_gradient_of_its_surrogate(backend, baseline):
    # With z and the weights a = f - b frozen, g_SF is the gradient of
    # S(phi) = -(1/(K B)) sum_ib a_ib log q_phi(z_ib | x_b): central differences in phi.
    model = small_model(backend, seed=4)
    be = model.backend
    x = be.asarray(X, np.float64)
    eps = be.asarray(np.random.default_rng(4).standard_normal((5, 3, 2)), np.float64)
    f, cache = score_function_forward(model, x, eps)
    grads = score_function_backward(model, f, cache, baseline)
    a = to_host(f if baseline is None else leave_one_out_advantage(f))
    mu, logvar = model.encode(x)
    z = to_host(G.reparameterize_forward(mu, logvar, eps)[0])

    def surrogate():
        mu, logvar = model.encode(x)
        log_q = to_host(G.log_normal_forward(be.asarray(z, np.float64), mu, logvar)[0])
        return -(a * log_q).sum() / a.size

    numeric = central_differences({name: model.params[name] for name in grads}, surrogate)
    for name, g in grads.items():
        np.testing.assert_allclose(to_host(g), numeric[name], rtol=1e-6, atol=1e-8, err_msg=name)


def test_leave_one_out_advantage_subtracts_the_other_samples_mean():
    f = np.random.default_rng(0).standard_normal((4, 3)) - 100
    others = np.stack([np.delete(f, i, axis=0).mean(axis=0) for i in range(4)])
    np.testing.assert_allclose(leave_one_out_advantage(f), f - others, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="at least 2 samples"):
        leave_one_out_advantage(f[:1])


def test_reparameterization_has_lower_variance_and_the_baseline_lowers_score_function_variance():
    model = small_model(seed=5)
    x = model.backend.asarray(X, np.float64)
    stats = {k: {n: summarize_moments(m) for n, m in
                 estimator_moments(model, x, k, 400, np.random.default_rng(k)).items()}
             for k in (2, 10)}
    for k, s in stats.items():
        rp, sf, sfb = (s[n]["total_variance"] for n in
                       ("reparameterization", "score_function", "score_function_baseline"))
        assert rp < sfb < sf, (k, rp, sfb, sf)
        assert s["reparameterization"]["snr"] > s["score_function"]["snr"]
    # Each reparameterised estimate averages k independent terms: its variance goes as 1/k.
    ratio = (stats[2]["reparameterization"]["total_variance"]
             / stats[10]["reparameterization"]["total_variance"])
    assert 3.5 < ratio < 7, ratio


def test_shapes_inputs_unmodified_and_bad_arguments():
    model = small_model(seed=6)
    x = model.backend.asarray(X, np.float64)
    eps = model.draw_eps(3, 3, np.random.default_rng(6))
    x0, eps0 = x.copy(), eps.copy()
    params0 = {n: p.copy() for n, p in model.params.items()}
    out = gradient_estimates(model, x, eps)
    assert set(out) == {"reparameterization", "score_function", "score_function_baseline"}
    enc = {n: p.shape for n, p in model.params.items() if n.startswith("encoder.")}
    for grads in out.values():
        assert {n: g.shape for n, g in grads.items()} == enc
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(eps, eps0)
    for n, p in model.params.items():
        np.testing.assert_array_equal(p, params0[n])
    # The same eps gives the same estimate: the maths is deterministic.
    again = score_function_grads(model, x, eps, baseline="mean")
    for n, g in again.items():
        np.testing.assert_array_equal(g, out["score_function_baseline"][n])
    assert "score_function_baseline" not in gradient_estimates(model, x, eps[:1])
    with pytest.raises(ValueError, match="baseline"):
        score_function_grads(model, x, eps, baseline="median")
    with pytest.raises(ValueError, match="eps has shape"):
        score_function_grads(model, x, eps[:, :2])
    with pytest.raises(ValueError, match="eps has shape"):
        reparameterization_grads(model, x, eps[0])


def test_running_moments_match_numpy():
    g = np.random.default_rng(7).standard_normal((20, 6)) * 3 + 50
    m = RunningMoments()
    for row in g:
        m.update(row)
    np.testing.assert_allclose(m.mean, g.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m.var, g.var(axis=0, ddof=1), rtol=1e-10)
    s = summarize_moments(m)
    assert s["repeats"] == 20
    np.testing.assert_allclose(s["total_variance"], g.var(axis=0, ddof=1).sum(), rtol=1e-10)


def run_example(*args, env=None):
    env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    return subprocess.run([sys.executable, str(REPO / "examples" / "gradient_variance.py"), *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def test_example_smoke_run_prints_the_table_and_writes_json_and_figure(tmp_path):
    pytest.importorskip("matplotlib")
    mnist()
    out = tmp_path / "gv"
    r = run_example("--data-dir", str(data_root()), "--offline", "--out", str(out),
                    "--subset", "500", "--pretrain-epochs", "1", "--samples", "1", "4",
                    "--repeats", "3", "--batch-size", "20", "--hidden", "32", "--latent-dim", "4")
    assert r.returncode == 0, r.stderr
    assert "reparam" in r.stdout and "score fn+b" in r.stdout
    rows = [line for line in r.stdout.splitlines() if line.lstrip().startswith(("1 |", "4 |"))]
    assert len(rows) == 2 and "n/a" in rows[0] and "n/a" not in rows[1]
    assert (out / "gradient_variance.png").stat().st_size > 0
    result = json.loads((out / "gradient_variance.json").read_text())
    assert [row["k"] for row in result["rows"]] == [1, 4]
    k4 = result["rows"][1]
    assert k4["reparameterization"]["total_variance"] < k4["score_function"]["total_variance"]
    assert result["repeats"] == 3 and result["batch_size"] == 20


def test_example_missing_data_is_one_clear_error(tmp_path):
    r = run_example("--offline", "--data-dir", str(tmp_path / "nowhere"),
                    "--out", str(tmp_path / "o"),
                    env={"MINIVAE_DATA": str(tmp_path / "empty"), "HOME": str(tmp_path),
                         "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert r.returncode == 2
    assert "error:" in r.stderr and "nowhere" in r.stderr and "Traceback" not in r.stderr

"""The log-likelihood estimator against exact log p(x), chunking, active units, the command line."""
import sys

import numpy as np
import pytest

from minivae import VAE
from minivae.checkpoint import save_checkpoint
from minivae.commands import evaluate_main
from minivae.evaluate import active_units, log_likelihood, summarize
from tests.realdata import data_root, mnist


def tiny_model(seed=0):
    """4 binary pixels, a 1-D latent: log p(x) is a 1-D integral we can do on a grid."""
    model = VAE(x_dim=4, latent_dim=1, encoder_hidden=(5,), decoder_hidden=(5,), seed=seed,
                dtype="float64")
    rng = np.random.default_rng(seed)
    for p in model.params.values():                    # a less trivial decoder than Glorot's
        p[...] = 1.5 * rng.standard_normal(p.shape)
    return model


def exact_log_px(model, x, n=20001, half_width=10.0):
    z = np.linspace(-half_width, half_width, n)[:, None, None]           # (n, 1, 1)
    out, _ = model.decoder.forward(z)                                       # (n, 1, P)
    log_px_z, _ = model.likelihood.forward(x, out)                          # (n, B)
    log_f = log_px_z - 0.5 * z[:, :, 0] ** 2 - 0.5 * np.log(2 * np.pi)
    m = log_f.max(0)
    return m + np.log(np.exp(log_f - m).sum(0) * (z[1, 0, 0] - z[0, 0, 0]))


def all_binary_images(p=4):
    return np.array([[(i >> j) & 1 for j in range(p)] for i in range(2 ** p)], dtype=float)


def test_exact_log_px_sums_to_one_over_all_images():
    model = tiny_model()
    log_px = exact_log_px(model, all_binary_images())
    np.testing.assert_allclose(np.exp(log_px).sum(), 1.0, rtol=1e-8)      # the grid is fine enough


def test_estimator_approaches_exact_log_px_as_k_grows():
    model = tiny_model(seed=1)
    x = all_binary_images()
    log_px = exact_log_px(model, x)
    rng = np.random.default_rng(0)
    gaps, ses = [], []
    for k in (1, 10, 100, 1000):
        runs = np.array([log_likelihood(model, x, k, rng) for _ in range(50)])   # (50, 16)
        gaps.append(log_px.mean() - runs.mean())
        ses.append(runs.mean(1).std() / np.sqrt(50))
    gaps, ses = np.array(gaps), np.array(ses)
    assert np.all(gaps > -4 * ses), (gaps, ses)               # L_k <= log p(x) on average
    assert np.all(np.diff(gaps) < 0), gaps                    # and closer as k grows
    assert gaps[-1] < 0.05 * gaps[0]                          # L_1000 is nearly exact


def test_chunked_estimate_equals_unchunked():
    model = tiny_model(seed=2)
    x = all_binary_images()
    one = log_likelihood(model, x, 500, np.random.default_rng(7), max_rows=10**6, batch_size=16)
    chunked = log_likelihood(model, x, 500, np.random.default_rng(7), max_rows=16 * 37,
                             batch_size=16)                    # 14 chunks of 37 samples, one of 19
    np.testing.assert_allclose(chunked, one, rtol=1e-12)
    # batching over examples changes which eps each example gets, not the estimate's target
    small = log_likelihood(model, x, 2000, np.random.default_rng(8), max_rows=1000)
    assert abs(small.mean() - one.mean()) < 0.05


def test_active_units_on_a_model_built_to_have_three():
    model = VAE(x_dim=6, latent_dim=5, encoder_hidden=(4,), decoder_hidden=(4,), seed=0)
    W, b = model.params["encoder.1.W"], model.params["encoder.1.b"]
    W[:, 3:5] = 0                                             # the means of units 3, 4 ignore x
    W[:, 0:3] *= 20                                           # units 0..2 vary a lot
    b[...] = 0
    x = (np.random.default_rng(0).random((500, 6)) < 0.5).astype(np.float32)
    n, var = active_units(model, x, batch_size=64)
    assert n == 3 and np.all(var[:3] > 1e-2) and np.all(var[3:] == 0)


def test_summary_is_mean_nll_and_standard_error():
    s = summarize([-1.0, -3.0])
    assert s == {"nll": 2.0, "nll_se": 1.0, "n": 2}


def test_command_line_on_a_checkpoint(tmp_path, capsys):
    mnist()                                                    # fails in CI if the data is missing
    model = VAE(latent_dim=4, encoder_hidden=(16,), decoder_hidden=(16,), seed=0)
    path = save_checkpoint(tmp_path / "c.npz", model, None, {"dataset": "mnist"})
    assert evaluate_main([str(path), "--k", "10", "--n", "50", "--data-dir", str(data_root()),
                          "--offline"]) == 0
    out = capsys.readouterr().out
    assert "mnist test, 50 images, k=10: NLL =" in out and "active units" in out
    assert evaluate_main([str(tmp_path / "nope.npz")]) == 2
    assert "No checkpoint at" in capsys.readouterr().err


def test_command_line_reports_a_missing_cupy_and_a_bad_n_in_a_line(tmp_path, capsys, monkeypatch):
    path = save_checkpoint(tmp_path / "c.npz", tiny_model(), None, {"dataset": "mnist"})
    monkeypatch.setitem(sys.modules, "cupy", None)             # makes `import cupy` fail
    assert evaluate_main([str(path), "--backend", "cupy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The cupy backend needs CuPy") and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([str(path), "--n", "0"])
    assert exit_info.value.code == 2
    assert "argument --n: must be at least 1, got 0" in capsys.readouterr().err

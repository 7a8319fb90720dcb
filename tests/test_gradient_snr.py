"""The gradient signal-to-noise tool: its definition, its groups, its fit, and the example."""
import json
import math
import sys

import numpy as np
import pytest

from minivae.backend import to_host
from minivae.estimators import (RunningMoments, SNR_ESTIMATORS, flatten, gradient_snr,
                                log_log_slope, summarize_snr)
from minivae.model import VAE
from tests.realdata import REPO, data_root, mnist

X = np.array([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=float)


def small_model(seed=0):
    return VAE(x_dim=4, latent_dim=2, encoder_hidden=(3,), decoder_hidden=(3,),
               dtype="float64", seed=seed)


class SameDraws:
    """A generator whose every standard_normal call returns the same numbers (a fixed eps)."""

    def __init__(self, seed):
        self.seed = seed

    def standard_normal(self, shape, dtype):
        return np.random.default_rng(self.seed).standard_normal(shape, dtype=dtype)


def test_snr_summary_of_known_draws_is_mean_abs_over_std():
    # two entries with estimates drawn from N(2, 0.5^2) and N(-1, 1): SNR_j = |mean_j| / std_j.
    g = np.random.default_rng(0).normal([2.0, -1.0], [0.5, 1.0], size=(4000, 2))
    m = RunningMoments()
    for row in g:
        m.update(row)
    s = summarize_snr(m)
    expected = np.mean(np.abs(g.mean(axis=0)) / g.std(axis=0, ddof=1))
    assert s["snr"] == pytest.approx(expected, rel=1e-10)
    assert s["snr"] == pytest.approx((4.0 + 1.0) / 2, rel=0.05)           # the true SNRs
    assert s["abs_mean"] == pytest.approx(np.abs(g.mean(axis=0)).mean(), rel=1e-10)
    assert s["std"] == pytest.approx(g.std(axis=0, ddof=1).mean(), rel=1e-10)
    assert s["entries"] == 2 and s["repeats"] == 4000


def test_gradient_snr_matches_the_definition_and_splits_encoder_from_decoder():
    model = small_model()
    x = model.backend.asarray(X, np.float64)
    out = gradient_snr(model, x, "iwae", 3, 6, np.random.default_rng(1))
    assert set(out) == {"encoder", "decoder"}
    enc = {n: p.size for n, p in model.params.items() if n.startswith("encoder.")}
    assert out["encoder"]["entries"] == sum(enc.values())
    assert out["decoder"]["entries"] == model.n_params - sum(enc.values())
    # by hand: the same six draws, the definition entry by entry
    rng = np.random.default_rng(1)
    grads = [model.estimator_loss_and_grads(x, "iwae", 3, eps=model.draw_eps(3, 3, rng))[1]
             for _ in range(6)]
    for group, prefix in (("encoder", "encoder."), ("decoder", "decoder.")):
        g = np.stack([to_host(flatten({n: v for n, v in gr.items() if n.startswith(prefix)}))
                      for gr in grads])
        sd = g.std(axis=0, ddof=1)
        ok = sd > 0
        assert out[group]["snr"] == pytest.approx(np.mean(np.abs(g.mean(0)[ok]) / sd[ok]),
                                                  rel=1e-9)
        assert out[group]["repeats"] == 6


@pytest.mark.parametrize("estimator", SNR_ESTIMATORS)
def test_a_deterministic_gradient_has_no_noise(estimator):
    # every repeat sees the same eps: the estimates are equal, every variance is 0, and the
    # summary says so (no entry is left to average: SNR 0, not inf or nan).
    model = small_model()
    out = gradient_snr(model, model.backend.asarray(X, np.float64), estimator, 2, 4, SameDraws(3))
    for group in ("encoder", "decoder"):
        assert out[group]["total_variance"] == pytest.approx(0.0, abs=1e-25)
        assert out[group]["std"] == pytest.approx(0.0, abs=1e-12)
        assert out[group]["abs_mean"] > 0
        assert math.isfinite(out[group]["snr"])


def test_at_one_sample_iwae_is_the_elbo_and_stl_is_dreg():
    model = small_model()
    x = model.backend.asarray(X, np.float64)
    snr = {e: gradient_snr(model, x, e, 1, 5, np.random.default_rng(2)) for e in SNR_ESTIMATORS}
    assert snr["iwae"]["encoder"]["snr"] == pytest.approx(snr["elbo"]["encoder"]["snr"], rel=1e-9)
    assert snr["stl"]["encoder"]["snr"] == pytest.approx(snr["dreg"]["encoder"]["snr"], rel=1e-9)
    for e in SNR_ESTIMATORS:                    # the decoder sees no score: all four agree
        assert snr[e]["decoder"]["snr"] == pytest.approx(snr["elbo"]["decoder"]["snr"], rel=1e-9)


def test_gradient_snr_refuses_an_unknown_estimator_and_one_repeat():
    model = small_model()
    x = model.backend.asarray(X, np.float64)
    with pytest.raises(ValueError, match="Unknown estimator 'miwae'"):
        gradient_snr(model, x, "miwae", 2, 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 2"):
        gradient_snr(model, x, "iwae", 2, 1, np.random.default_rng(0))


def test_log_log_slope():
    ks = [1, 2, 5, 10, 50]
    assert log_log_slope(ks, [3 * k ** -0.5 for k in ks]) == pytest.approx(-0.5)
    assert log_log_slope(ks, [0.2 * k ** 0.5 for k in ks]) == pytest.approx(0.5)
    assert math.isnan(log_log_slope([4, 4], [1.0, 2.0]))
    assert math.isnan(log_log_slope(ks, [1.0, 0.0, 1.0, 1.0, 1.0]))


def test_example_smoke_run_prints_the_table_and_writes_json_and_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    mnist()
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import gradient_snr as example
    finally:
        sys.path.remove(str(REPO / "examples"))
    out = tmp_path / "snr"
    code = example.main(["--data-dir", str(data_root()), "--offline", "--out", str(out),
                         "--checkpoint", str(REPO / "checkpoints" / "iwae-1-50.npz"),
                         "--ks", "1", "4", "--repeats", "5", "--batch", "4"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.lstrip().startswith("1 |") for line in lines)
    assert any(line.lstrip().startswith("4 |") for line in lines)
    assert any(line.startswith("slope |") for line in lines)
    for claim in ("IWAE's encoder SNR falls with k: ", "DReG's encoder SNR does not fall: "):
        assert any(line.startswith(claim) and line.split(": ")[1] in ("yes", "no")
                   for line in lines), claim
    assert (out / "gradient_snr.png").stat().st_size > 0
    result = json.loads((out / "metrics.json").read_text())
    assert list(result["results"]) == list(SNR_ESTIMATORS)
    assert [row["k"] for row in result["results"]["iwae"]] == [1, 4]
    assert result["repeats"] == 5 and result["batch"] == 4
    assert set(result["slopes"]["dreg"]) == {"encoder", "decoder"}


def test_plot_gradient_snr_writes_two_panels(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image
    from minivae.plots import plot_gradient_snr

    def row(k, enc, dec):
        return {"k": k, "encoder": {"snr": enc, "repeats": 20},
                "decoder": {"snr": dec, "repeats": 20}}
    results = {"iwae": [row(k, k ** -0.5, k ** 0.5) for k in (1, 4, 16)],
               "dreg": [row(k, 1.0, k ** 0.5) for k in (1, 4, 16)]}
    path = plot_gradient_snr(results, tmp_path / "sub" / "snr.png")
    with Image.open(path) as image:
        width, height = image.size
    assert 2.0 < width / height < 3.0

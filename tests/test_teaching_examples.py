"""Smoke tests of the teaching examples: beta-VAE, Gaussian decoders, latent arithmetic, on MNIST.

Each runs as a subprocess with warnings as errors, on 1000 training images for one epoch with a
small network: exit code 0, the printed table, and the files written to --out.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from minivae.backend import cupy_available
from tests.realdata import REPO, data_root, mnist

EXAMPLES = REPO / "examples"
TINY = ["--subset", "1000", "--epochs", "1", "--hidden", "32", "--latent-dim", "4"]


def run(script, *args):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-W", "error", str(EXAMPLES / script), *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def data_args(out):
    return ["--data-dir", str(data_root()), "--offline", "--out", str(out)]


def assert_wrote(out, *names):
    for name in names:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name


def test_beta_vae_prints_a_row_per_beta_and_writes_its_figures(tmp_path):
    pytest.importorskip("matplotlib")
    mnist()
    out = tmp_path / "beta"
    r = run("beta_vae.py", *TINY, "--betas", "0.5", "4", *data_args(out))
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if line.split()[:2] == ["beta", "-ELBO"])
    assert header.split() == ["beta", "-ELBO", "recon", "KL", "recon+bKL", "active"]
    table = r.stdout.split(header)[1].splitlines()[1:3]
    assert [line.split()[0] for line in table] == ["0.5", "4"]
    assert_wrote(out, "metrics.json", "kl_per_dimension.png", "reconstructions_samples.png",
                 "traversals.png")
    m = json.loads((out / "metrics.json").read_text())
    assert [b["beta"] for b in m["betas"]] == [0.5, 4.0]
    for b in m["betas"]:
        assert len(b["kl_per_dim"]) == 4 and 0 <= b["active_units"] <= 4
        assert b["test_nelbo"] == pytest.approx(b["test_recon"] + b["test_kl"])
        assert b["test_loss"] == pytest.approx(b["test_recon"] + b["beta"] * b["test_kl"])
        # the KL per unit (analysis) adds up to the KL term of the trainer's evaluation
        assert sum(b["kl_per_dim"]) == pytest.approx(b["test_kl"], rel=1e-4)


def test_gaussian_decoder_prints_sigma_of_r_and_both_decoders(tmp_path):
    pytest.importorskip("matplotlib")
    mnist()
    out = tmp_path / "gauss"
    r = run("gaussian_decoder.py", *TINY, "--r-loss-factor", "392", *data_args(out))
    assert r.returncode == 0, r.stderr
    assert "sigma^2 = P / (2 r) = 1.0000" in r.stdout               # 784 / (2 * 392)
    assert "(a) learned variance" in r.stdout and "(b) fixed sigma" in r.stdout
    assert "bits/px" in r.stdout and "Keras loss r * MSE + KL" in r.stdout
    assert_wrote(out, "metrics.json", "reconstructions.png", "samples.png", "learned_std.png")
    m = json.loads((out / "metrics.json").read_text())
    learned, fixed = m["decoders"]
    assert m["dequantized"] and m["sigma"] == pytest.approx(1.0)
    assert fixed["keras_loss"] == pytest.approx(fixed["test_nelbo"] - 392 * math.log(2 * math.pi))
    for d in (learned, fixed):
        assert d["bits_per_pixel"] == pytest.approx(
            (d["test_nelbo"] + 784 * math.log(256)) / (784 * math.log(2)))
    assert learned["logvar_min"] <= learned["logvar_max"]


def test_latent_arithmetic_trains_then_reuses_its_checkpoint(tmp_path):
    pytest.importorskip("matplotlib")
    mnist()
    out = tmp_path / "thick"
    r = run("latent_arithmetic.py", *TINY, "--n-digits", "3", "--steps", "4", *data_args(out))
    assert r.returncode == 0, r.stderr
    assert "thin -> thick" in r.stdout and "mean stroke width" in r.stdout
    assert_wrote(out, "metrics.json", "checkpoint.npz", "attribute.png", "interpolations.png")
    m = json.loads((out / "metrics.json").read_text())
    assert m["weights"] == pytest.approx(np.linspace(-2, 2, 9).tolist())
    assert len(m["values"]) == 9 and len(m["vector"]) == 4 and len(m["test_indices"]) == 3

    out2 = tmp_path / "class"
    r = run("latent_arithmetic.py", "--checkpoint", str(out / "checkpoint.npz"), "--attribute",
            "class", "--from", "1", "--to", "7", "--interpolation", "spherical", "--n-digits", "2",
            *data_args(out2))
    assert r.returncode == 0, r.stderr
    assert "1 -> 7" in r.stdout and "share nearer to a 7 than a 1" in r.stdout
    assert_wrote(out2, "metrics.json", "attribute.png", "interpolations.png")
    assert not (out2 / "checkpoint.npz").exists()                  # nothing trained
    m = json.loads((out2 / "metrics.json").read_text())
    assert m["interpolation"] == "spherical" and all(0 <= v <= 1 for v in m["values"])


def test_latent_arithmetic_missing_checkpoint_is_one_clear_error(tmp_path):
    r = run("latent_arithmetic.py", "--checkpoint", str(tmp_path / "none.npz"),
            "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "No checkpoint at" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(cupy_available(), reason="CuPy works here")
@pytest.mark.parametrize("script", ["beta_vae.py", "gaussian_decoder.py", "latent_arithmetic.py"])
def test_cupy_backend_without_cupy_is_one_clear_error(tmp_path, script):
    r = run(script, "--backend", "cupy", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cupy" in r.stderr.lower() and "--backend numpy" in r.stderr

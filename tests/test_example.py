"""End-to-end: examples/mnist_vae.py on a small subset of real MNIST, resume, and clear errors."""
import json
import os
import subprocess
import sys

import pytest

from minivae.backend import cupy_available
from tests.realdata import REPO, data_root, mnist

SCRIPT = REPO / "examples" / "mnist_vae.py"


def run(*args, env=None):
    env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)


def test_smoke_run_writes_checkpoint_metrics_and_figures_and_resumes(tmp_path):
    pytest.importorskip("matplotlib")
    mnist()
    out = tmp_path / "run"
    common = ["--subset", "2000", "--latent-dim", "2", "--hidden", "64", "--eval-k", "5",
              "--data-dir", str(data_root()), "--offline", "--out", str(out), "--batch-size", "50"]
    r = run(*common, "--epochs", "2")
    assert r.returncode == 0, r.stderr
    for name in ("checkpoint.npz", "metrics.json", "reconstructions.png", "samples.png",
                 "latent_space.png", "interpolations.png", "training.png", "manifold.png"):
        assert (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    losses = [h["train_loss"] for h in m["history"]]
    assert m["epochs"] == 2 and losses[1] < losses[0]
    assert m["history"][1]["test_nelbo"] < m["history"][0]["test_nelbo"]
    assert m["backend"] == "numpy" and m["dataset"] == "mnist" and m["eval_k"] == 5
    assert 0 <= m["active_units"] <= 2 and m["seconds_per_epoch"] > 0 and m["test_nll"] > 0

    r = run(*common, "--epochs", "3", "--resume", "--no-figures")
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout and "epoch   3/3" in r.stdout
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3


def test_missing_data_is_one_clear_error(tmp_path):
    r = run("--offline", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"),
            env={"MINIVAE_DATA": str(tmp_path / "empty"), "HOME": str(tmp_path),
                 "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert r.returncode == 2
    assert "error:" in r.stderr and "nowhere" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(cupy_available(), reason="CuPy works here")
def test_cupy_backend_without_cupy_is_one_clear_error(tmp_path):
    r = run("--backend", "cupy", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cupy" in r.stderr.lower() and "--backend numpy" in r.stderr


def test_resume_without_a_checkpoint_is_one_clear_error(tmp_path):
    mnist()
    r = run("--resume", "--out", str(tmp_path / "none"), "--data-dir", str(data_root()), "--offline")
    assert r.returncode == 2 and "No checkpoint at" in r.stderr and "Traceback" not in r.stderr


def test_help_says_what_a_resume_takes_from_the_checkpoint():
    r = run("--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "--resume continues OUT/checkpoint.npz with the model and the training settings" in text
    assert "--hidden" in text and "come from the checkpoint" in text and "is refused" in text
    assert "extending --epochs changes the rate of the epochs still to run" in text
    assert "--overwrite" in text

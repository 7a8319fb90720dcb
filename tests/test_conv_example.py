"""End-to-end: examples/conv_vae.py on small subsets of real MNIST and Fashion-MNIST, resumed, and
on CIFAR-10 files in the real binary format written here (twelve records a file)."""
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minivae import data
from minivae.checkpoint import read_checkpoint
from minivae.commands import run as run_command
from tests.realdata import REPO, data_root, mnist
from tests.test_cifar10 import CIFAR_DIR, FILES, batch_bytes

SCRIPT = REPO / "examples" / "conv_vae.py"
TINY = ["--channels", "4", "8", "--latent-dim", "4", "--batch-size", "50", "--eval-k", "2",
        "--eval-n", "200", "--offline"]


def run(*args):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)


def test_mnist_run_writes_checkpoint_metrics_and_figures_and_resumes(tmp_path):
    pytest.importorskip("matplotlib")
    mnist()
    out, common = tmp_path / "run", [*TINY, "--subset", "500", "--data-dir", str(data_root())]
    r = run(*common, "--out", str(out), "--epochs", "2")
    assert r.returncode == 0, r.stderr
    for name in ("checkpoint.npz", "metrics.json", "reconstructions.png", "samples.png",
                 "interpolations.png", "training.png"):
        assert (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"]["channels"] == [4, 8] and m["model"]["likelihood"] == "bernoulli"
    assert m["history"][1]["test_nelbo"] < m["history"][0]["test_nelbo"]
    assert m["eval_images"] == 200 and m["test_bits_per_dim"] is None
    assert read_checkpoint(out / "checkpoint.npz")[0]["model"]["type"] == "ConvVAE"

    r = run(*common, "--out", str(out), "--epochs", "3", "--resume", "--no-figures")
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout and "epoch   3/3" in r.stdout
    r = run(*common, "--out", str(out), "--resume", "--channels", "8", "8")
    assert r.returncode == 2 and "--channels 8 8 differs from the 4 8" in r.stderr


def test_fashion_mnist_trains_the_discretised_logistic_in_bits_per_dim(tmp_path):
    mnist()
    out = tmp_path / "fashion"
    r = run(*TINY, "--dataset", "fashion-mnist", "--subset", "300", "--epochs", "1",
            "--data-dir", str(data_root()), "--out", str(out), "--no-figures")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"]["likelihood"] == "discretized_logistic"
    assert m["test_bits_per_dim"] == pytest.approx(m["test_nll"] / (784 * np.log(2)))
    assert "bits/dim" in r.stdout
    ev = subprocess.run([sys.executable, "-m", "minivae.evaluate", str(out / "checkpoint.npz"),
                         "--k", "2", "--n", "50", "--data-dir", str(data_root() / "fashion-mnist"),
                         "--offline"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert ev.returncode == 0, ev.stderr
    assert "50 images, k=2: NLL =" in ev.stdout and "bits/dim" in ev.stdout


def test_a_dense_checkpoint_is_not_resumed_as_a_conv_vae(tmp_path):
    from minivae import VAE
    from minivae.checkpoint import save_checkpoint
    save_checkpoint(tmp_path / "checkpoint.npz", VAE(latent_dim=2, encoder_hidden=(4,),
                                                     decoder_hidden=(4,)), None, {})
    r = run("--out", str(tmp_path), "--resume", "--offline")
    assert r.returncode == 2 and "holds a VAE, not a ConvVAE" in r.stderr


def test_cifar10_in_colour_from_files_in_the_real_format(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "cifar10" / CIFAR_DIR
    folder.mkdir(parents=True)
    for name in FILES:
        folder.joinpath(name).write_bytes(batch_bytes(
            rng.integers(0, 10, 12), rng.integers(0, 256, (12, 3, 32, 32), dtype=np.uint8)))
    monkeypatch.setitem(data.DATASETS, "cifar10", dataclasses.replace(
        data.DATASETS["cifar10"], records_per_file=12))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    spec = importlib.util.spec_from_file_location("conv_vae_example", SCRIPT)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "cifar"
    code = run_command(example.main, ["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
                                      "--offline", "--channels", "4", "8", "--latent-dim", "3",
                                      "--batch-size", "5", "--epochs", "1", "--eval-k", "2",
                                      "--out", str(out)])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"]["image_shape"] == [3, 32, 32] and m["eval_images"] == 12
    assert m["test_bits_per_dim"] > 0
    from PIL import Image
    assert Image.open(out / "samples.png").convert("RGB").getextrema() != ((0, 0),) * 3

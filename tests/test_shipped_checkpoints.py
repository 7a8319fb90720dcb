"""The checkpoints shipped in checkpoints/ load and score on real MNIST what their record says."""
import numpy as np
import pytest

from minivae.checkpoint import load_checkpoint
from minivae.data import binarize_fixed
from tests.realdata import REPO, mnist

SHIPPED = sorted((REPO / "checkpoints").glob("*.npz"))
N_PARAMS = {"VAE": 425_284, "TwoLayerVAE": 521_084}          # the paper's 1- and 2-layer models


def test_the_two_checkpoints_of_the_readme_are_shipped():
    assert {p.name for p in SHIPPED} >= {"vae-1-1.npz", "iwae-1-50.npz"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_checkpoint_scores_its_recorded_test_elbo(path):
    ds = mnist()
    model, optimizer, train = load_checkpoint(path)
    assert optimizer is None and model.n_params == N_PARAMS[type(model).__name__]  # ~2 MB each
    recorded = train["history"][-1]["test_nelbo"]                    # all 10,000 test images
    x = binarize_fixed(ds.x_test, train["config"]["seed"])[:2000]
    nelbo = -model.bound(x, "elbo", 1, rng=np.random.default_rng(0)).mean()
    assert abs(nelbo - recorded) < 3.0, (nelbo, recorded)            # a subset's mean, one eps
    samples = model.sample(16, np.random.default_rng(1))
    assert samples.shape == (16, 784) and np.all((samples >= 0) & (samples <= 1))

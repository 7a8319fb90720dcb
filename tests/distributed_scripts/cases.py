"""What tests/test_distributed.py and the 2-rank scripts it launches share: tiny float64 models,
synthetic data and the cases, so both sides build exactly the same things (no MNIST needed)."""
import numpy as np

from minivae import VAE, TwoLayerVAE
from minivae.train import TrainConfig

P = 16                                          # pixels per example

# gradient cases: (name, model kind, objective, k, estimator, m, global batch B); odd B included
GRADIENT_CASES = [
    ("elbo-k1-b8", "vae", "elbo", 1, None, 1, 8),
    ("iwae-k5-b7", "vae", "iwae", 5, None, 1, 7),
    ("iwae-k3-b1", "vae", "iwae", 3, None, 1, 1),        # one row: rank 1's shard is empty
    ("dreg-k4-b9", "vae", "iwae", 4, "dreg", 1, 9),
    ("two-layer-iwae-k3-b5", "two_layer", "iwae", 3, None, 1, 5),
]


def make_model(kind: str = "vae", seed: int = 3):
    if kind == "two_layer":
        return TwoLayerVAE(x_dim=P, h1_dim=4, h2_dim=2, x_hidden=(8,), h_hidden=(6,),
                           dtype="float64", seed=seed)
    return VAE(x_dim=P, latent_dim=3, encoder_hidden=(10,), decoder_hidden=(9,),
               dtype="float64", seed=seed)


def grey(n: int, seed: int) -> np.ndarray:
    """n grey-level images (n, P) in [0, 1], float32 like the data sets."""
    return np.random.default_rng(seed).random((n, P), dtype=np.float32)


def binary(n: int, seed: int) -> np.ndarray:
    return (grey(n, seed) < 0.5).astype(np.float64)


def gradient_inputs(model, case):
    """(x (B, P), eps (S, B, eps_dim)) of a gradient case, drawn on host from a fixed seed."""
    _, _, _, k, _, m, b = case
    rng = np.random.default_rng(len(case[0]))
    x = (rng.random((b, P)) < 0.5).astype(np.float64)
    return x, rng.standard_normal((k * m, b, model.eps_dim))


def loss_and_grads(model, case, x, eps):
    _, _, objective, k, estimator, m, _ = case
    if estimator is None:
        return model.loss_and_grads(x, objective, k, eps=eps)
    return model.estimator_loss_and_grads(x, estimator, k, m, eps=eps)


# training: 43 rows at batch 7 is six batches of 7 and one of 1 (an empty shard on rank 1)
TRAIN_ROWS, TEST_ROWS = 43, 11
TRAIN_CONFIG = dict(epochs=3, batch_size=7, objective="iwae", k=3, lr=3e-2, seed=5,
                    eval_batch=4)


def train_config(**changes) -> TrainConfig:
    return TrainConfig(**{**TRAIN_CONFIG, **changes})


def train_data():
    return grey(TRAIN_ROWS, 1), grey(TEST_ROWS, 2)


# L_k: 23 images in blocks of 4 (six blocks, the last of 3)
LL_ROWS, LL_K, LL_BLOCK, LL_KEY = 23, 40, 4, (7,)

r"""The benchmark's workloads, and the matrix-product FLOPs each one needs, counted from layer sizes.

Every workload runs the same model, data, batch size, dtype (float32) and optimizer (Adam, lr 1e-3,
betas 0.9/0.999, the workload's eps) in minivae and in PyTorch:

    a            pytorch/examples VAE: 784-400-20 ReLU, Bernoulli logits on grey levels, analytic KL,
                 batch 128, Adam eps 1e-8 (PyTorch's default)
    b-k{1,50}-b{20,128}
                 Burda et al.'s 1-layer model: 784-200-200-50 tanh, IWAE bound with k samples,
                 dynamic binarisation, Adam eps 1e-4
    c            the k = 5000 test log-likelihood of the Burda model on 10,000 test images
    d            one training step of the Burda model (IWAE) at batch x k in {20,128,512} x {1,5,50}

FLOPs.  A dense layer with N input rows, I inputs and O outputs costs 2 N I O FLOPs forward
(x W), and 2 N I O each for dW = x^T dy and dx = dy W^T backward; minivae and PyTorch both skip
dx for the encoder's first layer (x is data), so a training step costs 6 N I O per layer minus
2 N 784 H1.  N = B for the encoder and K B for the decoder.  Only matrix products are counted:
the elementwise work (activations, softplus, exp, Adam) is what separates a run from the bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

N_TRAIN = 60_000
N_TEST = 10_000

MODELS = {
    # name: (x_dim, latent_dim, hidden sizes of each MLP, activation)
    "examples": dict(x_dim=784, latent_dim=20, hidden=(400,), activation="relu"),
    "burda": dict(x_dim=784, latent_dim=50, hidden=(200, 200), activation="tanh"),
}


@dataclass(frozen=True)
class Workload:
    """One row of the results table.  ``steps`` None times a whole epoch; a number times that
    many steps and extrapolates to seconds per epoch."""
    id: str
    kind: str                 # "epoch" | "loglik" | "steps"
    label: str
    model: str = "burda"
    objective: str = "iwae"
    batch: int = 128
    k: int = 1
    adam_eps: float = 1e-4
    binarize: bool = True     # dynamic binarisation; False = grey levels
    steps: int | None = None
    grid: tuple = field(default=())   # (batch, k) pairs of the step sweep


WORKLOADS = [
    Workload("a", "epoch", "pytorch/examples VAE 784-400-20 ReLU, ELBO, batch 128, grey-level",
             model="examples", objective="elbo", batch=128, k=1, adam_eps=1e-8, binarize=False),
    Workload("b-k1-b20", "epoch", "Burda 784-200-200-50 tanh, IWAE k=1, batch 20", batch=20, k=1),
    Workload("b-k1-b128", "epoch", "Burda 784-200-200-50 tanh, IWAE k=1, batch 128", batch=128, k=1),
    Workload("b-k50-b20", "epoch", "Burda 784-200-200-50 tanh, IWAE k=50, batch 20",
             batch=20, k=50, steps=300),
    Workload("b-k50-b128", "epoch", "Burda 784-200-200-50 tanh, IWAE k=50, batch 128",
             batch=128, k=50, steps=100),
    Workload("c", "loglik", "Burda model, test log-likelihood L_k, k=5000", k=5000),
    Workload("d", "steps", "Burda model, one IWAE training step",
             grid=tuple((b, k) for b in (20, 128, 512) for k in (1, 5, 50))),
]
BY_ID = {w.id: w for w in WORKLOADS}


def layer_sizes(model: str):
    """(encoder sizes, decoder sizes), e.g. (784, 200, 200, 100) and (50, 200, 200, 784)."""
    m = MODELS[model]
    return ((m["x_dim"], *m["hidden"], 2 * m["latent_dim"]),
            (m["latent_dim"], *m["hidden"], m["x_dim"]))


@dataclass(frozen=True)
class Product:
    r"""One matrix product of a dense layer with ``rows`` input rows, ``n_in`` -> ``n_out``.

    kind "fwd": x (N, I) @ W (I, O);  "dW": x (N, I)^T @ dy (N, O);  "dx": dy (N, O) @ W (I, O)^T.
    All three cost 2 N I O FLOPs.
    """
    kind: str
    rows: int
    n_in: int
    n_out: int

    @property
    def flops(self) -> int:
        return 2 * self.rows * self.n_in * self.n_out

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.rows}x{self.n_in}x{self.n_out}"

    @classmethod
    def from_key(cls, key: str) -> "Product":
        kind, dims = key.split(":")
        return cls(kind, *(int(d) for d in dims.split("x")))


def step_products(model: str, batch: int, k: int, train: bool = True) -> list[Product]:
    """The matrix products of one training step (or one forward pass if ``train`` is False)."""
    enc, dec = layer_sizes(model)
    out = []
    for net, sizes, rows in (("encoder", enc, batch), ("decoder", dec, k * batch)):
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            out.append(Product("fwd", rows, n_in, n_out))
            if train:
                out.append(Product("dW", rows, n_in, n_out))
                if not (net == "encoder" and i == 0):
                    out.append(Product("dx", rows, n_in, n_out))
    return out


LL_MAX_ROWS = 8192        # latent samples decoded at once: minivae.evaluate.log_likelihood's default


def ll_batching(n_images: int, k: int, max_rows: int = LL_MAX_ROWS) -> tuple[int, int]:
    """(images per batch, samples per chunk): minivae.evaluate.log_likelihood's rule, shared by
    the PyTorch evaluator, so both decode at most ``max_rows`` latent samples at once."""
    b = max(1, min(n_images, max_rows // min(k, max_rows)))
    return b, max(1, min(k, max_rows // b))


def plan(w: Workload, n_images: int | None = None, k: int | None = None):
    """[(products of one pass, passes)] for a workload: what its FLOPs and its bound add up.

    epoch: one step at the full batch, N_TRAIN / batch times (FLOPs are linear in the batch,
    so the count is exact; the bound takes every step at the full batch's speed).
    loglik: one chunk of ``b`` images x ``chunk`` samples, forward only, (N_TEST / b) x
    (k / chunk) times, at the batching the evaluators use for ``n_images`` images.
    """
    if w.kind == "epoch":
        return [(step_products(w.model, w.batch, w.k), N_TRAIN / w.batch)]
    if w.kind == "loglik":
        k = k or w.k
        b, chunk = ll_batching(n_images or N_TEST, k)
        enc_sizes, dec_sizes = layer_sizes(w.model)
        enc = [Product("fwd", b, i, o) for i, o in zip(enc_sizes[:-1], enc_sizes[1:])]
        dec = [Product("fwd", chunk * b, i, o) for i, o in zip(dec_sizes[:-1], dec_sizes[1:])]
        return [(enc, N_TEST / b), (dec, (N_TEST / b) * (k / chunk))]
    raise ValueError(f"workload {w.id} has no single plan: use step_products per grid point")


def flops_and_bound(passes, gflops: dict) -> tuple[float, float | None]:
    """Total FLOPs and the matrix-product bound in seconds, sum of flops / measured speed at each
    product's own shape (``gflops``: Product.key -> GFLOP/s); bound None if a shape is unmeasured."""
    total, bound = 0.0, 0.0
    for products, times in passes:
        for p in products:
            total += p.flops * times
            speed = gflops.get(p.key)
            bound = None if bound is None or not speed else bound + p.flops * times / (speed * 1e9)
    return total, bound


def all_product_keys(workloads, n_images: int, ll_k: int) -> list[str]:
    keys = []
    for w in workloads:
        if w.kind == "steps":
            passes = [(step_products(w.model, b, k), 1) for b, k in w.grid]
        else:
            passes = plan(w, n_images, ll_k)
        keys += [p.key for products, _ in passes for p in products]
    return sorted(set(keys), key=lambda s: (Product.from_key(s).flops, s))


def epoch_steps(batch: int) -> int:
    return math.ceil(N_TRAIN / batch)

r"""The two sides of every workload, written alike: ``MinivaeRunner`` and ``TorchRunner``.

Both follow minivae/train.py's loop, so both do the same work per step:

    perm = host permutation of the 60,000 rows (seeded),   X on the device once
    for each batch:  xb = X[perm[rows]];  xb = Bernoulli(xb) if binarised;  eps ~ N(0, I) (k, B, D)
                     loss, gradients, Adam step;  total += loss * B   (on the device: no sync)
    read total once at the end (one sync), then stop the clock

The data is indexed by hand in both (no DataLoader), so neither pays for a data pipeline the
other skips.  Each runner makes its model from a minivae VAE with the same seed: the same weights.
"""
from __future__ import annotations

import math
import time

import numpy as np

from benchmarks.workloads import LL_MAX_ROWS, MODELS, N_TRAIN


def make_minivae_model(model: str, backend, seed: int = 0):
    from minivae import VAE
    m = MODELS[model]
    return VAE(x_dim=m["x_dim"], latent_dim=m["latent_dim"], encoder_hidden=m["hidden"],
               decoder_hidden=m["hidden"], activation=m["activation"], likelihood="bernoulli",
               dtype="float32", seed=seed, backend=backend)


class MinivaeRunner:
    """minivae on NumPy (``device="cpu"``) or CuPy (``device="gpu"``)."""
    lib = "minivae"

    def __init__(self, device: str = "cpu", seed: int = 0, threads: int | None = None):
        from minivae.backend import get_backend, reuse_freed_memory   # threads: run.py's environment
        self.backend = get_backend("cupy" if device == "gpu" else "numpy", seed)
        reuse_freed_memory()                             # as minivae.train and L_k do
        self.xp, self.seed = self.backend.xp, seed

    def to_device(self, x):
        return self.xp.asarray(x, dtype=self.xp.float32)

    def synchronize(self):
        self.backend.synchronize()

    def model(self, model: str):
        return make_minivae_model(model, self.backend, self.seed)

    def stepper(self, model, adam_eps, objective, k, binarize):
        """step(xb) -> loss * B on the device: one Adam step of ``model`` on the batch xb."""
        from minivae.data import binarize as binarize_batch
        from minivae.optim import Adam
        opt = Adam(lr=1e-3, beta1=0.9, beta2=0.999, eps=adam_eps)
        rng = self.backend.generator("train")

        def step(xb):
            if binarize:
                xb = binarize_batch(xb, rng)
            loss, grads, _ = model.loss_and_grads(xb, objective, k, rng=rng)
            opt.step(model.params, grads)
            return loss * xb.shape[0]
        return step

    def permutation(self, n: int, key: int):
        return self.xp.asarray(np.random.default_rng([self.seed, key]).permutation(n))

    def zero(self):
        return self.xp.zeros((), dtype=self.xp.float64)

    def log_likelihood(self, model, x_bin, k: int):
        from minivae.evaluate import log_likelihood
        return log_likelihood(model, x_bin, k, rng=self.backend.generator("log_likelihood"), max_rows=LL_MAX_ROWS)

    def pool_bytes(self):
        """Bytes held by CuPy's memory pool (it keeps what it grew to: the peak), or None."""
        if self.backend.name != "cupy":
            return None
        return int(self.xp.get_default_memory_pool().total_bytes())


class TorchRunner:
    """PyTorch on the CPU (``torch.set_num_threads(os.cpu_count())``) or on CUDA."""
    lib = "torch"

    def __init__(self, device: str = "cpu", seed: int = 0, threads: int | None = None):
        import os

        import torch
        torch.set_num_threads(threads or os.cpu_count())
        self.torch, self.seed = torch, seed
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA GPU")

    def to_device(self, x):
        return self.torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=self.device)

    def synchronize(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def model(self, model: str):
        from benchmarks.peer_torch import TorchVAE
        return TorchVAE.from_minivae(make_minivae_model(model, "numpy", self.seed), self.device)

    def _generator(self, key: int):
        g = self.torch.Generator(device=self.device)
        g.manual_seed(int(np.random.SeedSequence([self.seed, key]).generate_state(1)[0]))
        return g

    def stepper(self, net, adam_eps, objective, k, binarize):
        from benchmarks.peer_torch import make_adam, train_step
        torch = self.torch
        opt = make_adam(net, adam_eps)
        g = self._generator(1)

        def step(xb):
            if binarize:
                xb = torch.bernoulli(xb, generator=g)
            eps = torch.randn((k, xb.shape[0], net.latent_dim), generator=g, device=self.device)
            return train_step(net, opt, xb, eps, objective) * xb.shape[0]
        return step

    def permutation(self, n: int, key: int):
        perm = np.random.default_rng([self.seed, key]).permutation(n)
        return self.torch.as_tensor(perm, device=self.device)

    def zero(self):
        return self.torch.zeros((), dtype=self.torch.float64, device=self.device)

    def log_likelihood(self, net, x_bin, k: int):
        from benchmarks.peer_torch import log_likelihood
        return log_likelihood(net, x_bin, k, generator=self._generator(3), max_rows=LL_MAX_ROWS)

    def pool_bytes(self):
        """Peak bytes reserved by PyTorch's CUDA caching allocator, or None on the CPU."""
        if self.device.type != "cuda":
            return None
        return int(self.torch.cuda.max_memory_reserved())


RUNNERS = {"minivae": MinivaeRunner, "torch": TorchRunner}


# ---------------------------------------------------------------- the timed loops (either runner)

def time_epoch(runner, X, w, steps: int | None, warmup: int) -> dict:
    """Seconds for ``steps`` batches of workload ``w`` (all of an epoch when None), after
    ``warmup`` untimed steps; ``seconds_per_epoch`` extrapolates when fewer than an epoch."""
    B = w.batch
    n_batches = math.ceil(N_TRAIN / B)
    steps = n_batches if steps is None else min(steps, n_batches)
    model = runner.model(w.model)
    step = runner.stepper(model, w.adam_eps, w.objective, w.k, w.binarize)
    perm = runner.permutation(X.shape[0], 0)
    for j in range(warmup):                                   # first-call costs: Adam state, pools
        step(X[perm[j * B:(j + 1) * B]])
    runner.synchronize()
    total = runner.zero()
    t0 = time.perf_counter()
    for j in range(steps):
        total += step(X[perm[j * B:(j + 1) * B]])
    loss = float(total) / min(steps * B, X.shape[0])          # the one host sync
    runner.synchronize()
    seconds = time.perf_counter() - t0
    if not math.isfinite(loss):
        raise FloatingPointError(f"non-finite training loss {loss}")
    return {"seconds": seconds, "steps": steps, "epoch_steps": n_batches,
            "seconds_per_epoch": seconds * n_batches / steps, "train_loss": loss}


def time_steps(runner, X, model_name: str, grid, n_steps: int, warmup: int) -> dict:
    """Median seconds of one IWAE training step at each (batch, k) of ``grid``; every step is
    timed on its own, between two device syncs."""
    out = {}
    model = runner.model(model_name)
    for batch, k in grid:
        step = runner.stepper(model, 1e-4, "iwae", k, True)
        perm = runner.permutation(X.shape[0], 10_000 * batch + k)
        times = []
        for j in range(warmup + n_steps):
            xb = X[perm[j * batch:(j + 1) * batch]]
            runner.synchronize()
            t0 = time.perf_counter()
            step(xb)
            runner.synchronize()
            if j >= warmup:
                times.append(time.perf_counter() - t0)
        out[f"{batch}x{k}"] = {"batch": batch, "k": k, "median_s": float(np.median(times)),
                               "min_s": float(np.min(times)), "steps": n_steps}
    return out


def time_loglik(runner, x_test_bin, model_name: str, k: int) -> dict:
    """Seconds for L_k of every image of ``x_test_bin`` (host, binarised), after one untimed
    batch; ``seconds_per_10000`` extrapolates when fewer than 10,000 images."""
    from benchmarks.workloads import N_TEST, ll_batching
    model = runner.model(model_name)
    X = runner.to_device(x_test_bin)
    b, chunk = ll_batching(X.shape[0], k)
    runner.log_likelihood(model, X[:b], min(k, chunk))        # warm-up: one chunk of one batch
    runner.synchronize()
    t0 = time.perf_counter()
    ll = runner.log_likelihood(model, X, k)                   # host array at the end: a sync
    seconds = time.perf_counter() - t0
    n = X.shape[0]
    return {"seconds": seconds, "images": n, "k": k, "batch": b, "chunk": chunk,
            "seconds_per_10000": seconds * N_TEST / n, "nll": float(-np.mean(ll))}

r"""Evaluation: the importance-sampled log-likelihood estimate, and active units.

    log p(x) ~ L_k = log (1/k) sum_{i=1..k} w_i,   w_i = p(x|z_i) p(z_i) / q(z_i|x),  z_i ~ q(z|x)

(Burda et al. 2016, section 5: k = 5000).  L_k <= log p(x) on average and tends to it as k grows.
For large k the (k, B) weights are made ``chunk`` samples at a time and merged with a running
log-sum-exp, so memory is bounded by ``max_rows`` decoder rows whatever k is:

    S = log sum_i w_i = logaddexp over chunks c of  log sum_{i in c} w_i,     L_k = S - log k,

with each chunk's log sum_{i in c} w_i = log_mean_exp(log w_c) + log |c| by the same max-shifted
log-mean-exp as the IWAE bound (:func:`minivae.objectives.log_mean_exp`).

Active units (Burda et al. 2016, section 5): unit u is active when Cov_x(E_{q(u|x)}[u]) > 1e-2,
i.e. when the encoder's mean for u varies across the data.

Command line, for any saved checkpoint, in one process or split over N (see log_likelihood):

    python -m minivae.evaluate runs/mnist/checkpoint.npz --k 5000
    mpiexec -n N python -m mpi4py -m minivae.evaluate runs/mnist/checkpoint.npz --k 5000
"""
from __future__ import annotations

import math
import sys

import numpy as np

from . import distributed as dist
from . import parallel
from .backend import reuse_freed_memory, to_host
from .checks import InvalidInput, check_int, check_real
from .objectives import log_mean_exp


BLOCK_SIZE = 100          # images per block of L_k's blocked draws (and of a distributed L_k)


def log_likelihood(model, x, k: int = 5000, rng=None, max_rows: int = 8192,
                   batch_size: int | None = None, *, key: tuple = (),
                   block_size: int | None = None, distributed: bool = True):
    r"""L_k per example, host float64 array (N,), in nats; x is (N, P), binarised already.

    Examples go ``batch_size`` at a time and samples ``chunk = max_rows // batch_size`` at a
    time, so at most ``max_rows`` latent samples are decoded at once.  The images go to the
    device once, up front, and are checked once there (shape, and the likelihood's
    ``check_data``); everything stays there until the end (no host synchronisation per batch or
    chunk).

    The draws, two ways:

    * one stream (``block_size=None``, one process): every batch draws from ``rng``, by default
      ``generator("log_likelihood", *key)``, one after another.  The records were made so.
    * blocks (``block_size=b``): the images go in blocks of b (the last one shorter), and block i
      draws from its own ``generator("log_likelihood_blocks", *key, i)``, batch after batch within
      the block.  A block's L_k then depend only on the seed, ``key``, i and its images: not on
      which process computes it, nor on what it computed before.

    Distributed: launched under MPI with more than one rank (:mod:`minivae.distributed`) and
    ``distributed=True``, the blocks (``block_size`` defaults to :data:`BLOCK_SIZE` there) are
    split over the ranks, a contiguous run of blocks each, and every rank returns all N values in
    order, gathered with one Allgatherv.  So a distributed L_k is exactly one process's with the
    same ``block_size`` and ``key``: the same arithmetic on the same draws, equal bit for bit where
    the ranks' BLAS computes as the one process's does.  It is not the one-stream number, whose
    draws differ (not their distribution).  Every rank must call it
    with the same arguments; ``rng`` is refused there (one stream cannot be split), and
    ``distributed=False`` computes everything on the calling rank alone.
    """
    k = check_int("k", k, 1, "k counts importance samples per example, e.g. 5000")
    max_rows = check_int("max_rows", max_rows, 1, "max_rows caps the samples decoded at once")
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, 1, "or None to choose one from max_rows")
    size, rank = dist.world() if distributed else (1, 0)
    if block_size is None and size > 1:
        block_size = BLOCK_SIZE
    if block_size is not None:
        block_size = check_int("block_size", block_size, 1, "images per block of draws, e.g. 100")
        if rng is not None:
            raise InvalidInput("rng draws one stream over all the images, which a blocked or "
                               "distributed L_k cannot follow: pass key=(...) instead (block i "
                               "draws from generator('log_likelihood_blocks', *key, i)).")
    be, xp = model.backend, model.xp
    reuse_freed_memory()                  # every chunk allocates the same large arrays: keep them
    x = np.asarray(x) if not hasattr(x, "shape") else x       # a list of rows
    x = xp.asarray(model.check_x(x))                          # one copy, not one per batch
    model.likelihood.check_data(x)                            # once: no host sync per chunk
    N = x.shape[0]
    if block_size is None:
        rng = be.generator("log_likelihood", *key) if rng is None else rng
        return to_host(_log_likelihood_rows(model, x, k, rng, max_rows, batch_size))
    blocks = range(math.ceil(N / block_size))[dist.shard(math.ceil(N / block_size), size, rank)]
    out = [_log_likelihood_rows(model, x[i * block_size:(i + 1) * block_size], k,
                                be.generator("log_likelihood_blocks", *key, i), max_rows,
                                batch_size) for i in blocks]
    mine = to_host(xp.concatenate(out)) if out else np.empty(0, dtype=np.float64)
    return dist.allgather_rows(mine) if size > 1 else mine


def _log_likelihood_rows(model, x, k: int, rng, max_rows: int, batch_size: int | None):
    r"""L_k of the rows of x (n, P) on the device, float64 (n,), drawing from ``rng`` batch after
    batch and chunk after chunk: batches of b = ``batch_size`` or as many as fit
    ``max_rows`` with the whole chunk of k, chunks of max_rows // b samples.  The next chunk's
    noise is drawn on another thread while this chunk's log-weights are computed
    (:func:`minivae.parallel.ahead`): the same draws, in the same order."""
    xp = model.xp
    N = x.shape[0]
    b = batch_size or max(1, min(N, max_rows // min(k, max_rows)))
    chunk = max(1, min(k, max_rows // b))
    draws = parallel.ahead((model.draw_eps(min(chunk, k - s), min(b, N - start), rng)
                            for start in range(0, N, b) for s in range(0, k, chunk)), like=x)
    out = []
    for start in range(0, N, b):
        xb = x[start:start + b]
        log_sum = None                                        # log sum_i w_i so far, (B,)
        for s in range(0, k, chunk):
            c = min(chunk, k - s)
            log_w = model.log_weights(xb, next(draws), check_data=False)      # (c, B)
            part = log_mean_exp(log_w)[0] + math.log(c)                           # (B,)
            log_sum = part if log_sum is None else xp.logaddexp(log_sum, part)
        out.append(log_sum.astype(xp.float64) - math.log(k))
    return xp.concatenate(out)


def latent_mean_variances(model, x, batch_size: int = 1000) -> list:
    r"""Cov_x(E_q[u]) for every unit u, one host array (D_l,) per stochastic layer."""
    batch_size = check_int("batch_size", batch_size, 1, "examples per batch, e.g. 1000")
    model.check_x(x, cast=False)                      # (N, P) with N >= 1, before any batch
    xp = model.xp
    rng = model.backend.generator("latent_means")
    per_batch = [model.latent_means(xp.asarray(x[i:i + batch_size], dtype=model.dtype), rng)
                 for i in range(0, x.shape[0], batch_size)]
    return [to_host(xp.concatenate([b[l] for b in per_batch]).astype(xp.float64).var(axis=0))
            for l in range(len(per_batch[0]))]


def _check_threshold(threshold) -> float:
    return check_real("threshold", threshold, 0.0,
                      fix="unit u is active when Var_x E_q[u] > threshold, 1e-2 in the paper")


def active_units_per_layer(model, x, threshold: float = 1e-2, batch_size: int = 1000) -> list:
    """Active units of each stochastic layer, e.g. [16, 5] (the paper writes "16+5")."""
    threshold = _check_threshold(threshold)
    return [int((v > threshold).sum()) for v in latent_mean_variances(model, x, batch_size)]


def active_units(model, x, threshold: float = 1e-2, batch_size: int = 1000):
    r"""(number of active units over all layers, Cov_x(E_q[u]) per unit (D,)) where E_q[u] is
    the encoder's mean for a one-layer model (see :func:`latent_mean_variances`)."""
    threshold = _check_threshold(threshold)
    var = np.concatenate(latent_mean_variances(model, x, batch_size))
    return int((var > threshold).sum()), var


def summarize(ll) -> dict:
    """Mean negative log-likelihood and its standard error, nats; ``ll`` (N,), finite, N >= 1."""
    ll = np.asarray(ll, dtype=np.float64)
    if ll.ndim != 1 or ll.size == 0:
        raise InvalidInput(f"summarize needs a non-empty 1-D array of log-likelihoods, got shape "
                           f"{ll.shape}.")
    bad = int((~np.isfinite(ll)).sum())
    if bad:
        raise InvalidInput(f"ll holds {bad} non-finite log-likelihood{'s' * (bad > 1)} of "
                           f"{ll.size}: the model's parameters or its data are not finite.")
    return {"nll": float(-ll.mean()), "nll_se": float(ll.std(ddof=1) / math.sqrt(len(ll)))
            if len(ll) > 1 else 0.0, "n": int(len(ll))}


if __name__ == "__main__":                       # python -m minivae.evaluate: the command lives in commands.py
    from .commands import evaluate_main
    sys.exit(evaluate_main())

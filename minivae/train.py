r"""Training: minibatches, dynamic binarisation, learning-rate schedules, per-epoch evaluation.

One epoch, for a model on a backend ``be`` (NumPy or CuPy):

    perm  = host permutation of the N training rows           (seeded by (seed, epoch))
    rng   = be.generator("train", epoch)                      (noise for this epoch, on the device)
    for each batch of rows:
        x     = binarize(x_train[rows], rng)                  # pixels redrawn ~ Bernoulli(intensity)
        loss, grads, stats = model.loss_and_grads(x, objective, k, beta, rng=rng)
        optimizer.step(model.params, grads)                   # in place
    test  = -ELBO on the test set binarised once, fixed eps  (nats per example)

Every random draw of epoch e depends only on (seed, e), so a run resumed after epoch e
continues exactly as an uninterrupted one would.  Losses stay on the device during the epoch
(no host synchronisation per step on CuPy); they are read once per epoch, or every few
hundred steps to update a progress bar.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from .backend import reuse_freed_memory
from .data import binarize, binarize_fixed
from .optim import make_optimizer

SCHEDULES = ("constant", "iwae", "exp")
IWAE_PASSES = sum(3 ** i for i in range(8))          # 3280


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is left as it was."""


@dataclass
class TrainConfig:
    r"""What a training run does.

    schedule:
        ``"constant"``: ``lr`` throughout.
        ``"iwae"``: Burda et al.: stage i = 0..7 lasts 3^i passes at lr * 10^(-i/7) (3280 passes);
                    with fewer ``epochs`` the stages keep their proportions.
        ``"exp"``:  lr decays geometrically from ``lr`` to ``lr_end`` over the epochs.
    minutes:
        a wall-clock budget: training stops at the first epoch end past it, and the schedule
        follows the elapsed fraction of the budget instead of the fraction of ``epochs``
        (which is then only an upper limit).  Timed runs are not bit-reproducible.
    """
    epochs: int = 10
    batch_size: int = 100
    objective: str = "elbo"
    k: int = 1
    beta: float = 1.0
    lr: float = 1e-3
    schedule: str = "constant"
    lr_end: float = 1e-4
    optimizer: str = "adam"
    adam_eps: float = 1e-4
    seed: int = 0
    binarize: bool = True
    dataset: str = "mnist"
    eval_batch: int = 1000
    minutes: float | None = None

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Unknown schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}.")
        for name in ("epochs", "batch_size", "k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")


def learning_rate(cfg: TrainConfig, epoch: int, progress: float | None = None) -> float:
    """The learning rate for epoch ``epoch`` (0-based) under ``cfg.schedule``.

    ``progress`` in [0, 1), if given, is the fraction of a time budget already used and
    replaces the fraction of epochs done.
    """
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "exp":
        frac = epoch / max(cfg.epochs - 1, 1) if progress is None else progress
        return cfg.lr * (cfg.lr_end / cfg.lr) ** min(frac, 1.0)
    # iwae: map this epoch to the paper's pass p in [0, 3280); stage i covers passes
    # [(3^i - 1)/2, (3^(i+1) - 1)/2).
    p = (epoch + 0.5) * IWAE_PASSES / cfg.epochs if progress is None else progress * IWAE_PASSES
    i = min(int(math.log(2 * p + 1, 3)), 7)
    return cfg.lr * 10 ** (-i / 7)


def make_train_optimizer(cfg: TrainConfig):
    if cfg.optimizer == "adam":
        return make_optimizer("adam", lr=cfg.lr, beta1=0.9, beta2=0.999, eps=cfg.adam_eps)
    return make_optimizer(cfg.optimizer, lr=cfg.lr)


def evaluate_elbo(model, x_test_bin, cfg: TrainConfig) -> dict:
    """Test -ELBO (analytic KL, beta = 1 whatever the training beta, one fixed eps), its KL and
    reconstruction terms, nats per example."""
    xp, be = model.xp, model.backend
    rng = be.generator("test_elbo")                      # the same eps every epoch
    totals = xp.zeros(3, dtype=xp.float64)
    for i in range(0, x_test_bin.shape[0], cfg.eval_batch):
        xb = x_test_bin[i:i + cfg.eval_batch]
        bound, _, stats = model.forward(xb, "elbo", 1, 1.0, rng=rng)
        n = xb.shape[0]
        totals += xp.stack([-bound.sum(), stats["kl"] * n, stats["recon"] * n]).astype(xp.float64)
    nelbo, kl, recon = (float(v) / x_test_bin.shape[0] for v in be.to_host(totals))
    return {"test_nelbo": nelbo, "test_kl": kl, "test_recon": recon}


def _progress(total: int, desc: str, enabled: bool):
    """A tqdm bar when attached to a terminal and tqdm is installed, else None."""
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)


def train(model, x_train, x_test, cfg: TrainConfig, optimizer=None, start_epoch: int = 0,
          history: list | None = None, on_epoch_end=None, log=print, progress: bool = True):
    r"""Train ``model`` for epochs ``start_epoch .. cfg.epochs - 1``; return the history.

    x_train, x_test: host float32 arrays (N, P) in [0, 1] (grey levels); the training set is
    binarised afresh every batch (``cfg.binarize``), the test set once with a fixed seed.
    ``on_epoch_end(epoch, history, optimizer)`` runs after each epoch (to save a checkpoint).
    Raises :class:`NonFiniteLoss` if the loss becomes NaN or infinite.
    """
    be, xp = model.backend, model.xp
    reuse_freed_memory()                  # every step allocates the same large arrays: keep them
    optimizer = optimizer or make_train_optimizer(cfg)
    history = list(history or [])
    X = be.asarray(x_train, model.dtype)                                   # on the device, once
    X_test = be.asarray(binarize_fixed(x_test, cfg.seed) if cfg.binarize else x_test, model.dtype)
    N, B = X.shape[0], cfg.batch_size
    n_batches = math.ceil(N / B)

    budget = None if cfg.minutes is None else 60.0 * cfg.minutes
    elapsed = sum(r["seconds"] for r in history)                         # time spent before a resume
    for epoch in range(start_epoch, cfg.epochs):
        if budget is not None and elapsed >= budget:
            log(f"time budget of {cfg.minutes:g} minutes used after {epoch} epochs")
            break
        optimizer.lr = learning_rate(cfg, epoch, None if budget is None else elapsed / budget)
        perm = xp.asarray(np.random.default_rng([cfg.seed, epoch]).permutation(N))
        rng = be.generator("train", epoch)
        bar = _progress(n_batches, f"epoch {epoch + 1}/{cfg.epochs}", progress)
        total = xp.zeros((), dtype=xp.float64)
        t0 = time.perf_counter()
        for j in range(n_batches):
            xb = X[perm[j * B:(j + 1) * B]]
            if cfg.binarize:
                xb = binarize(xb, rng)
            loss, grads, _ = model.loss_and_grads(xb, cfg.objective, cfg.k, cfg.beta, rng=rng)
            optimizer.step(model.params, grads)
            total += loss * xb.shape[0]
            if bar is not None:
                bar.update(1)
                if j % 100 == 99:                                           # one sync per 100 steps
                    bar.set_postfix(loss=f"{float(total) / min((j + 1) * B, N):.2f}")
        train_loss = float(total) / N
        be.synchronize()
        seconds = time.perf_counter() - t0
        elapsed += seconds
        if bar is not None:
            bar.close()
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(
                f"The training loss became {train_loss} in epoch {epoch + 1}: training stopped and "
                "the last good checkpoint was kept. Lower the learning rate (--lr) or check the data.")
        record = {"epoch": epoch + 1, "lr": optimizer.lr, "train_loss": train_loss,
                  **evaluate_elbo(model, X_test, cfg), "seconds": seconds}
        history.append(record)
        objective = cfg.objective + (f" beta={cfg.beta:g}" if cfg.beta != 1 else "")
        log(f"epoch {epoch + 1:3d}/{cfg.epochs}  train {objective} loss {train_loss:8.3f}  "
            f"test -ELBO {record['test_nelbo']:8.3f} nats  KL {record['test_kl']:6.3f}  "
            f"lr {optimizer.lr:.2e}  {seconds:6.2f} s")
        if on_epoch_end is not None:
            on_epoch_end(epoch, history, optimizer)
    return history


def config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)

r"""Training: minibatches, dynamic binarisation, learning-rate schedules, per-epoch evaluation.

One epoch, for a model on a backend ``be`` (NumPy or CuPy):

    perm  = host permutation of the N training rows           (seeded by (seed, epoch))
    rng   = be.generator("train", epoch)                      (noise for this epoch, on the device)
    for each batch of rows:
        x     = binarize(x_train[rows], rng)                  # pixels redrawn ~ Bernoulli(intensity)
        eps   = rng.standard_normal((k, B, eps_dim))          # then the batch's eps
        loss, grads, stats = model.loss_and_grads(x, objective, k, beta, eps=eps)
        optimizer.step(model.params, grads)                   # in place
    test  = -ELBO on the test set binarised once, fixed eps  (nats per example)

The next batch (its rows, binarisation and eps) is drawn on another thread while this step runs
(:func:`minivae.parallel.ahead`), in the same order from the same generator, so the draws are the
same; and the step's examples go in shares over threads
(:meth:`~minivae.model.LatentVariableModel.loss_and_grads`).

Every random draw of epoch e depends only on (seed, e), so a run resumed after epoch e
continues exactly as an uninterrupted one would.  Losses stay on the device during the epoch
(no host synchronisation per step on CuPy); they are read once per epoch, or every few
hundred steps to update a progress bar.

Under MPI (``mpiexec -n N``, see :mod:`minivae.distributed`) each global batch of B rows is split
into N contiguous shards.  Every rank draws the noise of the whole batch, as one process does,
and keeps its shard's rows of it; it computes its shard's gradients, and one Allreduce weighted
by the shards' sizes gives every rank the whole batch's gradient, so every rank takes the same
step:

    x, eps     = the global batch's, drawn as above;  x_r, eps_r = x[shard r], eps[:, shard r]
    grads_r    = model.loss_and_grads(x_r, ..., eps=eps_r)         (mean over the B_r rows)
    grads      = sum_r (B_r / B) grads_r                           (distributed.allreduce_grads)
    optimizer.step(model.params, grads)                            (the same on every rank)

A run therefore draws the same numbers whatever the number of ranks, and ends, to rounding, with
the parameters of one process (the sums are associated differently).  Drawing the whole batch's
noise on every rank costs B (P + k eps_dim) random numbers a step per rank.
"""
from __future__ import annotations

import math
import numbers
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import distributed, parallel
from .backend import reuse_freed_memory
from .checks import InvalidInput, InvalidInputType
from .data import binarize, binarize_fixed
from .objectives import ESTIMATORS, get_objective
from .optim import OPTIMIZERS, make_optimizer

SCHEDULES = ("constant", "iwae", "exp")
IWAE_PASSES = sum(3 ** i for i in range(8))          # 3280
DIVERGENCE_FACTOR = 100     # see train(): how far above its start a loss may go


class NonFiniteLoss(RuntimeError):
    """Training stopped at an epoch's end because a loss or a parameter (or the optimizer's
    state) was NaN or infinite; ``on_epoch_end`` was not called for that epoch, so nothing it
    would have saved was written."""


class TrainingDiverged(NonFiniteLoss):
    """Training stopped at an epoch's end because the test -ELBO or the training loss grew without
    bound (see :func:`train`); as for :class:`NonFiniteLoss`, nothing was saved for that epoch."""


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
    estimator, m, ciwae_beta:
        None trains on the objective's own gradient.  With objective ``"iwae"``, one of
        :data:`minivae.objectives.ESTIMATORS` (``"stl"``, ``"dreg"``, ``"miwae"``, ``"piwae"``,
        ``"ciwae"``, or ``"iwae"`` itself) estimates the gradient instead
        (:meth:`~minivae.model.LatentVariableModel.estimator_loss_and_grads`), with ``m`` groups of
        ``k`` samples for MIWAE and PIWAE and ``ciwae_beta`` for CIWAE.
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
    estimator: str | None = None
    m: int = 1
    ciwae_beta: float = 0.5

    def __post_init__(self):
        """Check every field where it enters: one :class:`~minivae.checks.InvalidInput` (a
        ValueError) naming the field, its value and what it must be."""
        for name in ("schedule", "optimizer"):
            choices = SCHEDULES if name == "schedule" else tuple(OPTIMIZERS)
            value = getattr(self, name)
            if not isinstance(value, str) or value not in choices:
                raise InvalidInput(f"Unknown {name} {value!r}: choose one of {', '.join(choices)}.")
        try:
            get_objective(self.objective)
        except ValueError as err:                        # "Unknown objective ...: choose ..."
            raise InvalidInput(str(err)) from None
        for name in ("epochs", "batch_size", "k", "eval_batch"):
            _check(name, getattr(self, name), 1, integer=True)
        _check("seed", self.seed, 0, integer=True)
        _check("beta", self.beta, 0, inclusive=True)
        for name in ("lr", "lr_end", "adam_eps"):
            _check(name, getattr(self, name), 0)
        if self.minutes is not None:
            _check("minutes", self.minutes, 0, extra=" (or None: no time budget)")
        _check("m", self.m, 1, integer=True)
        if not (isinstance(self.ciwae_beta, numbers.Real) and 0 <= self.ciwae_beta <= 1):
            raise InvalidInput(f"ciwae_beta must be in [0, 1], got {self.ciwae_beta!r}.")
        if self.estimator is not None:
            if self.estimator not in ESTIMATORS:
                raise InvalidInput(f"Unknown estimator {self.estimator!r}: choose one of "
                                   f"{', '.join(ESTIMATORS)} (or None).")
            if self.objective != "iwae" or self.beta != 1:
                raise InvalidInput(f"estimator {self.estimator!r} estimates the gradient of the IWAE "
                                   f"family: use objective 'iwae' and beta 1, got objective "
                                   f"{self.objective!r}, beta {self.beta!r}.")
        if self.m > 1 and self.estimator not in ("miwae", "piwae"):
            raise InvalidInput(f"m={self.m} groups need estimator 'miwae' or 'piwae', got "
                               f"{self.estimator!r}.")
        if not isinstance(self.binarize, bool):
            raise InvalidInputType(f"binarize must be True or False, got {self.binarize!r}.")
        if not isinstance(self.dataset, str):
            raise InvalidInputType(f"dataset must be a data set's name (a string), got "
                                   f"{self.dataset!r}.")


def _check(name, value, low, integer: bool = False, inclusive: bool | None = None,
           extra: str = "") -> None:
    """Raise ``"<name> must be at least <low> and an integer, got <value>."`` (or "above <low> and
    finite" for a real number) unless ``value`` is such a number; ``inclusive`` defaults to
    at-least for integers and above for real numbers."""
    inclusive = integer if inclusive is None else inclusive
    kind = numbers.Integral if integer else numbers.Real
    right_kind = isinstance(value, kind) and not isinstance(value, bool)
    if not (right_kind and (integer or math.isfinite(value))
            and (value >= low if inclusive else value > low)):
        rule = (f"{'at least' if inclusive else 'above'} {low} and "
                f"{'an integer' if integer else 'finite'}")
        error = InvalidInput if right_kind else InvalidInputType
        raise error(f"{name} must be {rule}{extra}, got {value!r}.")


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


def evaluate_elbo(model, x_test_bin, cfg: TrainConfig, check_data: bool = True,
                  ranks: tuple = (1, 0)) -> dict:
    """Test -ELBO (analytic KL, beta = 1 whatever the training beta, one fixed eps), its KL and
    reconstruction terms, nats per example.  ``check_data=False`` skips the likelihood's data check
    of each batch (for a test set checked once already, as :func:`train` does).

    ``ranks=(size, rank)`` (:func:`minivae.distributed.world`, as :func:`train` passes) splits
    every batch over the ranks: each draws the batch's eps as one process does, scores its shard of
    the rows, and the three totals are summed over the ranks, so every rank returns the same
    numbers, one process's to rounding.  Every rank must call it then."""
    xp, be = model.xp, model.backend
    size, rank = ranks
    rng = be.generator("test_elbo")                      # the same eps every epoch
    totals = xp.zeros(3, dtype=xp.float64)
    for i in range(0, x_test_bin.shape[0], cfg.eval_batch):
        xb = x_test_bin[i:i + cfg.eval_batch]
        eps = model.draw_eps(1, xb.shape[0], rng)                          # (1, b, eps_dim)
        mine = distributed.shard(xb.shape[0], size, rank)
        xb, eps = xb[mine], eps[:, mine]
        n = xb.shape[0]
        if n == 0:
            continue
        bound, _, stats = model.forward(xb, "elbo", 1, 1.0, eps=eps, check_data=check_data)
        totals += xp.stack([-bound.sum(), stats["kl"] * n, stats["recon"] * n]).astype(xp.float64)
    totals = be.to_host(totals)
    if size > 1:
        totals = distributed.allreduce_sum(totals)
    nelbo, kl, recon = (float(v) / x_test_bin.shape[0] for v in totals)
    return {"test_nelbo": nelbo, "test_kl": kl, "test_recon": recon}


def draw_batch(model, xb, cfg: TrainConfig, rng, mine: slice = slice(None)):
    r"""(x, eps) of one training step: the rows ``mine`` of the global batch ``xb`` (B, P),
    binarised when ``cfg.binarize``, and their noise eps (S, B_mine, eps_dim), S = k m.

    The draws are one process's, in its order, for the whole batch: u (B, P) for the
    binarisation, then eps (S, B, eps_dim); a rank of a distributed run keeps its rows of both,
    so the rows of every rank together are exactly what one process would have drawn.
    """
    if cfg.binarize:
        xb = binarize(xb, rng)
    eps = model.draw_eps(cfg.k * cfg.m, xb.shape[0], rng)
    return xb[mine], model.xp.ascontiguousarray(eps[:, mine])


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

    Guards.  Once per run, both data sets are checked by the likelihood's rule
    (``model.likelihood.check_data``: finite, in [0, 1] for Bernoulli pixels; the steps then skip
    it), and the model's parameters, the optimizer's state and, for a fresh run, the test -ELBO
    before training must be finite.  At every epoch's end, before the epoch is logged, recorded or
    handed to ``on_epoch_end``:

    * the training loss, the test -ELBO, every parameter and every optimizer state array must be
      finite, else :class:`NonFiniteLoss`.  All four are needed: with one batch per epoch the
      loss is measured before the step that turned the parameters to NaN.
    * the test -ELBO must stay at most ``start + 100 max(|start|, P)`` nats, with ``start`` the
      test -ELBO before the first epoch (on a resume, after the run's first epoch: ``history[0]``)
      and P the pixels per example, and the training loss at most ``start + 100 max(|start|, P)
      max(1, beta)`` (its KL term weighs beta), else :class:`TrainingDiverged`.  Training lowers
      the loss; one that grew by a hundred times its starting size, and by at least 100 nats per
      pixel (a fair coin is 0.69 nats a binary pixel), is growing without bound: ``--lr-end 1e5``
      took a VAE on MNIST to 1e11 nats.  The training loss counts too: it sees every step, and a
      run whose steps reached 1e17 nats mid-epoch can end the epoch at a test -ELBO of "only"
      5,000.  The floor of 100 nats a pixel keeps a start near zero (a learned variance) from
      making the bound tight.

    Either way ``on_epoch_end`` is not called for the failing epoch, so a checkpoint it saved
    for an earlier epoch is left as it was, and the message says so.

    Resuming: pass the checkpoint's optimizer, ``start_epoch`` = the epochs it completed and its
    ``history``.  Every random draw of epoch e depends only on (seed, e), so with the same ``cfg``
    the resumed run ends with exactly the parameters of an uninterrupted one (on NumPy).  With a
    larger ``cfg.epochs`` it is not one longer run: the ``"exp"`` schedule sets epoch e's rate
    from e / (epochs - 1) and ``"iwae"`` spreads its stages over ``epochs``, so the new length
    recomputes the schedule from ``start_epoch`` on (after a finished exp run decayed to
    ``lr_end``, the rate jumps back up to where a run of the new length would be at
    ``start_epoch``), while the epochs already done keep the rates of the old length.  A longer
    ``cfg.minutes`` budget does the same to a timed run.  ``"constant"`` is unaffected.

    Under MPI with more than one rank (:mod:`minivae.distributed`), every rank calls ``train``
    with the same arguments (a resumed run: every rank reads the checkpoint).  Rank 0's parameters
    are broadcast first; each step is sharded as the module docstring shows.  The epoch's training
    loss is summed over the ranks once per epoch, the test -ELBO is sharded and summed, and an
    epoch's seconds are its slowest rank's, so every rank takes the same guard and time-budget
    decisions.  Only rank 0 logs, shows progress and calls ``on_epoch_end`` (its checkpoint is
    written atomically, as ever); the other ranks return the same history.
    """
    be, xp = model.backend, model.xp
    size, rank = distributed.world()
    saves = on_epoch_end is not None                     # for the messages: the same on every rank
    if rank != 0:
        log, progress, on_epoch_end = (lambda *_: None), False, None
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if getattr(x, "ndim", None) != 2 or x.shape[0] == 0:
            raise InvalidInput(f"{name} must be a 2-D array with at least one row (N, P), got "
                               f"shape {getattr(x, 'shape', type(x).__name__)}.")
        model.likelihood.check_data(x)                   # once per run; the steps skip it
    reuse_freed_memory()                  # every step allocates the same large arrays: keep them
    optimizer = optimizer or make_train_optimizer(cfg)
    history = list(history or [])
    X = be.asarray(x_train, model.dtype)                                   # on the device, once
    X_test = be.asarray(binarize_fixed(x_test, cfg.seed) if cfg.binarize else x_test, model.dtype)
    N, B = X.shape[0], cfg.batch_size
    n_batches = math.ceil(N / B)

    def stop(error, epoch, problem):
        """Raise ``error`` for epoch ``epoch`` (0-based; None: before training), saying truly
        what was saved."""
        if epoch is None:
            where, kept = "before training", "Nothing was trained or saved."
        else:
            where = f"in epoch {epoch + 1}"
            kept = f"Epoch {epoch + 1} was not saved" + (
                "." if not saves else
                ", and no checkpoint was written before it." if epoch == 0 else
                ": the last good checkpoint was kept.")
        raise error(f"Training stopped {where}: {problem}. {kept} Lower the learning rate "
                    "(--lr, --lr-end), or check the data and the model's parameters.")

    if size > 1:
        distributed.broadcast_params(model)
    bad = non_finite_arrays(model, optimizer)
    start, start_when = (history[0].get("test_nelbo"), "after epoch 1") if history else (None, "")
    if not bad and not (isinstance(start, float) and math.isfinite(start)):
        start = evaluate_elbo(model, X_test, cfg, check_data=False,
                              ranks=(size, rank))["test_nelbo"]
        start_when = "before training"
    if bad or not math.isfinite(start):
        stop(NonFiniteLoss, None, f"{_list(bad)} hold NaN or infinite values" if bad else
             f"the model's test -ELBO is {start} nats")
    limit = start + DIVERGENCE_FACTOR * max(abs(start), X.shape[1])          # see the docstring
    train_limit = start + (limit - start) * max(1.0, cfg.beta)

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
        total = xp.zeros((), dtype=xp.float64)           # this rank's sum of loss * rows
        seen = 0                                           # this rank's rows so far
        t0 = time.perf_counter()
        shards = [distributed.shard(min(B, N - j * B), size, rank) for j in range(n_batches)]
        batches = parallel.ahead((draw_batch(model, X[perm[j * B:(j + 1) * B]], cfg, rng, mine)
                                  for j, mine in enumerate(shards)), like=X)   # one step ahead
        for j, (xb, eps) in enumerate(batches):
            rows = perm[j * B:(j + 1) * B]                 # the global batch: every rank's
            n = xb.shape[0]
            if n == 0:                                     # fewer rows than ranks: add nothing
                grads = {name: xp.zeros_like(p) for name, p in model.params.items()}
            elif cfg.estimator is None:
                loss, grads, _ = model.loss_and_grads(xb, cfg.objective, cfg.k, cfg.beta, eps=eps,
                                                      check_data=False)
            else:
                loss, grads, _ = model.estimator_loss_and_grads(
                    xb, cfg.estimator, cfg.k, cfg.m, cfg.ciwae_beta, eps=eps, check_data=False)
            if size > 1:
                grads = distributed.allreduce_grads(grads, n / rows.shape[0])   # the batch's mean
            optimizer.step(model.params, grads)
            if n:
                total += loss * n
                seen += n
            if bar is not None:
                bar.update(1)
                if j % 100 == 99:                                           # one sync per 100 steps
                    bar.set_postfix(loss=f"{float(total) / max(seen, 1):.2f}")
        train_loss = distributed.allreduce_sum(float(total)) / N
        be.synchronize()
        seconds = distributed.allreduce_max(time.perf_counter() - t0)    # the slowest rank's
        elapsed += seconds
        if bar is not None:
            bar.close()

        # the epoch's end: nothing is logged, recorded or saved before these checks pass
        record = {"epoch": epoch + 1, "lr": optimizer.lr, "train_loss": train_loss,
                  **evaluate_elbo(model, X_test, cfg, check_data=False, ranks=(size, rank)),
                  "seconds": seconds}
        bad = non_finite_arrays(model, optimizer)
        problems = [f"the {what} is {value}" for what, value in (
            ("training loss", train_loss), ("test -ELBO", record["test_nelbo"]))
            if not math.isfinite(value)]
        problems += [f"{_list(bad)} hold NaN or infinite values"] if bad else []
        if problems:
            stop(NonFiniteLoss, epoch, ", ".join(problems))
        for what, value, bound in (("test -ELBO", record["test_nelbo"], limit),
                                   ("training loss", train_loss, train_limit)):
            if value > bound:
                stop(TrainingDiverged, epoch, (
                    f"the loss diverged: the {what} reached {value:.4g} nats, above the limit of "
                    f"{bound:.4g}, which is the test -ELBO {start_when} ({start:.4g}) plus "
                    f"{DIVERGENCE_FACTOR} times the larger of its size and the {X.shape[1]} "
                    "pixels' count" + (f", times beta = {cfg.beta:g}"
                                       if bound is train_limit and cfg.beta > 1 else "")))
        history.append(record)
        objective = cfg.objective + (f" beta={cfg.beta:g}" if cfg.beta != 1 else "") + (
            f" ({cfg.estimator} gradient)" if cfg.estimator else "")
        log(f"epoch {epoch + 1:3d}/{cfg.epochs}  train {objective} loss {train_loss:8.3f}  "
            f"test -ELBO {record['test_nelbo']:8.3f} nats  KL {record['test_kl']:6.3f}  "
            f"lr {optimizer.lr:.2e}  {seconds:6.2f} s")
        if on_epoch_end is not None:
            on_epoch_end(epoch, history, optimizer)
    return history


def non_finite_arrays(model, optimizer=None) -> list:
    """The names of the model's parameters and the optimizer's state arrays that hold NaN or
    infinite values (``"encoder.0.W"``, ``"Adam m/encoder.0.W"``), with one read from the device."""
    arrays = dict(model.params)
    if optimizer is not None:
        kind = type(optimizer).__name__
        state = getattr(optimizer, "state", {})
        arrays.update({f"{kind} {slot}/{name}": a for slot, d in state.items()
                       for name, a in d.items()})
    xp = model.xp
    finite = model.backend.to_host(xp.stack([xp.isfinite(a).all() for a in arrays.values()]))
    return [name for name, ok in zip(arrays, finite) if not ok]


def _list(names, most: int = 4) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)

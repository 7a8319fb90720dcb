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
import numbers
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

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


def evaluate_elbo(model, x_test_bin, cfg: TrainConfig, check_data: bool = True) -> dict:
    """Test -ELBO (analytic KL, beta = 1 whatever the training beta, one fixed eps), its KL and
    reconstruction terms, nats per example.  ``check_data=False`` skips the likelihood's data check
    of each batch (for a test set checked once already, as :func:`train` does)."""
    xp, be = model.xp, model.backend
    rng = be.generator("test_elbo")                      # the same eps every epoch
    totals = xp.zeros(3, dtype=xp.float64)
    for i in range(0, x_test_bin.shape[0], cfg.eval_batch):
        xb = x_test_bin[i:i + cfg.eval_batch]
        bound, _, stats = model.forward(xb, "elbo", 1, 1.0, rng=rng, check_data=check_data)
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
    """
    be, xp = model.backend, model.xp
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
                "." if on_epoch_end is None else
                ", and no checkpoint was written before it." if epoch == 0 else
                ": the last good checkpoint was kept.")
        raise error(f"Training stopped {where}: {problem}. {kept} Lower the learning rate "
                    "(--lr, --lr-end), or check the data and the model's parameters.")

    bad = non_finite_arrays(model, optimizer)
    start, start_when = (history[0].get("test_nelbo"), "after epoch 1") if history else (None, "")
    if not bad and not (isinstance(start, float) and math.isfinite(start)):
        start = evaluate_elbo(model, X_test, cfg, check_data=False)["test_nelbo"]
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
        total = xp.zeros((), dtype=xp.float64)
        t0 = time.perf_counter()
        for j in range(n_batches):
            xb = X[perm[j * B:(j + 1) * B]]
            if cfg.binarize:
                xb = binarize(xb, rng)
            if cfg.estimator is None:
                loss, grads, _ = model.loss_and_grads(xb, cfg.objective, cfg.k, cfg.beta, rng=rng,
                                                      check_data=False)
            else:
                loss, grads, _ = model.estimator_loss_and_grads(
                    xb, cfg.estimator, cfg.k, cfg.m, cfg.ciwae_beta, rng=rng, check_data=False)
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

        # the epoch's end: nothing is logged, recorded or saved before these checks pass
        record = {"epoch": epoch + 1, "lr": optimizer.lr, "train_loss": train_loss,
                  **evaluate_elbo(model, X_test, cfg, check_data=False), "seconds": seconds}
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

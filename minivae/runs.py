r"""What a run needs besides its flags: the output folder, the data and the model the flags
name, a checkpoint after every epoch, and the files a run writes, each written atomically.

The example scripts are built from this module and from :mod:`minivae.commands` (every flag,
and the two commands); the library below (``evaluate``, ``analysis``, ``train``, ...) imports
neither.  A problem is a :class:`CommandError` (or an OSError that names its file), which
:func:`minivae.commands.run` turns into one line on stderr.

    output_folder(out)                     --out, created and checked writable before any work
    refuse_to_replace(ckpt, args, hint)    a new run never silently replaces a saved one
    read_saved_run(path)                   a checkpoint's model, train dict and configuration
    backend_and_data(args, subset)         the backend and the data set (a subset) the flags name
    check_count(n, available, flag, what)  --subset, --n, --eval-n: no more than there is
    training_subset(ds, n)                 the data set with its first n training images only
    check_batch_size(b, n, what)           a batch no larger than the data it is drawn from
    build_vae(args, x_train, backend)      the VAE the flags describe, output bias from x_train
    short_training_config(args)            the TrainConfig of a short run (lr decays to lr / 10)
    estimator_text(cfg)                    "dreg", "miwae (m=8)": a run's gradient estimator
    describe_training(cfg)                 "iwae k=5, dreg gradient": the objective and estimator
    save_every_epoch(path, model, cfg)     train()'s on_epoch_end: a checkpoint after every epoch
    train_state(cfg, epochs, history)      the train dict a checkpoint keeps
    train_config(saved, **changes)         the TrainConfig a checkpoint saved, with changes
    resumed_config(path, train, **changes) the same from a checkpoint's train dict, or one sentence
    resume_run(path, backend, **changes)   a saved run loaded to go on: model, optimizer, config, ...
    score_log_likelihood(model, x, k)      L_k's mean, standard error and time, for metrics.json
    machine()                              the processor, CPUs, Python and NumPy of this run
    write_text(path, text)                 a text file, written atomically
    write_metrics(path, metrics)           JSON, written atomically
    read_records(path, key)                a JSON list of records; a damaged file is one sentence
    update_records(path, records, key)     a JSON list of records, updated by key, written again
    markdown_table(head, rows)             the lines of a markdown table
    write_figures(make_figures, *args)     the figures, or one line saying why there are none
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import distributed
from .backend import get_backend
from .checkpoint import (CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint,
                         write_atomically)
from .data import load_dataset
from .evaluate import log_likelihood, summarize
from .model import VAE
from .train import TrainConfig, config_dict


class CommandError(ValueError):
    """A setting, a folder or a file given to a command cannot be used; the message names it and
    the fix."""


# ---------------------------------------------------------------- the output folder

def output_folder(out) -> Path:
    """``--out`` as a folder that exists and can be written to, checked before any work starts:
    created if missing (with its parents).  A file in its place, or a folder that cannot be made
    or written to, is a :class:`CommandError`."""
    out = Path(out)
    try:
        if out.exists() and not out.is_dir():
            raise CommandError(f"--out {out} is a file, not a folder: pass a folder (it is "
                               "created if missing).")
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):       # the one way to know: write something
            pass
    except OSError as err:
        raise CommandError(f"cannot write to --out {out} ({err.strerror or err}): pass a folder "
                           "you can write to, or fix its permissions.") from None
    return out


def refuse_to_replace(path, args, resume_hint: str = "pass --resume to continue it") -> None:
    """Stop a new run that would replace the checkpoint at ``path`` (a finished or a stopped run),
    unless ``--overwrite`` was given; the sentence says how to continue it (``resume_hint``) or
    start over."""
    path = Path(path)
    if path.exists() and not getattr(args, "overwrite", False):
        raise CommandError(f"{path} holds a saved run, which a new run would replace: "
                           f"{resume_hint}, or pass --overwrite (or another --out) to start "
                           "a new one.")


def read_saved_run(path) -> tuple[dict, dict, dict]:
    """``(model, train, config)`` of the checkpoint at ``path``, read without loading its arrays:
    the model's description, the train dict (:func:`train_state`) and its training
    configuration, each ``{}`` where the checkpoint has none (a missing checkpoint is a
    :class:`~minivae.checkpoint.CheckpointError`)."""
    meta, _ = read_checkpoint(path)
    model, train = meta.get("model") or {}, meta.get("train") or {}
    return model, train, train.get("config") if isinstance(train.get("config"), dict) else {}


# ---------------------------------------------------------------- what the flags name

def backend_and_data(args, dataset: str | None = None, subset: int | None = None):
    """``(backend, dataset)`` from ``--backend``, ``--seed``, ``--dataset`` (or ``dataset``),
    ``--data-dir`` and ``--offline``; with ``subset`` (``--subset``), the data set has its first
    ``subset`` training images only (:func:`training_subset`).  Raises BackendUnavailable,
    DataError or a :class:`CommandError`."""
    if args.backend == "cupy":
        distributed.select_gpu()                 # under MPI: this rank's own GPU, before any array
    be = get_backend(args.backend, args.seed)
    return be, training_subset(load_dataset(dataset or args.dataset, args.data_dir, args.offline),
                               subset)


def check_count(n: int | None, available: int, flag: str, what: str) -> None:
    """A count given as ``flag`` (``--subset``, ``--n``, ``--eval-n``) may be at most the
    ``available`` ``what`` (``"test images of mnist"``); None asks for them all."""
    if n is not None and n > available:
        raise CommandError(f"{flag} {n} is more than the {available} {what}: pass at most "
                           f"{available}, or leave {flag} out to use them all.")


def training_subset(ds, n: int | None):
    """``ds`` with its first ``n`` training images and labels only (``--subset``); all of them
    when n is None or 0.  More than the data set has is a :class:`CommandError`."""
    if not n:
        return ds
    check_count(n, ds.x_train.shape[0], "--subset", f"training images of {ds.name}")
    return replace(ds, x_train=ds.x_train[:n], y_train=ds.y_train[:n])


def check_batch_size(batch_size: int, n: int, what: str = "training images") -> None:
    """A batch of ``batch_size`` rows must fit in the ``n`` ``what`` it is drawn from."""
    if batch_size > n:
        raise CommandError(f"--batch-size {batch_size} is larger than the {n} {what}: pass "
                           f"--batch-size of at most {n} (or a larger --subset).")


def build_vae(args, x_train, backend, likelihood: str = "bernoulli", sigma: float = 1.0):
    """The VAE of ``--latent-dim``, ``--hidden`` (the decoder mirrors the encoder),
    ``--activation`` (tanh for a script without it) and ``--seed`` on ``backend``.

    Its output bias starts at the mean training image (Burda et al.: a Bernoulli decoder's logits
    at the logit of the mean pixel), so training does not spend its first steps learning it.
    """
    hidden = list(args.hidden)
    model = VAE(x_dim=x_train.shape[1], latent_dim=args.latent_dim, encoder_hidden=hidden,
                decoder_hidden=hidden[::-1], activation=getattr(args, "activation", "tanh"),
                likelihood=likelihood, sigma=sigma, seed=args.seed, backend=backend)
    model.init_output_bias(x_train.mean(axis=0))
    return model


def short_training_config(args, **changes) -> TrainConfig:
    """The TrainConfig of :func:`~minivae.commands.add_training_arguments`' flags: Adam at
    ``--lr`` decaying geometrically to lr / 10 over ``--epochs``, on ``--dataset``; ``changes``
    set other fields."""
    return TrainConfig(**{"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                          "schedule": "exp", "lr_end": args.lr / 10, "seed": args.seed,
                          "dataset": args.dataset, **changes})


def estimator_text(cfg: dict) -> str:
    """"dreg", "miwae (m=8)", "ciwae (beta=0.05)": the gradient estimator of a training
    configuration (or of a run's record) and the setting it reads; "iwae" for the IWAE bound's
    own gradient, "-" for an objective without an estimator (the ELBOs)."""
    estimator = cfg.get("estimator") or ("iwae" if cfg.get("objective") == "iwae" else "-")
    return estimator + (f" (m={cfg['m']})" if estimator in ("miwae", "piwae") else
                        f" (beta={cfg['ciwae_beta']:g})" if estimator == "ciwae" else "")


def describe_training(cfg: dict) -> str:
    """The objective of a training configuration: "elbo k=1", "iwae k=50", "iwae k=50, dreg
    gradient", "iwae k=5, miwae (m=8) gradient"."""
    return f"{cfg.get('objective')} k={cfg.get('k')}" + (
        f", {estimator_text(cfg)} gradient" if cfg.get("estimator") not in (None, "iwae") else "")


# ---------------------------------------------------------------- a run's checkpoint

def save_every_epoch(path, model, cfg, **more):
    """An ``on_epoch_end`` for :func:`~minivae.train.train` that saves the run to ``path`` after
    every epoch, atomically: the model, the optimizer and the train dict of
    :func:`train_state` (with ``more`` in it), from which ``--resume`` carries on.  A failed write
    (a full disk) leaves the previous checkpoint and raises an OSError that names ``path``."""
    def save(epoch, history, optimizer):
        try:
            save_checkpoint(path, model, optimizer, train_state(cfg, epoch + 1, history, **more))
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(path)) from None
    return save


def train_state(cfg, epochs: int, history: list, **more) -> dict:
    """A checkpoint's train dict: the configuration, the epochs done and their history, the data
    set and whether it was binarised (what a command needs to score the model), and ``more``."""
    return {"config": config_dict(cfg), "epoch": epochs, "history": history,
            "dataset": cfg.dataset, "binarize": cfg.binarize, **more}


def train_config(saved: dict, **changes) -> TrainConfig:
    """The TrainConfig a checkpoint saved (its train dict's ``"config"``), with ``changes``.

    An ``"extra"`` entry (the bookkeeping of the Table 1 runs in checkpoints/*.npz, which
    examples/iwae_vs_vae.py reads for itself) is not a training setting and is left out.
    """
    return TrainConfig(**{**{k: v for k, v in saved.items() if k != "extra"}, **changes})


def resume_run(path, backend, **changes):
    """``(model, optimizer, cfg, start, history, train)`` of the run saved at ``path``, loaded on
    ``backend``: its TrainConfig with ``changes`` (:func:`resumed_config`), the epochs done, their
    history and the whole train dict.  The optimizer is None where the checkpoint has no state
    for it."""
    model, optimizer, train = load_checkpoint(path, backend)
    cfg = resumed_config(path, train, **changes)
    return model, optimizer, cfg, train["epoch"], train["history"], train


def resumed_config(path, train: dict, **changes) -> TrainConfig:
    """:func:`train_config` of the train dict a checkpoint at ``path`` holds; a checkpoint without
    a usable training configuration is a :class:`~minivae.checkpoint.CheckpointError`."""
    saved = train.get("config") if isinstance(train, dict) else None
    try:
        if not isinstance(saved, dict):
            raise TypeError("it has none")
        return train_config(saved, **changes)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path} holds no training configuration that can be resumed "
                              f"({err}): resume from a checkpoint written by a training run, or "
                              "start a new run with --overwrite or another --out.") from None


# ---------------------------------------------------------------- what a run writes

def score_log_likelihood(model, x, k: int) -> dict:
    """L_k on x (binarised already) with the ``"log_likelihood"`` stream: the test NLL in nats,
    its standard error, k, the number of images and the seconds it took."""
    t0 = time.perf_counter()
    s = summarize(log_likelihood(model, x, k))           # under MPI: every rank, images shared
    return {"test_nll": s["nll"], "test_nll_se": s["nll_se"], "eval_k": k, "eval_images": s["n"],
            "eval_seconds": time.perf_counter() - t0}


def machine() -> dict:
    """What ran: the machine type, the processor, the number of CPUs, the Python and NumPy
    versions."""
    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__}


def write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` (UTF-8) atomically, as checkpoints are written
    (:func:`minivae.checkpoint.write_atomically`); a failed write (a full disk, a file-size limit)
    leaves the old file and raises an OSError that names ``path``.  Under MPI only rank 0 writes."""
    if not distributed.is_root():
        return Path(path)
    try:
        return write_atomically(path, lambda f: f.write(text), binary=False)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None


def write_metrics(path, metrics) -> Path:
    """Write ``metrics`` to ``path`` as indented JSON, atomically (:func:`write_text`); a value
    that is not JSON raises before any file is touched."""
    return write_text(path, json.dumps(metrics, indent=1))


def read_records(path, key: str) -> list:
    """The JSON list of dicts at ``path``, each with a string ``record[key]`` (none if there is
    no file).  A damaged file (truncated, not JSON, not such a list) is a :class:`CommandError`
    that names it and says to move it away; it is never read as empty and written over."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_bytes())
    except ValueError as err:                         # JSONDecodeError, UnicodeDecodeError
        problem = f"it is not valid JSON ({err})"
    else:
        if isinstance(records, list) and all(isinstance(r, dict) and isinstance(r.get(key), str)
                                             for r in records):
            return records
        problem = f"it is not a JSON list of records, each with a {key!r} name"
    raise CommandError(f"{path} is damaged: {problem}. Move it away (mv {path} {path}.bad) and "
                       "run again to start a new one.")


def update_records(path, records, key: str) -> list:
    """The JSON list of dicts at ``path`` (:func:`read_records`) with ``records`` in it: a record
    replaces the one with the same ``record[key]`` in its place, or is appended; written back
    atomically (:func:`write_metrics`), so runs of a script add up to one table.  Returns the list."""
    merged = {r[key]: r for r in read_records(path, key)}
    merged.update({r[key]: r for r in records})
    write_metrics(path, list(merged.values()))
    return list(merged.values())


def markdown_table(head, rows) -> list:
    """The lines of a markdown table: the header ``head``, its rule, and a line per row, each
    cell written with ``str``."""
    return (["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def write_figures(make_figures, *args) -> list:
    """Call ``make_figures(*args)``, which returns the paths it wrote, and print their names.
    Without matplotlib, say so in one line and carry on: the figures are optional, the numbers
    printed and saved before them are not.  Under MPI only rank 0 draws them."""
    if not distributed.is_root():
        return []
    try:
        written = make_figures(*args)
    except ImportError:
        print("figures skipped: matplotlib is not installed (pip install 'minivae[plot]')")
        return []
    print("figures: " + ", ".join(Path(p).name for p in written))
    return written

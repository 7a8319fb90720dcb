r"""Everything command-line: flags, the backend and data they name, the files a run writes, and
the two commands.

The library below (``evaluate``, ``analysis``, ``train`` and the rest) computes and raises; it
imports nothing from here (``python -m minivae.evaluate`` and ``python -m minivae.analysis`` hand
over to the commands at the bottom of this file).  This module parses flags, loads what they
name, turns a problem into one line on stderr and an exit code (2: a flag, a checkpoint, the data
or CuPy; 3: training diverged), and writes what a run measured.  The example scripts are built
from it:

    run(main)                              main's exit code; an error becomes one line, 2 or 3
    run_parser(__doc__, out)               a parser with the flags of add_run_arguments:
    add_run_arguments(p, out)              --backend, --data-dir, --offline, --out, --seed
    add_dataset_argument(p)                --dataset
    add_short_training_arguments(p, D)     --epochs, --subset, --batch-size, --latent-dim, ...
    backend_and_data(args)                 the backend and the data set the flags name
    training_subset(ds, n)                 the data set with its first n training images only
    build_vae(args, x_train, backend)      the VAE the flags describe, output bias from x_train
    short_training_config(args)            the TrainConfig of a short run (lr decays to lr / 10)
    save_every_epoch(path, model, cfg)     train()'s on_epoch_end: a checkpoint after every epoch
    train_state(cfg, epochs, history)      the train dict a checkpoint keeps
    train_config(saved, **changes)         the TrainConfig a checkpoint saved, with changes
    score_log_likelihood(model, x, k)      L_k's mean, standard error and time, for metrics.json
    machine()                              the Python, NumPy and processor of this run
    write_metrics(path, metrics)           JSON, written atomically
    update_records(path, records, key)     a JSON list of records, updated by key, written again
    markdown_table(head, rows)             the lines of a markdown table
    write_figures(make_figures, *args)     the figures, or one line saying why there are none

and the two commands (also installed as the console scripts ``minivae-evaluate`` and
``minivae-analysis``):

    python -m minivae.evaluate runs/mnist/checkpoint.npz --k 5000
    python -m minivae.analysis runs/campaign/iwae-2-50/checkpoint.npz --n 1000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .analysis import describe_units, layer_names, unit_statistics
from .backend import BACKENDS, BackendUnavailable, get_backend
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data import DataError, binarize_fixed, load_dataset
from .evaluate import active_units_per_layer, log_likelihood, summarize
from .model import VAE
from .train import NonFiniteLoss, TrainConfig, config_dict

LOAD_ERRORS = (CheckpointError, DataError, BackendUnavailable)   # what a command reports in a line


def run(main, argv=None) -> int:
    """``main(argv)``'s exit code, where the errors a run can meet become one line on stderr:
    exit code 2 for :data:`LOAD_ERRORS` (a checkpoint, the data, CuPy), 3 when the training loss
    stopped being finite (:class:`~minivae.train.NonFiniteLoss`)."""
    try:
        return main(argv)
    except (*LOAD_ERRORS, NonFiniteLoss) as err:
        print(f"error: {err}", file=sys.stderr)
        return 3 if isinstance(err, NonFiniteLoss) else 2


# ---------------------------------------------------------------- flags

def run_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The parser of an example script: described by the first paragraph of its docstring
    ``doc``, defaults shown in ``--help``, with the flags of :func:`add_run_arguments`."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_arguments(p, out)
    return p


def add_run_arguments(p, out: str) -> None:
    """Add the flags of every example: ``--backend``, ``--data-dir``, ``--offline``, ``--out``
    (default ``out``) and ``--seed``."""
    p.add_argument("--backend", default="numpy", choices=BACKENDS)
    p.add_argument("--data-dir", default=None, help="folder with the IDX files (or with mnist/)")
    p.add_argument("--offline", action="store_true", help="never download")
    p.add_argument("--out", default=out, help="output folder (created if missing)")
    p.add_argument("--seed", type=int, default=0)


def add_dataset_argument(p, default: str | None = "mnist", help_text: str | None = None) -> None:
    """Add ``--dataset`` (default ``default``), for an example that trains on a data set of its
    user's choice."""
    p.add_argument("--dataset", default=default, choices=["mnist", "fashion-mnist"], help=help_text)


def add_short_training_arguments(p, latent_dim: int) -> None:
    """Add the flags of a short training run (a few epochs of one small VAE): ``--epochs``,
    ``--subset``, ``--batch-size``, ``--latent-dim`` (default ``latent_dim``), ``--hidden``,
    ``--activation`` and ``--lr``."""
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--subset", type=int, default=None,
                   help="train on the first N training images only (quick runs)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--latent-dim", type=int, default=latent_dim)
    p.add_argument("--hidden", type=int, nargs="+", default=[256],
                   help="hidden layer sizes of the encoder (the decoder mirrors them)")
    p.add_argument("--activation", default="tanh")
    p.add_argument("--lr", type=float, default=1e-3, help="decays geometrically to lr / 10")


# ---------------------------------------------------------------- what the flags name

def backend_and_data(args, dataset: str | None = None):
    """``(backend, dataset)`` from ``--backend``, ``--seed``, ``--dataset`` (or ``dataset``),
    ``--data-dir`` and ``--offline``.  Raises BackendUnavailable or DataError."""
    be = get_backend(args.backend, args.seed)
    return be, load_dataset(dataset or args.dataset, args.data_dir, args.offline)


def training_subset(ds, n: int | None):
    """``ds`` with its first ``n`` training images and labels only (``--subset``); all of them
    when n is None or 0."""
    if not n:
        return ds
    return replace(ds, x_train=ds.x_train[:n], y_train=ds.y_train[:n])


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
    """The TrainConfig of :func:`add_short_training_arguments`' flags: Adam at ``--lr`` decaying
    geometrically to lr / 10 over ``--epochs``, on ``--dataset``; ``changes`` set other fields."""
    return TrainConfig(**{"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                          "schedule": "exp", "lr_end": args.lr / 10, "seed": args.seed,
                          "dataset": args.dataset, **changes})


# ---------------------------------------------------------------- a run's checkpoint

def save_every_epoch(path, model, cfg, **more):
    """An ``on_epoch_end`` for :func:`~minivae.train.train` that saves the run to ``path`` after
    every epoch, atomically: the model, the optimizer and the train dict of
    :func:`train_state` (with ``more`` in it), from which ``--resume`` carries on."""
    return lambda epoch, history, optimizer: save_checkpoint(
        path, model, optimizer, train_state(cfg, epoch + 1, history, **more))


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


# ---------------------------------------------------------------- what a run writes

def score_log_likelihood(model, x, k: int) -> dict:
    """L_k on x (binarised already) with the ``"log_likelihood"`` stream: the test NLL in nats,
    its standard error, k, the number of images and the seconds it took."""
    t0 = time.perf_counter()
    s = summarize(log_likelihood(model, x, k, model.backend.generator("log_likelihood")))
    return {"test_nll": s["nll"], "test_nll_se": s["nll_se"], "eval_k": k, "eval_images": s["n"],
            "eval_seconds": time.perf_counter() - t0}


def machine() -> dict:
    """What ran: the Python and NumPy versions and the processor."""
    return {"python": platform.python_version(), "numpy": np.__version__,
            "processor": platform.processor() or platform.machine()}


def write_metrics(path, metrics) -> Path:
    """Write ``metrics`` to ``path`` as indented JSON, atomically: into a temporary file in the
    same folder, flushed to disk, then renamed over ``path`` (one ``os.replace``), so a reader or
    a crash sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(metrics, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)                   # gone already unless writing failed
    return path


def update_records(path, records, key: str) -> list:
    """The JSON list of dicts at ``path`` (none if there is no file) with ``records`` in it: a
    record replaces the one with the same ``record[key]`` in its place, or is appended; written
    back with :func:`write_metrics`, so runs of a script add up to one table.  Returns the list."""
    path = Path(path)
    merged = {r[key]: r for r in (json.loads(path.read_text()) if path.exists() else [])}
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
    printed and saved before them are not."""
    try:
        written = make_figures(*args)
    except ImportError:
        print("figures skipped: matplotlib is not installed (pip install 'minivae[plot]')")
        return []
    print("figures: " + ", ".join(Path(p).name for p in written))
    return written


# ---------------------------------------------------------------- a checkpoint and its test set

def _at_least_one(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def add_checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments that name a checkpoint and the test images to score it on."""
    p.add_argument("checkpoint")
    p.add_argument("--n", type=_at_least_one, default=None, help="use the first N test images only")
    p.add_argument("--backend", default="numpy", choices=BACKENDS)
    p.add_argument("--dataset", default=None, help="default: the checkpoint's")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--offline", action="store_true")
    p.add_argument("--seed", type=int, default=0, help="binarisation and sampling seed")


def load_model_and_test_set(args):
    """(model, dataset name, test images) for :func:`add_checkpoint_arguments`' arguments.

    The test images are binarised once with ``args.seed`` when the checkpoint trained on binary
    data.  Raises :data:`LOAD_ERRORS`: an unusable checkpoint, missing data, no CuPy.
    """
    model, _, train = load_checkpoint(args.checkpoint, args.backend, with_optimizer=False)
    ds = load_dataset(args.dataset or train.get("dataset", "mnist"), args.data_dir, args.offline)
    x_test = ds.x_test[: args.n]
    if train.get("binarize", True):
        x_test = binarize_fixed(x_test, args.seed)
    return model, ds.name, x_test


# ---------------------------------------------------------------- the commands

def evaluate_main(argv=None) -> int:
    """``python -m minivae.evaluate``: L_k and the active units of a saved checkpoint."""
    p = argparse.ArgumentParser(prog="python -m minivae.evaluate", description=(
        "Estimate the test log-likelihood (L_k) and the active units of a saved checkpoint."))
    add_checkpoint_arguments(p)
    p.add_argument("--k", type=int, default=5000, help="importance samples per image (default 5000)")
    p.add_argument("--max-rows", type=int, default=8192, help="latent samples decoded at once")
    args = p.parse_args(argv)
    try:
        model, name, x_test = load_model_and_test_set(args)
    except LOAD_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    ll = log_likelihood(model, x_test, args.k, model.backend.generator("log_likelihood", args.seed),
                        max_rows=args.max_rows)
    seconds = time.perf_counter() - t0
    active = active_units_per_layer(model, x_test)
    s = summarize(ll)
    print(f"{name} test, {s['n']} images, k={args.k}: NLL = {s['nll']:.2f} ± {s['nll_se']:.2f} nats "
          f"(standard error), active units {'+'.join(map(str, active))}, {seconds:.1f} s "
          f"on {model.backend.name}")
    return 0


def analysis_main(argv=None) -> int:
    """``python -m minivae.analysis``: each stochastic layer of a saved checkpoint, unit by unit."""
    p = argparse.ArgumentParser(prog="python -m minivae.analysis", description=(
        "Describe each stochastic layer of a saved checkpoint unit by unit: active units, the KL "
        "each unit carries, and how far its posterior mean moves with x against its spread."))
    add_checkpoint_arguments(p)
    p.add_argument("--samples", type=int, default=10,
                   help="draws of the latent units per image for a two-layer model (default 10)")
    p.add_argument("--per-unit", action="store_true", help="also print every unit, by KL")
    args = p.parse_args(argv)
    try:
        model, name, x_test = load_model_and_test_set(args)
        stats = unit_statistics(model, x_test, args.samples,
                                model.backend.generator("unit_statistics", args.seed))
    except (*LOAD_ERRORS, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{name} test, {x_test.shape[0]} images:")
    print(describe_units(stats))
    if args.per_unit:
        for layer, s in zip(layer_names(len(stats)), stats):
            print(f"{layer:>6}:  unit  KL (nats)  Cov_x E_q[u]  E_x Var_q u")
            for u in np.argsort(-s["kl"]):
                kl, mean_var, post_var = s["kl"][u], s["mean_var"][u], s["post_var"][u]
                print(f"{u:14d} {kl:10.4f} {mean_var:13.4f} {post_var:12.4f}")
    return 0

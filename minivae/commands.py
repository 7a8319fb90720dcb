r"""Everything command-line: flags, the backend and data they name, the files a run writes, and
the two commands.

The library below (``evaluate``, ``analysis``, ``train`` and the rest) computes and raises; it
imports nothing from here (``python -m minivae.evaluate`` and ``python -m minivae.analysis`` hand
over to the commands at the bottom of this file).  This module parses flags, loads what they
name, turns a problem into one line on stderr and an exit code (2: a flag, a folder or file, a
checkpoint, the data or CuPy; 3: training diverged), and writes what a run measured, atomically.  The example scripts are built
from it:

    run(main)                              main's exit code; an error becomes one line, 2 or 3
    positive_int, non_negative_int, ...    argparse types: a value out of range is refused there
    run_parser(__doc__, out)               a parser with the flags of add_run_arguments:
    add_run_arguments(p, out)              --backend, --data-dir, --offline, --out, --seed
    add_dataset_argument(p)                --dataset
    add_short_training_arguments(p, D)     --epochs, --subset, --batch-size, --latent-dim, ...
    add_overwrite_argument(p)              --overwrite
    parse_flags(p, argv)                   p.parse_args(argv), and which flags were given
    output_folder(out)                     --out, created and checked writable before any work
    refuse_to_replace(ckpt, args, hint)    a new run never silently replaces a saved one
    check_resume_flags(args, saved, ckpt)  --resume: a flag given that the checkpoint contradicts
    backend_and_data(args)                 the backend and the data set the flags name
    training_subset(ds, n)                 the data set with its first n training images only
    check_batch_size(b, n, what)           a batch no larger than the data it is drawn from
    build_vae(args, x_train, backend)      the VAE the flags describe, output bias from x_train
    short_training_config(args)            the TrainConfig of a short run (lr decays to lr / 10)
    save_every_epoch(path, model, cfg)     train()'s on_epoch_end: a checkpoint after every epoch
    train_state(cfg, epochs, history)      the train dict a checkpoint keeps
    train_config(saved, **changes)         the TrainConfig a checkpoint saved, with changes
    resumed_config(path, train, **changes) the same from a checkpoint's train dict, or one sentence
    score_log_likelihood(model, x, k)      L_k's mean, standard error and time, for metrics.json
    machine()                              the Python, NumPy and processor of this run
    write_text(path, text)                 a text file, written atomically
    write_metrics(path, metrics)           JSON, written atomically
    read_records(path, key)                a JSON list of records; a damaged file is one sentence
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
import errno
import json
import linecache
import math
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .analysis import describe_units, layer_names, unit_statistics
from .backend import BACKENDS, BackendUnavailable, get_backend
from .checkpoint import (CheckpointError, load_checkpoint, save_checkpoint, write_atomically)
from .data import DataError, binarize_fixed, load_dataset
from .evaluate import active_units_per_layer, log_likelihood, summarize
from .layers import ACTIVATIONS
from .model import VAE
from .train import NonFiniteLoss, TrainConfig, config_dict


class CommandError(ValueError):
    """A setting, a folder or a file given to a command cannot be used; the message names it and
    the fix."""


LOAD_ERRORS = (CommandError, CheckpointError, DataError, BackendUnavailable)  # reported in a line
PACKAGE = Path(__file__).resolve().parent


def run(main, argv=None) -> int:
    """``main(argv)``'s exit code, where the errors a run can meet become one line on stderr
    (``error: ...``, no traceback):

        exit 2   :data:`LOAD_ERRORS` (a setting, a folder, a checkpoint, the data, CuPy); an
                 OSError (a folder that cannot be written, a full disk, a file-size limit); a
                 ValueError or TypeError that minivae raised itself to refuse an argument
        exit 3   the training loss stopped being finite (:class:`~minivae.train.NonFiniteLoss`)

    Anything else, a ValueError from deep inside NumPy included, is a bug and is raised.
    """
    try:
        return main(argv)
    except NonFiniteLoss as err:
        return _fail(str(err), 3)
    except LOAD_ERRORS as err:
        return _fail(str(err), 2)
    except OSError as err:
        return _fail(describe_os_error(err), 2)
    except (ValueError, TypeError) as err:
        if not raised_by_minivae(err):
            raise
        return _fail(str(err), 2)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def raised_by_minivae(err: BaseException) -> bool:
    """Whether ``err`` comes from a ``raise`` statement in the minivae package (a check of an
    argument), not from an operation that failed (a bug) or from another package."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    filename = tb.tb_frame.f_code.co_filename
    return (Path(filename).resolve().parent == PACKAGE
            and linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise"))


# what to do about an OSError, by errno
_OS_FIXES = {
    errno.EACCES: "make it writable (chmod u+w) or pass another --out",
    errno.EPERM: "make it writable (chmod u+w) or pass another --out",
    errno.EROFS: "the file system is read-only: pass --out on a writable one",
    errno.ENOSPC: "free some space on that disk or pass --out on another one",
    errno.EDQUOT: "your disk quota is used up: free some space or pass --out on another disk",
    errno.EFBIG: "the file-size limit (ulimit -f) is lower than what this run writes: raise it",
    errno.ENOTDIR: "a file stands where a folder is needed: move it or pass another --out",
    errno.EISDIR: "a folder stands where a file is written: move it or pass another --out",
}


def describe_os_error(err: OSError) -> str:
    """One sentence for a failed read or write: what happened, to which file, and the fix.
    Files minivae writes are replaced whole or not at all, so the ones written before are intact."""
    where = f": {err.filename}" if err.filename else ""
    fix = _OS_FIXES.get(err.errno, "check the path and its permissions")
    return (f"{err.strerror or err}{where}; {fix}. Files written before are intact "
            "(minivae replaces a file whole or not at all).")


# ---------------------------------------------------------------- flags: types that check ranges

def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def at_least(low: int):
    """An argparse type: a whole number >= ``low`` (``positive_int`` is ``at_least(1)``)."""
    def check(text: str) -> int:
        n = _integer(text)
        if n < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {n}")
        return n
    check.__name__ = f"at_least_{low}"
    return check


positive_int = at_least(1)            # sizes, counts, samples: --k, --epochs, --batch-size, ...
non_negative_int = at_least(0)        # seeds, epochs of pretraining, class indices


def _finite(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return x


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (learning rates, sigma, beta, minutes)."""
    x = _finite(text)
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return x


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    x = _finite(text)
    if x < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return x


def fraction(text: str) -> float:
    """An argparse type: a number in (0, 0.5] (a quantile taken from both ends)."""
    x = _finite(text)
    if not 0 < x <= 0.5:
        raise argparse.ArgumentTypeError(f"must be in (0, 0.5], got {text}")
    return x


def fraction_01(text: str) -> float:
    """An argparse type: a number in [0, 1] (a mixing weight)."""
    x = _finite(text)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return x


# ---------------------------------------------------------------- flags: parsers

class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose refusal is two lines: the usage (shortened to one line, with a
    pointer to ``--help``, where the full usage would take several) and the problem."""

    def error(self, message):
        usage = self.format_usage()
        if usage.count("\n") > 1:
            usage = f"usage: {self.prog} [options]  ({self.prog} --help lists them)\n"
        self.exit(2, f"{usage}{self.prog}: error: {message}\n")


def run_parser(doc: str, out: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """The parser of an example script: described by the first paragraph of its docstring
    ``doc`` (and ``epilog`` after the flags), defaults shown in ``--help``, with the flags of
    :func:`add_run_arguments`."""
    p = Parser(description=doc.split("\n\n")[0], epilog=epilog,
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
    p.add_argument("--seed", type=non_negative_int, default=0)


def add_overwrite_argument(p, what: str = "the run saved there") -> None:
    """Add ``--overwrite``: without it, a script refuses to replace ``what`` in --out."""
    p.add_argument("--overwrite", action="store_true",
                   help=f"start afresh where --out holds {what}, replacing it (without this flag "
                        "the script refuses)")


def add_dataset_argument(p, default: str | None = "mnist", help_text: str | None = None) -> None:
    """Add ``--dataset`` (default ``default``), for an example that trains on a data set of its
    user's choice."""
    p.add_argument("--dataset", default=default, choices=["mnist", "fashion-mnist"], help=help_text)


def add_short_training_arguments(p, latent_dim: int) -> None:
    """Add the flags of a short training run (a few epochs of one small VAE): ``--epochs``,
    ``--subset``, ``--batch-size``, ``--latent-dim`` (default ``latent_dim``), ``--hidden``,
    ``--activation`` and ``--lr``."""
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--subset", type=positive_int, default=None,
                   help="train on the first N training images only (quick runs)")
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--latent-dim", type=positive_int, default=latent_dim)
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[256],
                   help="hidden layer sizes of the encoder (the decoder mirrors them)")
    p.add_argument("--activation", default="tanh", choices=list(ACTIVATIONS))
    p.add_argument("--lr", type=positive_float, default=1e-3, help="decays geometrically to lr / 10")


def parse_flags(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``p.parse_args(argv)`` with one more attribute, ``given``: the set of the destinations
    (``"hidden"``, ``"lr"``, ...) of the flags given on the command line, whatever their values,
    so a flag given at its default value still counts as given.

    The command line is parsed a second time into a namespace whose every attribute is a marker:
    argparse only fills in a default where the namespace lacks the attribute, so what is no longer
    the marker afterwards was given.
    """
    args = p.parse_args(argv)
    unset = object()
    seen = p.parse_args(argv, argparse.Namespace(**{dest: unset for dest in vars(args)}))
    args.given = frozenset(dest for dest, value in vars(seen).items() if value is not unset)
    return args


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


def _flag_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-12)
    return a == b


def check_resume_flags(args, saved: dict, path) -> None:
    """Refuse a flag given on the command line (``args.given``, :func:`parse_flags`) whose value
    differs from the one the checkpoint at ``path`` holds: ``saved`` maps a flag's destination
    (``"hidden"``) to the checkpoint's value; a destination it lacks is not checked."""
    for dest, value in saved.items():
        if dest in args.given and not _same(getattr(args, dest), value):
            flag = "--" + dest.replace("_", "-")
            raise CommandError(
                f"{flag} {_flag_value(getattr(args, dest))} differs from the {_flag_value(value)} "
                f"that {path} was trained with: a resumed run keeps its checkpoint's settings. "
                f"Drop {flag}, or start a new run with --overwrite or another --out.")


# ---------------------------------------------------------------- what the flags name

def backend_and_data(args, dataset: str | None = None):
    """``(backend, dataset)`` from ``--backend``, ``--seed``, ``--dataset`` (or ``dataset``),
    ``--data-dir`` and ``--offline``.  Raises BackendUnavailable or DataError."""
    be = get_backend(args.backend, args.seed)
    return be, load_dataset(dataset or args.dataset, args.data_dir, args.offline)


def training_subset(ds, n: int | None):
    """``ds`` with its first ``n`` training images and labels only (``--subset``); all of them
    when n is None or 0.  More than the data set has is a :class:`CommandError`."""
    if not n:
        return ds
    if n > ds.x_train.shape[0]:
        raise CommandError(f"--subset {n} is more than the {ds.x_train.shape[0]} training images "
                           f"of {ds.name}: pass at most {ds.x_train.shape[0]}, or leave --subset "
                           "out to use them all.")
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
    """The TrainConfig of :func:`add_short_training_arguments`' flags: Adam at ``--lr`` decaying
    geometrically to lr / 10 over ``--epochs``, on ``--dataset``; ``changes`` set other fields."""
    return TrainConfig(**{"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                          "schedule": "exp", "lr_end": args.lr / 10, "seed": args.seed,
                          "dataset": args.dataset, **changes})


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
    s = summarize(log_likelihood(model, x, k, model.backend.generator("log_likelihood")))
    return {"test_nll": s["nll"], "test_nll_se": s["nll_se"], "eval_k": k, "eval_images": s["n"],
            "eval_seconds": time.perf_counter() - t0}


def machine() -> dict:
    """What ran: the Python and NumPy versions and the processor."""
    return {"python": platform.python_version(), "numpy": np.__version__,
            "processor": platform.processor() or platform.machine()}


def write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` (UTF-8) atomically, as checkpoints are written
    (:func:`minivae.checkpoint.write_atomically`); a failed write (a full disk, a file-size limit)
    leaves the old file and raises an OSError that names ``path``."""
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
    printed and saved before them are not."""
    try:
        written = make_figures(*args)
    except ImportError:
        print("figures skipped: matplotlib is not installed (pip install 'minivae[plot]')")
        return []
    print("figures: " + ", ".join(Path(p).name for p in written))
    return written


# ---------------------------------------------------------------- a checkpoint and its test set

def add_checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments that name a checkpoint and the test images to score it on."""
    p.add_argument("checkpoint")
    p.add_argument("--n", type=positive_int, default=None, help="use the first N test images only")
    p.add_argument("--backend", default="numpy", choices=BACKENDS)
    p.add_argument("--dataset", default=None, choices=["mnist", "fashion-mnist"],
                   help="default: the checkpoint's")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--offline", action="store_true")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="binarisation and sampling seed")


def load_model_and_test_set(args):
    """(model, dataset name, test images) for :func:`add_checkpoint_arguments`' arguments.

    The test images are binarised once with ``args.seed`` when the checkpoint trained on binary
    data.  Raises :data:`LOAD_ERRORS`: an unusable checkpoint, missing data, no CuPy, an ``--n``
    larger than the test set.
    """
    model, _, train = load_checkpoint(args.checkpoint, args.backend, with_optimizer=False)
    ds = load_dataset(args.dataset or train.get("dataset", "mnist"), args.data_dir, args.offline)
    if args.n is not None and args.n > ds.x_test.shape[0]:
        raise CommandError(f"--n {args.n} is more than the {ds.x_test.shape[0]} test images of "
                           f"{ds.name}: pass at most {ds.x_test.shape[0]}, or leave --n out.")
    x_test = ds.x_test[: args.n]
    if train.get("binarize", True):
        x_test = binarize_fixed(x_test, args.seed)
    return model, ds.name, x_test


# ---------------------------------------------------------------- the commands

def evaluate_main(argv=None) -> int:
    """``python -m minivae.evaluate``: L_k and the active units of a saved checkpoint."""
    p = Parser(prog="python -m minivae.evaluate", description=(
        "Estimate the test log-likelihood (L_k) and the active units of a saved checkpoint."))
    add_checkpoint_arguments(p)
    p.add_argument("--k", type=positive_int, default=5000,
                   help="importance samples per image (default 5000)")
    p.add_argument("--max-rows", type=positive_int, default=8192,
                   help="latent samples decoded at once")
    args = p.parse_args(argv)
    return run(lambda _: _evaluate(args))


def _evaluate(args) -> int:
    model, name, x_test = load_model_and_test_set(args)
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
    p = Parser(prog="python -m minivae.analysis", description=(
        "Describe each stochastic layer of a saved checkpoint unit by unit: active units, the KL "
        "each unit carries, and how far its posterior mean moves with x against its spread."))
    add_checkpoint_arguments(p)
    p.add_argument("--samples", type=positive_int, default=10,
                   help="draws of the latent units per image for a two-layer model (at least 2 "
                        "there; default 10)")
    p.add_argument("--per-unit", action="store_true", help="also print every unit, by KL")
    args = p.parse_args(argv)
    return run(lambda _: _analysis(args))


def _analysis(args) -> int:
    model, name, x_test = load_model_and_test_set(args)
    stats = unit_statistics(model, x_test, args.samples,       # --samples 1 on a two-layer model:
                            model.backend.generator("unit_statistics", args.seed))  # run() says so
    print(f"{name} test, {x_test.shape[0]} images:")
    print(describe_units(stats))
    if args.per_unit:
        for layer, s in zip(layer_names(len(stats)), stats):
            print(f"{layer:>6}:  unit  KL (nats)  Cov_x E_q[u]  E_x Var_q u")
            for u in np.argsort(-s["kl"]):
                kl, mean_var, post_var = s["kl"][u], s["mean_var"][u], s["post_var"][u]
                print(f"{u:14d} {kl:10.4f} {mean_var:13.4f} {post_var:12.4f}")
    return 0

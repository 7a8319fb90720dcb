r"""Everything command-line: the flags, how a run ends (one line on stderr and an exit code),
and the two commands.

The library below (``evaluate``, ``analysis``, ``train`` and the rest) computes and raises; it
imports nothing from here (``python -m minivae.evaluate`` and ``python -m minivae.analysis`` hand
over to the commands at the bottom of this file).  This module parses flags and turns a problem
into one line on stderr and an exit code (2: a flag, a folder or file, a checkpoint, the data or
CuPy; 3: training diverged); what a run reads and writes apart from its flags is in
:mod:`minivae.runs`.  The example scripts are built from the two:

    run(main)                              main's exit code; an error becomes one line, 2 or 3
    positive_int, non_negative_int, ...    argparse types: a value out of range is refused there
    run_parser(__doc__, out)               a parser with the flags of add_run_arguments:
    add_run_arguments(p, out)              --backend, --data-dir, --offline, --out, --seed
    add_dataset_argument(p)                --dataset
    add_training_arguments(p, D)           --epochs, --subset, --batch-size, --latent-dim, ...
    add_estimator_arguments(p)             --estimator, --m, --ciwae-beta
    add_overwrite_argument(p)              --overwrite
    add_resume_arguments(p, help)          --resume or --overwrite, not both
    parse_flags(p, argv)                   p.parse_args(argv), and which flags were given
    check_resume_flags(args, saved, ckpt)  --resume: a flag given that the checkpoint contradicts

and the two commands (also installed as the console scripts ``minivae-evaluate`` and
``minivae-analysis``):

    python -m minivae.evaluate runs/mnist/checkpoint.npz --k 5000
    python -m minivae.analysis runs/campaign/iwae-2-50/checkpoint.npz --n 1000
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import linecache
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import distributed
from .analysis import describe_units, layer_names, unit_statistics
from .backend import BACKENDS, BackendUnavailable
from .checkpoint import CheckpointError, load_checkpoint
from .data import DATASETS, DataError, binarize_fixed, load_dataset
from .evaluate import active_units_per_layer, log_likelihood, summarize
from .layers import ACTIVATIONS
from .likelihoods import bits_per_dim
from .objectives import ESTIMATORS
from .runs import CommandError, check_count
from .train import NonFiniteLoss

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

    Under MPI (``mpiexec -n N python -m mpi4py examples/...``) only rank 0 prints: the other
    ranks' standard output is discarded.  An error on any rank is printed with its rank and ends
    every rank (:func:`minivae.distributed.abort_on_error`), so no rank waits forever for it.
    """
    with contextlib.ExitStack() as stack:
        if not distributed.is_root():
            stack.enter_context(contextlib.redirect_stdout(open(os.devnull, "w")))
        return _run(main, argv)


def _run(main, argv) -> int:
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
    print(f"error: {distributed.rank_label()}{message}", file=sys.stderr)
    distributed.abort_on_error(code)                 # under MPI: every rank ends here, now
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
    p.add_argument("--dataset", default=default, choices=list(DATASETS), help=help_text)


def add_training_arguments(p, latent_dim: int, epochs: int = 10, hidden=(256,),
                           lr_help: str = "decays geometrically to lr / 10") -> None:
    """Add the flags of a training run of one VAE: ``--epochs``, ``--subset``, ``--batch-size``,
    ``--latent-dim``, ``--hidden`` (the defaults given here), ``--activation`` and ``--lr``."""
    p.add_argument("--epochs", type=positive_int, default=epochs)
    p.add_argument("--subset", type=positive_int, default=None,
                   help="train on the first N training images only (quick runs)")
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--latent-dim", type=positive_int, default=latent_dim)
    p.add_argument("--hidden", type=positive_int, nargs="+", default=list(hidden),
                   help="hidden layer sizes of the encoder (the decoder mirrors them)")
    p.add_argument("--activation", default="tanh", choices=list(ACTIVATIONS))
    p.add_argument("--lr", type=positive_float, default=1e-3, help=lr_help)


def add_estimator_arguments(p, default: str | None = None, help_text: str | None = None) -> None:
    """Add the flags of a gradient estimator after IWAE (:data:`minivae.objectives.ESTIMATORS`):
    ``--estimator`` (default ``default``), and the settings two of them read, ``--m`` and
    ``--ciwae-beta``."""
    p.add_argument("--estimator", default=default, choices=list(ESTIMATORS), help=help_text or (
        "with --objective iwae: the gradient estimator (stl, dreg: the encoder's path only; "
        "miwae, piwae: --m groups of --k; ciwae: --ciwae-beta)"))
    p.add_argument("--m", type=positive_int, default=1, help="miwae, piwae: groups of k samples")
    p.add_argument("--ciwae-beta", type=fraction_01, default=0.5,
                   help="ciwae: beta ELBO + (1 - beta) IWAE")


def add_resume_arguments(p, resume_help: str, what: str = "the run saved there") -> None:
    """Add ``--resume`` (described by ``resume_help``) and ``--overwrite``
    (:func:`add_overwrite_argument`), of which a command line may give one."""
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help=resume_help)
    add_overwrite_argument(again, what)


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


# ---------------------------------------------------------------- --resume: flags a checkpoint fixes

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


# ---------------------------------------------------------------- a checkpoint and its test set

def add_checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments that name a checkpoint and the test images to score it on."""
    p.add_argument("checkpoint")
    p.add_argument("--n", type=positive_int, default=None, help="use the first N test images only")
    p.add_argument("--backend", default="numpy", choices=BACKENDS)
    p.add_argument("--dataset", default=None, choices=list(DATASETS),
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
    check_count(args.n, ds.x_test.shape[0], "--n", f"test images of {ds.name}")
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
    p.add_argument("--block-size", type=positive_int, default=None,
                   help="draw each block of this many images from its own stream, as a run over "
                        "MPI does (default there 100): one process then gives the MPI run's number")
    args = p.parse_args(argv)
    return run(lambda _: _evaluate(args))


def _evaluate(args) -> int:
    model, name, x_test = load_model_and_test_set(args)
    t0 = time.perf_counter()
    ll = log_likelihood(model, x_test, args.k, key=(args.seed,), max_rows=args.max_rows,
                        block_size=args.block_size)
    seconds = time.perf_counter() - t0
    active = active_units_per_layer(model, x_test)
    s = summarize(ll)
    bpd = (f" = {bits_per_dim(s['nll'], model.x_dim):.3f} bits/dim"      # 8-bit pixels' unit
           if model.likelihood.name == "discretized_logistic" else "")
    print(f"{name} test, {s['n']} images, k={args.k}: NLL = {s['nll']:.2f} ± {s['nll_se']:.2f} nats"
          f"{bpd} (standard error), active units {'+'.join(map(str, active))}, {seconds:.1f} s "
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

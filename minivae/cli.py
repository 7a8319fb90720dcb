r"""What the example scripts share: their common flags, the backend and data set those flags ask
for (or one error), and optional figures."""
from __future__ import annotations

import sys
from pathlib import Path

from .backend import BackendUnavailable, get_backend
from .data import DataError, load_dataset


def add_run_arguments(p, out: str, dataset: str | None = "mnist",
                      dataset_help: str | None = None) -> None:
    """Add the flags of an example that trains on a data set of its user's choice
    (``examples/mnist_vae.py`` and the teaching examples): ``--backend``, ``--dataset`` (default
    ``dataset``), ``--data-dir``, ``--offline``, ``--out`` (default ``out``) and ``--seed``."""
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    p.add_argument("--dataset", default=dataset, choices=["mnist", "fashion-mnist"],
                   help=dataset_help)
    p.add_argument("--data-dir", default=None, help="folder with the IDX files (or with mnist/)")
    p.add_argument("--offline", action="store_true", help="never download")
    p.add_argument("--out", default=out, help="output folder (created if missing)")
    p.add_argument("--seed", type=int, default=0)


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


def backend_and_data(args, dataset: str | None = None):
    """``(backend, dataset)`` from ``--backend``, ``--seed``, ``--dataset`` (or ``dataset``),
    ``--data-dir`` and ``--offline``; on a problem, print its one-sentence error and exit with 2."""
    try:
        be = get_backend(args.backend, args.seed)
        ds = load_dataset(dataset or args.dataset, args.data_dir, args.offline)
    except (BackendUnavailable, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return be, ds


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

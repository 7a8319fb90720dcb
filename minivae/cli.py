r"""What the example scripts share: the backend and data set their flags ask for (or one error),
and optional figures."""
from __future__ import annotations

import sys
from pathlib import Path

from .backend import BackendUnavailable, get_backend
from .data import DataError, load_dataset


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

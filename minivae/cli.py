r"""What the example scripts share: the backend and the data set their flags ask for, or one error."""
from __future__ import annotations

import sys

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

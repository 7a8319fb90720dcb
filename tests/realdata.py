"""The real MNIST files for tests: found through MINIVAE_DATA (CI sets it) or minivae's download cache."""
import functools
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def data_root() -> Path | None:
    """A folder holding mnist/: $MINIVAE_DATA, or minivae's download cache."""
    from minivae.data import cache_dir
    env = os.environ.get("MINIVAE_DATA")
    for root in ([Path(env)] if env else []) + [cache_dir("mnist").parent]:
        if (root / "mnist").is_dir():
            return root.resolve()
    return None


@functools.lru_cache(maxsize=None)
def _load(name):
    from minivae.data import load_dataset
    return load_dataset(name, data_root(), offline=True)


def mnist():
    """The real MNIST Dataset; fails in CI (CI=true) and skips elsewhere when it is missing."""
    if data_root() is None:
        msg = "real MNIST not found: set MINIVAE_DATA to a folder holding mnist/"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return _load("mnist")

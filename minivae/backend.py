r"""The array backend: the one module in minivae that imports CuPy.

Everything else in minivae takes its array module from its inputs with
:func:`array_module`, so the same code runs on NumPy arrays (CPU) and on CuPy
arrays (GPU) without a global switch.  A :class:`Backend` bundles what the
callers at the edges need: the array module ``xp``, a seeded random generator
that draws on the right device, and a way back to host (NumPy) arrays.

    >>> be = get_backend("numpy", seed=0)
    >>> x = be.asarray([[0.1, 0.9]])           # float32 on the backend's device
    >>> eps = be.rng.standard_normal((2, 3), dtype=be.xp.float32)
    >>> be.to_host(x)                           # always a NumPy array
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BACKENDS = ("numpy", "cupy")

_GPU_INSTALL_HINT = ('pip install "minivae[gpu-cuda12]" (CUDA 12) or '
                     '"minivae[gpu-cuda13]" (CUDA 13)')


class BackendUnavailable(RuntimeError):
    """The requested backend cannot be used here; the message says why and how to fix it."""


def array_module(*arrays: Any):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    Looks only at the type's module, so NumPy-only machines never import CuPy.
    """
    for a in arrays:
        if type(a).__module__.split(".")[0] == "cupy":
            import cupy
            return cupy
    return np


def _import_cupy():
    """Import CuPy and check that a GPU is usable, or raise one clear error."""
    try:
        import cupy
    except ImportError as err:
        raise BackendUnavailable(
            f"The cupy backend needs CuPy, which is not installed ({err}): "
            f"install it with {_GPU_INSTALL_HINT}, or use --backend numpy.") from None
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken: CuPy raises its own error types
        raise BackendUnavailable(
            f"CuPy is installed but no CUDA GPU is usable ({type(err).__name__}: {err}): "
            "run on a machine with an NVIDIA GPU and driver, or use --backend numpy.") from None
    if n_devices < 1:
        raise BackendUnavailable(
            "CuPy is installed but it sees no CUDA GPU: run on a machine with an "
            "NVIDIA GPU, or use --backend numpy.")
    return cupy


@dataclass
class Backend:
    """An array module plus the random generator that draws on its device.

    Attributes:
        name: ``"numpy"`` or ``"cupy"``.
        xp:   the array module (``numpy`` or ``cupy``).
        rng:  ``numpy.random.Generator`` or ``cupy.random.Generator``, seeded.
        seed: the seed ``rng`` was made from.
    """
    name: str
    xp: Any
    rng: Any
    seed: int

    def asarray(self, a, dtype=np.float32):
        """Copy/convert ``a`` (host or device) to this backend's device with ``dtype``."""
        return self.xp.asarray(a, dtype=dtype)

    def to_host(self, a) -> np.ndarray:
        """A NumPy array with the contents of ``a`` (a device-to-host copy on CuPy)."""
        return to_host(a)

    def generator(self, *keys: int):
        """A fresh generator on this backend, determined by (seed, *keys).

        Training draws epoch e's noise from ``generator(e)``, so a run resumed at epoch e
        draws exactly what an uninterrupted run would, with no generator state to save.
        """
        seq = np.random.SeedSequence([self.seed, *keys])
        if self.name == "numpy":
            return np.random.default_rng(seq)
        return self.xp.random.default_rng(int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))

    def synchronize(self) -> None:
        """Wait for queued device work to finish (for timing); a no-op on NumPy."""
        if self.name == "cupy":
            self.xp.cuda.get_current_stream().synchronize()


def to_host(a) -> np.ndarray:
    """Return ``a`` as a NumPy array, whichever device it lives on."""
    if type(a).__module__.split(".")[0] == "cupy":
        return a.get()
    return np.asarray(a)


def get_backend(name: str = "numpy", seed: int = 0) -> Backend:
    """Make the backend called ``name`` (``"numpy"`` or ``"cupy"``) with a generator seeded by ``seed``.

    Raises:
        ValueError: ``name`` is not a known backend.
        BackendUnavailable: ``"cupy"`` was asked for but CuPy is not installed or no GPU is usable.
    """
    if name == "numpy":
        return Backend("numpy", np, np.random.default_rng(seed), seed)
    if name == "cupy":
        cupy = _import_cupy()
        return Backend("cupy", cupy, cupy.random.default_rng(seed), seed)
    raise ValueError(f"Unknown backend {name!r}: choose one of {', '.join(BACKENDS)}.")


def cupy_available() -> bool:
    """True when the cupy backend can be made here (CuPy installed and a GPU usable)."""
    try:
        _import_cupy()
    except BackendUnavailable:
        return False
    return True

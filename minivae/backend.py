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

import ctypes
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

BACKENDS = ("numpy", "cupy")

# Every random draw minivae makes comes from a named stream, so that no two uses share numbers by
# accident.  ``Backend.generator(name, *keys)`` seeds a generator with (seed, STREAMS[name], *keys);
# the numbers are part of the checkpoints' record (a stream's draws must not change), so a new use
# gets a new number and an old number is never reused.
STREAMS = {
    "train": 1,            # binarisation and eps of training epoch e: generator("train", e)
    "test_elbo": 2,        # the fixed eps of the per-epoch test -ELBO
    "log_likelihood": 3,   # the importance samples of L_k
    "figures": 4,          # samples and paths drawn for the figures
    "latent_means": 5,     # the h1 draws behind E_q[h2] (active units of a two-layer model)
    "figure_noise": 6,     # pixel noise drawn for the figures (a Gaussian decoder's samples)
    "unit_statistics": 7,  # the latent draws of the per-unit analysis
    "gradient_variance": 8,  # the repeated draws of the gradient-variance experiment
    "gradient_snr": 9,     # the repeated draws of the gradient signal-to-noise experiment
    "log_likelihood_blocks": 10,  # L_k drawn per block of images: generator(.., *key, block)
}

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

    def generator(self, stream: str, *keys: int):
        """A fresh generator on this backend, determined by (seed, the stream's number, *keys).

        ``stream`` is a name from :data:`STREAMS`.  Training draws epoch e's noise from
        ``generator("train", e)``, so a run resumed at epoch e draws exactly what an uninterrupted
        run would, with no generator state to save.
        """
        if stream not in STREAMS:
            raise ValueError(f"Unknown random stream {stream!r}: choose one of "
                             f"{', '.join(STREAMS)} (or add a new name to minivae.backend.STREAMS).")
        seq = np.random.SeedSequence([self.seed, STREAMS[stream], *keys])
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


_MALLOC_TUNED = None                 # reuse_freed_memory's outcome, once known


def reuse_freed_memory() -> bool:
    r"""Ask the C allocator to keep freed memory for the next step instead of returning it.

    A training step allocates and frees the same large arrays every step: the decoder's
    (K, B, 784) logits and their gradient are 3 MB each at k = 50, batch 20.  glibc's malloc
    serves such blocks with ``mmap`` and gives them back to the kernel on ``free`` (or trims
    the heap), so the next step page-faults them in again and the kernel zeroes every page,
    work with no arithmetic in it (benchmarks/README.md measures its share of a step).  Raising the mmap threshold to its 64-bit maximum (32 MiB) and the trim threshold to
    1 GiB keeps those pages in the heap, where the next step's arrays of the same sizes reuse
    them; the process holds on to its peak memory instead of returning it.  Arrays above
    32 MiB are still mapped and unmapped.

    Process-wide, once, on Linux with glibc only (elsewhere it does nothing).  Getting a backend
    does not call it: :func:`minivae.train.train` and :func:`minivae.evaluate.log_likelihood` do,
    where the repeated large allocations start, and a program may call it itself.  Returns
    whether it applied.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED is None:
        _MALLOC_TUNED = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3           # from glibc's malloc.h
                _MALLOC_TUNED = bool(libc.mallopt(M_MMAP_THRESHOLD, 32 * 2 ** 20)
                                     and libc.mallopt(M_TRIM_THRESHOLD, 2 ** 30))
            except (OSError, AttributeError):                       # not glibc (e.g. musl)
                pass
    return _MALLOC_TUNED


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


def cupy_nccl():
    """CuPy's NCCL binding (``cupy.cuda.nccl``) for reducing across GPUs, or one clear error
    (:class:`BackendUnavailable`) when CuPy, a GPU or the NCCL library is missing."""
    _import_cupy()
    try:
        import cupy.cuda.nccl as nccl
        why = None if getattr(nccl, "available", False) else "the NCCL library was not found"
    except ImportError as err:
        why = str(err)
    if why is not None:
        raise BackendUnavailable(
            f"CuPy cannot use NCCL ({why}), which reduces gradients across GPUs: install it "
            "for your CUDA version (pip install nvidia-nccl-cu12, or the system's libnccl2), or "
            "train on one GPU without mpiexec.") from None
    return nccl


def cupy_available() -> bool:
    """True when the cupy backend can be made here (CuPy installed and a GPU usable)."""
    try:
        _import_cupy()
    except BackendUnavailable:
        return False
    return True

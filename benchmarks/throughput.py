r"""The machine's float32 matrix-product throughput, in GFLOP/s: the yardstick for the bound.

For each product shape (see :class:`benchmarks.workloads.Product`) the operands are laid out as
the layer makes them, transposed views included, so BLAS sees the same call:

    fwd  x (N, I) @ W (I, O)          dW  x (N, I).T @ dy (N, O)          dx  dy (N, O) @ W (I, O).T

Each shape is called repeatedly for at least ``min_time`` seconds after one untimed call, ``rounds``
times; the best round counts (the machine's capability, not its worst moment).  ``peak`` is the
same for a square 2048^3 product.  NumPy (or CuPy on the GPU) is minivae's engine and gives the
bound; PyTorch's own 2048^3 figure is recorded beside it, since its BLAS may differ.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.workloads import Product

PEAK_N = 2048


def _operands(p: Product, xp, rng):
    def rand(*shape):
        return xp.asarray(rng.standard_normal(shape, dtype=np.float32))
    N, I, O = p.rows, p.n_in, p.n_out
    if p.kind == "fwd":
        return rand(N, I), rand(I, O)
    if p.kind == "dW":
        return rand(N, I).T, rand(N, O)
    if p.kind == "dx":
        return rand(N, O), rand(I, O).T
    raise ValueError(p.kind)


def _best_gflops(matmul, a, b, flops, sync, min_time, rounds):
    matmul(a, b)
    sync()
    best = 0.0
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while True:
            matmul(a, b)
            n += 1
            if n % 4 == 0 or flops * n > 1e10:                # sync rarely: don't time the syncs
                sync()
                dt = time.perf_counter() - t0
                if dt >= min_time:
                    break
        best = max(best, flops * n / dt / 1e9)
    return best


def measure(keys, lib: str = "numpy", min_time: float = 0.1, rounds: int = 3,
            threads: int | None = None) -> dict:
    """{"peak_2048": GFLOP/s, "shapes": {Product.key: GFLOP/s}} for lib "numpy", "cupy" or "torch"
    (torch measures the peak only, on the device torch was asked for: "torch" or "torch-cuda")."""
    rng = np.random.default_rng(0)
    if lib.startswith("torch"):
        import os

        import torch
        torch.set_num_threads(threads or os.cpu_count())
        dev = torch.device("cuda" if lib == "torch-cuda" else "cpu")
        to = lambda a: torch.as_tensor(a, device=dev)                          # noqa: E731
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        a, b = (to(rng.standard_normal((PEAK_N, PEAK_N), dtype=np.float32)) for _ in range(2))
        return {"peak_2048": _best_gflops(torch.mm, a, b, 2 * PEAK_N ** 3, sync, min_time, rounds),
                "shapes": {}}
    if lib == "cupy":
        import cupy as xp
        sync = xp.cuda.get_current_stream().synchronize
    else:
        xp, sync = np, (lambda: None)
    matmul = lambda a, b: a @ b                                                # noqa: E731
    a, b = (xp.asarray(rng.standard_normal((PEAK_N, PEAK_N), dtype=np.float32)) for _ in range(2))
    out = {"peak_2048": _best_gflops(matmul, a, b, 2 * PEAK_N ** 3, sync, min_time, rounds),
           "shapes": {}}
    for key in keys:
        p = Product.from_key(key)
        a, b = _operands(p, xp, rng)
        out["shapes"][key] = _best_gflops(matmul, a, b, p.flops, sync, min_time, rounds)
    return out

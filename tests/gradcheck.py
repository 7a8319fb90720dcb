r"""Central finite differences in float64, the numerical side of every gradient check.

For outputs y_j = f_j(inputs) and random upstream gradients dy_j, the scalar
S = sum_j <y_j, dy_j> has dS/da = sum_j J_j(a)^T dy_j: exactly what a hand-written
backward returns for input ``a`` given ``dy``.  We estimate it entry by entry with

    dS/da_i ~ (S(a + h e_i) - S(a - h e_i)) / 2h          (error O(h^2)),

perturbing copies of the inputs, never the originals.
"""
from __future__ import annotations

import numpy as np

from minivae.backend import get_backend, to_host


def as_tuple(y):
    return y if isinstance(y, tuple) else (y,)


def scalar(outputs, dys) -> float:
    """S = sum_j <y_j, dy_j> as a host float (outputs may be NumPy or CuPy)."""
    return float(sum(float((to_host(y) * to_host(dy)).sum()) for y, dy in zip(outputs, dys)))


def numeric_grads(fn, inputs: dict, dys, wrt, h: float = 1e-6) -> dict:
    """Finite-difference dS/d inputs[name] for each name in ``wrt``; fn(**inputs) -> output(s)."""
    work = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in inputs.items()}
    grads = {}
    for name in wrt:
        a = work[name]
        g = np.zeros(a.shape)
        for idx in np.ndindex(*a.shape):
            old = float(a[idx])
            a[idx] = old + h
            s_plus = scalar(as_tuple(fn(**work)), dys)
            a[idx] = old - h
            s_minus = scalar(as_tuple(fn(**work)), dys)
            a[idx] = old
            g[idx] = (s_plus - s_minus) / (2 * h)
        grads[name] = g
    return grads


def assert_grads_close(analytic: dict, numeric: dict, rtol=1e-5, atol=1e-6):
    for name, n in numeric.items():
        a = to_host(analytic[name])
        assert a.shape == n.shape, f"d{name}: shape {a.shape} != {n.shape}"
        np.testing.assert_allclose(a, n, rtol=rtol, atol=atol, err_msg=f"gradient of {name}")


def snapshot(inputs: dict) -> dict:
    return {k: to_host(v).copy() for k, v in inputs.items() if hasattr(v, "shape")}


def assert_unmodified(inputs: dict, before: dict):
    for k, v in before.items():
        np.testing.assert_array_equal(to_host(inputs[k]), v, err_msg=f"input {k} was modified")


def device_inputs(backend: str, **host_arrays) -> dict:
    """Host float64 arrays -> float64 arrays on ``backend``."""
    be = get_backend(backend)
    return {k: be.asarray(v, dtype=np.float64) for k, v in host_arrays.items()}

r"""Central finite differences in float64, the numerical side of every gradient check.

For outputs y_j = f_j(inputs) and random upstream gradients dy_j, the scalar
S = sum_j <y_j, dy_j> has dS/da = sum_j J_j(a)^T dy_j: exactly what a hand-written
backward returns for input ``a`` given ``dy``.  We estimate it entry by entry with

    dS/da_i ~ (S(a + h e_i) - S(a - h e_i)) / 2h          (error O(h^2)),

perturbing copies of the inputs, never the originals (a model's parameters are perturbed in place
and restored exactly).
"""
from __future__ import annotations

import numpy as np

from minivae.backend import get_backend, to_host


def as_tuple(y):
    return y if isinstance(y, tuple) else (y,)


def scalar(outputs, dys) -> float:
    """S = sum_j <y_j, dy_j> as a host float (outputs may be NumPy or CuPy)."""
    return float(sum(float((to_host(y) * to_host(dy)).sum()) for y, dy in zip(outputs, dys)))


def central_differences(arrays: dict, value, h: float = 1e-6) -> dict:
    """dvalue/d arrays[name], entry by entry, for every array in ``arrays``; ``value()`` -> float.

    The one finite-difference routine: each entry of each array is moved to a + h and a - h in
    place, ``value`` is called, and the entry is put back exactly as it was.
    """
    grads = {}
    for name, a in arrays.items():
        g = np.zeros(a.shape)
        for idx in np.ndindex(*a.shape):
            old = float(a[idx])
            a[idx] = old + h
            plus = value()
            a[idx] = old - h
            minus = value()
            a[idx] = old
            g[idx] = (plus - minus) / (2 * h)
        grads[name] = g
    return grads


def numeric_grads(fn, inputs: dict, dys, wrt, h: float = 1e-6) -> dict:
    """Finite-difference dS/d inputs[name] for each name in ``wrt``; fn(**inputs) -> output(s).

    The inputs are copied first, so the caller's arrays are never touched."""
    work = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in inputs.items()}
    return central_differences({name: work[name] for name in wrt},
                               lambda: scalar(as_tuple(fn(**work)), dys), h)


def numeric_param_grads(model, loss, h: float = 1e-6) -> dict:
    """Finite-difference d loss() / d parameter for every parameter of ``model`` (moved in place and
    restored); ``loss()`` returns a scalar (host or device)."""
    return central_differences(model.params, lambda: float(loss()), h)


def check_loss_gradients(model, objective, likelihood, k, b, beta, rng, label=""):
    """The whole-model gradient check: loss_and_grads against central differences of its loss.

    Draws x (b, x_dim) for ``likelihood`` and eps (k, b, eps_dim) in float64 from ``rng``; checks
    every parameter's gradient (shape, dtype, value) and that x, eps and the parameters are
    unmodified."""
    be = model.backend
    x = be.asarray(draw_x(rng, likelihood, b, model.x_dim), np.float64)
    eps = be.asarray(rng.standard_normal((k, b, model.eps_dim)), np.float64)
    x0, eps0 = to_host(x).copy(), to_host(eps).copy()
    params0 = {n: to_host(p).copy() for n, p in model.params.items()}

    _, grads, _ = model.loss_and_grads(x, objective, k, beta, eps=eps)
    assert set(grads) == set(model.params)
    for n, p in model.params.items():
        assert grads[n].shape == p.shape and grads[n].dtype == np.float64
        np.testing.assert_array_equal(to_host(p), params0[n])      # nothing updated in place
    np.testing.assert_array_equal(to_host(x), x0)
    np.testing.assert_array_equal(to_host(eps), eps0)

    numeric = numeric_param_grads(
        model, lambda: model.loss_and_grads(x, objective, k, beta, eps=eps)[0])
    for n in model.params:
        np.testing.assert_allclose(to_host(grads[n]), numeric[n], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{label}{objective}/{likelihood}: d{n}")


def draw_x(rng, likelihood, b, p):
    """A batch (b, p) of data for ``likelihood``: binary pixels for Bernoulli, else in [0, 1)."""
    if likelihood == "bernoulli":
        return (rng.random((b, p)) < 0.5).astype(float)
    return rng.random((b, p))


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

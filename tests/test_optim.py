"""Optimizers: each update equals its textbook formula, state round-trips, and they minimise."""
import numpy as np
import pytest

from minivae.backend import get_backend, to_host
from minivae.optim import SGD, Adagrad, Adam, make_optimizer
from tests.backends import BACKENDS


def run_steps(opt, p0, grads):
    params = {"w": p0.copy()}
    for g in grads:
        opt.step(params, {"w": g})
    return params["w"]


def test_adam_matches_algorithm_1_of_kingma_and_ba():
    rng = np.random.default_rng(0)
    p0, grads = rng.standard_normal(5), rng.standard_normal((6, 5))
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-4
    p, m, v = p0.copy(), np.zeros(5), np.zeros(5)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    np.testing.assert_allclose(run_steps(Adam(lr, b1, b2, eps), p0, grads), p, rtol=1e-12)


def test_sgd_with_momentum_and_adagrad_match_their_formulas():
    rng = np.random.default_rng(1)
    p0, grads = rng.standard_normal(4), rng.standard_normal((5, 4))
    p, vel = p0.copy(), np.zeros(4)
    for g in grads:
        vel = 0.9 * vel + g
        p = p - 0.1 * vel
    np.testing.assert_allclose(run_steps(SGD(0.1, momentum=0.9), p0, grads), p, rtol=1e-12)
    np.testing.assert_allclose(run_steps(SGD(0.1), p0, grads), p0 - 0.1 * grads.sum(0), rtol=1e-12)
    p, G = p0.copy(), np.zeros(4)
    for g in grads:
        G = G + g * g
        p = p - 0.05 * g / (np.sqrt(G) + 1e-10)
    np.testing.assert_allclose(run_steps(Adagrad(0.05), p0, grads), p, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,kwargs", [("sgd", dict(lr=0.1, momentum=0.5)),
                                         ("adam", dict(lr=0.1)), ("adagrad", dict(lr=0.5))])
def test_optimizers_minimise_a_quadratic_in_place(backend, name, kwargs):
    be = get_backend(backend)
    target = be.asarray([1.0, -2.0, 3.0])
    w = be.xp.zeros(3, dtype=np.float32)
    params = {"w": w}
    opt = make_optimizer(name, **kwargs)
    for _ in range(300):
        opt.step(params, {"w": 2 * (params["w"] - target)})
    assert params["w"] is w and w.dtype == np.float32                # updated in place
    np.testing.assert_allclose(to_host(w), to_host(target), atol=1e-2)


@pytest.mark.parametrize("backend", BACKENDS[1:])                       # CuPy only: its own kernel
@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_adam_kernel_on_cupy_takes_the_numpy_steps(backend, dtype, rtol):
    be, rng = get_backend(backend), np.random.default_rng(2)
    p0 = rng.standard_normal((7, 3)).astype(dtype)
    grads = rng.standard_normal((6, 7, 3)).astype(dtype)
    opt_np, opt_gpu = Adam(1e-2, eps=1e-4), Adam(1e-2, eps=1e-4)
    p_np = run_steps(opt_np, p0, grads)
    p_gpu = run_steps(opt_gpu, be.xp.asarray(p0), be.xp.asarray(grads))
    assert p_gpu.dtype == dtype and not np.allclose(p_np, p0)              # the steps moved p
    np.testing.assert_allclose(to_host(p_gpu), p_np, rtol=rtol, atol=rtol * 1e-2)
    for slot in ("m", "v"):
        np.testing.assert_allclose(to_host(opt_gpu.state[slot]["w"]), opt_np.state[slot]["w"],
                                   rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("name", ["sgd", "adam", "adagrad"])
def test_state_dict_round_trip_continues_identically(name):
    rng = np.random.default_rng(2)
    p0, grads = rng.standard_normal(3), rng.standard_normal((8, 3))
    kwargs = {"sgd": dict(lr=0.1, momentum=0.9)}.get(name, {})
    full = run_steps(make_optimizer(name, **kwargs), p0, grads)
    first = make_optimizer(name, **kwargs)
    mid = run_steps(first, p0, grads[:4])
    second = make_optimizer(name, **kwargs)
    state = first.state_dict()
    second.load_state_dict({**state, "arrays": {k: v.copy() for k, v in state["arrays"].items()}})
    np.testing.assert_array_equal(run_steps(second, mid, grads[4:]), full)


def test_unknown_optimizer_and_mismatched_state():
    with pytest.raises(ValueError, match="Unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop")
    with pytest.raises(ValueError, match="for Adam, not SGD"):
        SGD().load_state_dict(Adam().state_dict())

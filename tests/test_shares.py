"""Whole examples on threads (minivae.parallel.over_shares): the shares give the batch's numbers.

A model cuts a batch into shares, one per thread, and adds the shares' gradients; L_k's log-weights
go in shares of the examples or of the samples.  Here every share path is checked against the
whole batch on one thread (to float32 rounding: the sums over the batch associate differently),
and the gradients computed in shares against central differences in float64.  ``forced(n)`` makes
even a tiny batch go in n shares.
"""
import contextlib
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minivae import VAE, parallel
from minivae.conv_vae import ConvVAE
from minivae.two_layer import TwoLayerVAE
from tests.gradcheck import check_loss_gradients


@contextlib.contextmanager
def forced(n):
    """n threads, and shares down to one value each (any batch of n or more rows splits)."""
    old = parallel.set_threads(n), parallel.MIN_SHARE
    parallel.MIN_SHARE = 1
    try:
        yield
    finally:
        parallel.set_threads(old[0])
        parallel.MIN_SHARE = old[1]


def on(n, fn):
    with forced(n):
        return fn()


def assert_close32(a, b):
    """Equal to float32 rounding of sums: relative 2e-5 of the array's largest entry."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * float(np.abs(b).max(initial=1e-30)))


def small(seed=0, dtype="float32", likelihood="bernoulli"):
    return VAE(x_dim=12, latent_dim=3, encoder_hidden=(8,), decoder_hidden=(7,), seed=seed,
               dtype=dtype, likelihood=likelihood)


# ---------------------------------------------------------------- gradients in shares, float64

@settings(deadline=None, max_examples=15)
@given(objective=st.sampled_from(["elbo", "mc_elbo", "iwae"]),
       likelihood=st.sampled_from(["bernoulli", "gaussian_learned"]),
       k=st.integers(1, 4), b=st.integers(2, 5), n=st.integers(2, 3),
       beta=st.sampled_from([1.0, 0.5]), seed=st.integers(0, 2**32 - 1))
def test_gradients_computed_in_shares_match_finite_differences(objective, likelihood, k, b, n,
                                                               beta, seed):
    model = small(seed % 1000, "float64", likelihood)
    with forced(n):
        assert parallel.share_count(b, 10**9) == min(n, b)            # really in shares
        check_loss_gradients(model, objective, likelihood, k, b, beta,
                             np.random.default_rng(seed), label="in shares: ")


# ---------------------------------------------------------------- shares == one thread

@settings(deadline=None, max_examples=20)
@given(b=st.integers(1, 7), k=st.integers(1, 6), n=st.integers(2, 4),
       objective=st.sampled_from(["elbo", "mc_elbo", "iwae"]), seed=st.integers(0, 2**32 - 1))
def test_a_step_in_shares_equals_the_step_on_one_thread(b, k, n, objective, seed):
    model = small(seed % 1000)
    rng = np.random.default_rng(seed)
    x = (rng.random((b, 12)) < 0.5).astype(np.float32)
    eps = rng.standard_normal((k, b, 3)).astype(np.float32)

    def step():
        loss, grads, stats = model.loss_and_grads(x, objective, k, eps=eps)
        return [loss, stats["kl"], stats["recon"]] + [grads[n] for n in sorted(grads)]

    whole, shared = on(1, step), on(n, step)
    for u, v in zip(shared, whole):
        assert_close32(u, v)


@pytest.mark.parametrize("estimator,m", [("iwae", 1), ("stl", 1), ("dreg", 1), ("miwae", 2),
                                         ("piwae", 2), ("ciwae", 1)])
def test_estimators_in_shares_equal_one_thread(estimator, m):
    model = small(4)
    rng = np.random.default_rng(5)
    x = (rng.random((5, 12)) < 0.5).astype(np.float32)
    eps = rng.standard_normal((6, 5, 3)).astype(np.float32)

    def step():
        loss, grads, stats = model.estimator_loss_and_grads(x, estimator, 6 // m, m=m, eps=eps)
        return [loss, stats["kl"], stats["recon"]] + [grads[n] for n in sorted(grads)]

    for u, v in zip(on(2, step), on(1, step)):
        assert_close32(u, v)


@pytest.mark.parametrize("b,k", [(5, 3), (1, 9), (2, 40)])
def test_bound_and_log_weights_in_shares_equal_one_thread(b, k):
    # b >= threads: shares of the examples; b = 1: of the samples (L_5000's one image at a time)
    model = small(6)
    rng = np.random.default_rng(7)
    x = (rng.random((b, 12)) < 0.5).astype(np.float32)
    eps = rng.standard_normal((k, b, 3)).astype(np.float32)
    for fn in (lambda: model.log_weights(x, eps), lambda: model.bound(x, "iwae", k, eps=eps),
               lambda: model.bound(x, "elbo", k, eps=eps)):
        whole = on(1, fn)
        for n in (2, 3):
            assert_close32(on(n, fn), whole)


def test_other_models_train_in_shares():
    rng = np.random.default_rng(8)
    two = TwoLayerVAE(x_dim=12, h1_dim=4, h2_dim=2, x_hidden=(6,), h_hidden=(5,), seed=1)
    conv = ConvVAE((1, 8, 8), latent_dim=3, channels=(2, 3, 3), seed=1)
    for model in (two, conv):
        x = (rng.random((4, model.x_dim)) < 0.5).astype(np.float32)
        eps = rng.standard_normal((3, 4, model.eps_dim)).astype(np.float32)

        def step():
            loss, grads, _ = model.loss_and_grads(x, "iwae", 3, eps=eps)
            return [loss] + [grads[n] for n in sorted(grads)]

        for u, v in zip(on(2, step), on(1, step)):
            assert_close32(u, v)


# ---------------------------------------------------------------- over_shares itself

def test_shares_cut_a_range_into_near_equal_contiguous_slices():
    for n in range(1, 30):
        for count in range(1, n + 1):
            parts = parallel.shares(n, count)
            lengths = [s.stop - s.start for s in parts]
            assert len(parts) == count and sum(lengths) == n
            assert max(lengths) - min(lengths) <= 1
            assert [s.start for s in parts[1:]] == [s.stop for s in parts[:-1]]


def test_share_count_follows_the_thread_setting_and_the_work():
    with forced(3):
        assert parallel.share_count(10, 10**6) == 3
        assert parallel.share_count(2, 10**6) == 2                    # never an empty share
    with forced(1):
        assert parallel.share_count(10, 10**6) == 1
    old = parallel.set_threads(4)
    try:
        assert parallel.share_count(100, 4 * parallel.MIN_SHARE) == 4
        assert parallel.share_count(100, 2 * parallel.MIN_SHARE) == 2  # too little work for 4
        assert parallel.share_count(100, parallel.MIN_SHARE - 1) == 1
    finally:
        parallel.set_threads(old)


def test_over_shares_runs_every_share_once_in_order_off_the_calling_thread_but_the_first():
    with forced(3):
        seen = parallel.over_shares(
            lambda s: (s, threading.get_ident(), parallel.kernel_threads(),
                       parallel.share_count(9, 10**9)), 9, 10**9)
    assert [r[0] for r in seen] == parallel.shares(9, 3)
    assert seen[0][1] == threading.get_ident()                        # the caller takes the first
    assert all(r[1] != threading.get_ident() for r in seen[1:])       # the pool the others
    assert all(r[2] == 1 and r[3] == 1 for r in seen)   # no threads, and no shares, within a share


@pytest.mark.skipif(parallel.blas_thread_control() is None, reason="NumPy's BLAS is not OpenBLAS")
def test_the_blas_runs_one_thread_inside_shares_and_gets_its_count_back():
    get, _ = parallel.blas_thread_control()
    before = get()
    with forced(2):
        inside = parallel.over_shares(lambda s: get(), 2, 10**9)
    assert inside == [1, 1] and get() == before
    with parallel.single_threaded_blas():                             # nested: the outer restores
        with parallel.single_threaded_blas():
            assert get() == 1
        assert get() == 1
    assert get() == before


def test_a_failing_share_raises_after_every_share_finished():
    done = []

    def fn(s):
        if s.start == 0:
            raise RuntimeError("share failed")
        done.append(s)

    with forced(3), pytest.raises(RuntimeError, match="share failed"):
        parallel.over_shares(fn, 3, 10**9)
    assert sorted(s.start for s in done) == [1, 2]


def test_shares_stay_whole_where_the_blas_threads_cannot_be_set(monkeypatch):
    monkeypatch.setattr(parallel, "blas_thread_control", lambda: None)
    monkeypatch.setattr(parallel, "blas_threads", lambda: 2)
    with forced(2):
        assert parallel.share_count(10, 10**9) == 1                   # they would fight the BLAS
    monkeypatch.setattr(parallel, "blas_threads", lambda: 1)
    with forced(2):
        assert parallel.share_count(10, 10**9) == 2                   # a one-thread BLAS: fine


def test_mpi_ranks_on_one_machine_share_its_cores(monkeypatch):
    for var in ("MINIVAE_NUM_THREADS", *parallel.BLAS_VARS, *parallel.LOCAL_RANK_VARS):
        monkeypatch.delenv(var, raising=False)
    old, blas_threads = parallel.set_threads(None), parallel.blas_threads
    try:
        monkeypatch.setattr(parallel, "blas_threads", lambda: 8)       # an 8-core machine
        parallel.set_threads(None)                         # read them again
        assert parallel.threads() == 8
        monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4")          # mpiexec -n 4
        parallel.set_threads(None)                         # read them again
        assert parallel.local_ranks() == 4 and parallel.threads() == 2
        monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "16")         # more ranks than cores
        parallel.set_threads(None)                         # read them again
        assert parallel.threads() == 1
        monkeypatch.setattr(parallel, "blas_threads", blas_threads)
        parallel.set_threads(None)                         # read them again
        monkeypatch.setenv("OMP_NUM_THREADS", "3")                     # said per rank: kept
        parallel.set_threads(None)                         # read them again
        assert parallel.threads() == 3
    finally:
        parallel.set_threads(old)


# ---------------------------------------------------------------- the next draws, made ahead

def test_ahead_makes_the_same_items_in_order_one_ahead_on_another_thread():
    made = []

    def items(rng):
        for i in range(5):
            made.append((i, threading.get_ident()))
            yield rng.standard_normal(3)

    plain = list(items(np.random.default_rng(0)))
    made.clear()
    with forced(2):
        seen = []
        for i, item in enumerate(parallel.ahead(items(np.random.default_rng(0)))):
            seen.append(item)
            if i < 4:                                   # the next one is made meanwhile
                deadline = time.monotonic() + 10
                while len(made) < i + 2 and time.monotonic() < deadline:
                    time.sleep(0.001)
                assert len(made) == i + 2
    for u, v in zip(seen, plain):
        np.testing.assert_array_equal(u, v)             # the same draws from the same generator
    assert len(seen) == 5 and all(t != threading.get_ident() for _, t in made)
    made.clear()
    with forced(1):
        assert len(list(parallel.ahead(items(np.random.default_rng(0))))) == 5
    assert all(t == threading.get_ident() for _, t in made)   # one thread: the plain loop


def test_ahead_raises_an_items_error_where_it_would_be_yielded():
    def items():
        yield 1
        raise RuntimeError("draw failed")

    with forced(2):
        it = parallel.ahead(items())
        assert next(it) == 1
        with pytest.raises(RuntimeError, match="draw failed"):
            next(it)

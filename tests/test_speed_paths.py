"""The fast forms of the hot kernels: threaded equals single-threaded, and float32 stays accurate.

* minivae.parallel.for_rows splits element-wise kernels over threads: the Bernoulli likelihood,
  tanh, whole training steps and L_k give the same numbers bit for bit on 1 thread and on 3.
* Bernoulli.forward sums x l - softplus(l) pixel by pixel as u - log(1 + e) (see its docstring);
  on a trained model's logits its float32 error is that of the textbook form, where sums of x l and
  of softplus(l) (or of (x - 1/2) l and |l| / 2) taken apart would cancel.
* Bernoulli.sum_log: sum_p log a_p by products of groups of pixels.
"""
import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minivae import VAE, parallel
from minivae.checkpoint import load_checkpoint
from minivae.evaluate import log_likelihood
from minivae.layers import Tanh
from minivae.likelihoods import Bernoulli
from tests.realdata import REPO


@contextlib.contextmanager
def threads(n, block=parallel.BLOCK, min_thread=1):
    """``n`` threads for element-wise kernels, blocks of ``block`` elements, and threads for any
    kernel over ``2 min_thread`` elements or more."""
    old = parallel.set_threads(n), parallel.BLOCK, parallel.MIN_THREAD
    parallel.BLOCK, parallel.MIN_THREAD = block, min_thread
    try:
        yield
    finally:
        parallel.set_threads(old[0])
        parallel.BLOCK, parallel.MIN_THREAD = old[1:]


def on_threads(fn, n, block=parallel.BLOCK):
    with threads(n, block):
        return fn()


def assert_same(a, b):
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
        assert u.dtype == v.dtype


# ---------------------------------------------------------------- threaded == single-threaded

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(deadline=None, max_examples=30)
@given(k=st.integers(1, 7), b=st.integers(1, 4), p=st.integers(1, 9), n=st.integers(2, 4),
       seed=st.integers(0, 2**32 - 1))
def test_threaded_kernels_equal_single_threaded_bit_for_bit(dtype, k, b, p, n, seed):
    rng = np.random.default_rng(seed)
    x = (rng.random((b, p)) < 0.5).astype(dtype)
    logits = (8 * rng.standard_normal((k, b, p))).astype(dtype)
    dlogp = rng.standard_normal((k, b)).astype(dtype)
    h, dy = rng.standard_normal((2, k, b, p)).astype(dtype)

    def kernels():
        lik, tanh = Bernoulli(), Tanh()
        logp, cache = lik.forward(x, logits)
        y, t_cache = tanh.forward(h)
        return logp, lik.backward(dlogp, cache), y, tanh.backward(dy, t_cache)[0]

    whole = on_threads(kernels, 1, block=10**9)
    assert_same(whole, on_threads(kernels, n))
    assert_same(whole, on_threads(kernels, 1, block=7))                 # blocks of a row or so
    assert_same(whole, on_threads(kernels, n, block=2 * b * p))         # two rows per block


def test_a_2d_batch_splits_its_data_with_its_logits():
    rng = np.random.default_rng(0)
    x = (rng.random((9, 5)) < 0.5).astype(np.float32)               # (B, P) against logits (B, P)
    logits = rng.standard_normal((9, 5)).astype(np.float32)
    run = lambda: Bernoulli().forward(x, logits)[0]                  # noqa: E731
    assert_same([on_threads(run, 1)], [on_threads(run, 4)])


def test_threaded_training_step_and_log_likelihood_equal_single_threaded():
    model = VAE(x_dim=30, latent_dim=4, encoder_hidden=(16,), decoder_hidden=(16,), seed=3)
    rng = np.random.default_rng(1)
    x = (rng.random((6, 30)) < 0.4).astype(np.float32)
    eps = rng.standard_normal((50, 6, 4)).astype(np.float32)

    def step():
        loss, grads, _ = model.loss_and_grads(x, "iwae", 50, eps=eps)
        return [loss] + [grads[name] for name in sorted(grads)]

    def l_k():
        return [log_likelihood(model, x, k=300, rng=np.random.default_rng(2), max_rows=256)]

    for run in (step, l_k):
        whole = on_threads(run, 1, block=10**9)
        assert_same(whole, on_threads(run, 3))
        assert_same(whole, on_threads(run, 3, block=100))


# ---------------------------------------------------------------- the thread setting

def test_thread_count_follows_the_blas_and_kernels_thread_where_it_lets_go(monkeypatch):
    for var in ("MINIVAE_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "GOTO_THREAD_TIMEOUT",
                *parallel.BLAS_VARS):
        monkeypatch.delenv(var, raising=False)
    old = parallel.set_threads(None)
    try:
        cores = len(os.sched_getaffinity(0))
        assert parallel.blas_threads() == parallel.threads() == cores
        assert parallel.kernel_threads() == 1             # OpenBLAS's threads spin: one thread
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        parallel.set_threads(None)                         # read them again
        assert parallel.threads() == 3
        monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "4")   # they sleep at once: the BLAS's count
        parallel.set_threads(None)                         # read them again
        assert parallel.kernel_threads() == 3
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")      # OpenBLAS's own variable comes first
        parallel.set_threads(None)                         # read them again
        assert parallel.threads() == parallel.kernel_threads() == 2
        monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "28")  # the default spin
        parallel.set_threads(None)                         # read them again
        assert (parallel.threads(), parallel.kernel_threads()) == (2, 1)
        monkeypatch.setenv("MINIVAE_NUM_THREADS", "5")       # minivae's own setting wins
        parallel.set_threads(None)                         # read them again
        assert parallel.threads() == parallel.kernel_threads() == 5
        parallel.set_threads(1)                              # and set_threads wins over it
        assert parallel.threads() == parallel.kernel_threads() == 1
        parallel.set_threads(None)
        monkeypatch.setenv("MINIVAE_NUM_THREADS", "none")    # not a number: ignored
        parallel.set_threads(None)                         # read them again
        assert (parallel.threads(), parallel.kernel_threads()) == (2, 1)
    finally:
        parallel.set_threads(old)


def test_set_threads_forces_one_thread_and_refuses_nonsense():
    def blocks(a):
        calls = []
        parallel.for_rows(lambda b: calls.append((b[0, 0], len(b))), (a,))
        return sorted(calls)

    rows = np.arange(8.0)[:, None] * np.ones(3)                      # (8, 3), row i holds i
    with threads(1):
        assert parallel.threads() == 1
        assert blocks(rows) == [(0, 8)]                               # one call, the whole array
    with threads(1, block=9):                                        # <= 9 elements: 3 rows
        assert blocks(rows) == [(0, 3), (3, 3), (6, 2)]
    with threads(2):                                                 # a block for each thread
        assert blocks(rows) == [(0, 4), (4, 4)]
    with threads(2, block=9):                                        # 3 blocks, 4 for 2 threads
        assert blocks(rows) == [(0, 2), (2, 2), (4, 2), (6, 2)]
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="whole number >= 1"):
            parallel.set_threads(bad)


def test_a_failing_block_raises_after_every_block_finished():
    def kernel(a):
        if a[0, 0] > 0:
            raise RuntimeError("block failed")
        a += 1

    a = np.zeros((4, 2))
    a[2:] = 1
    with threads(2), pytest.raises(RuntimeError, match="block failed"):
        parallel.for_rows(kernel, (a,))
    np.testing.assert_array_equal(a[:2], 1)                          # the other block ran


def test_threads_work_in_a_forked_child():
    # the pool's threads do not survive fork(): the child makes its own
    code = ("import os, numpy as np\n"
            "from minivae import parallel\n"
            "parallel.set_threads(2); parallel.MIN_THREAD = 1\n"
            "a = np.zeros((4, 2)); parallel.for_rows(np.exp, (a, a))\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    b = np.zeros((4, 2)); parallel.for_rows(np.exp, (b, b)); os._exit(int(b.sum()))\n"
            "print(os.waitpid(pid, 0)[1] >> 8)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "8", out.stderr


# ---------------------------------------------------------------- float32 on real-scale logits

def trained_logits(k=50, b=100):
    """x drawn from the shipped IWAE's own decoder, and logits at z ~ q(z|x): float32 (K, B, P)."""
    model, _, _ = load_checkpoint(REPO / "checkpoints" / "iwae-1-50.npz")
    rng = np.random.default_rng(0)
    x = (rng.random((b, 784)) < model.sample(b, rng)).astype(np.float32)
    mu, logvar = model.encode(x)
    z = mu + np.exp(logvar / 2) * rng.standard_normal((k, b, 50)).astype(np.float32)
    return x, model.decoder.forward(z)[0]


def test_float32_bernoulli_on_trained_logits_is_as_accurate_as_the_textbook_form():
    x, logits = trained_logits()
    assert logits.dtype == np.float32 and 10 < np.abs(logits).mean() < 30   # |l| ~ 13.5
    l64, x64 = logits.astype(np.float64), x.astype(np.float64)
    exact = (x64 * l64 - np.logaddexp(0.0, l64)).sum(-1)                    # (K, B), ~ -84 nats

    def softplus32(v):
        return np.maximum(v, 0) + np.log(1 + np.exp(-np.abs(v)))

    def error(logp):
        return np.abs(logp.astype(np.float64) - exact).max()

    ours = error(Bernoulli().forward(x, logits)[0])
    textbook = error((x * logits - softplus32(logits)).sum(-1))
    apart = error((x * logits).sum(-1) - softplus32(logits).sum(-1))       # sums of ~1500 nats
    halves = error(((x - 0.5) * logits).sum(-1) - (np.abs(logits) / 2).sum(-1)
                   - np.log(1 + np.exp(-np.abs(logits))).sum(-1))         # sums of ~5000 nats
    # measured: 1.7e-5 (ours), 2.2e-5 (textbook), 1.2e-4 (apart), 1.0e-3 (halves)
    assert ours <= 4e-5 and ours <= 1.5 * textbook
    assert apart > 3 * ours and halves > 30 * ours


def test_bernoulli_gradient_on_trained_logits_matches_float64():
    x, logits = trained_logits(k=5, b=20)
    lik = Bernoulli()
    dout = lik.backward(np.ones(logits.shape[:-1], np.float32), lik.forward(x, logits)[1])
    l64 = logits.astype(np.float64)
    sig = np.exp(-np.logaddexp(0.0, -l64))                                  # sigmoid(l)
    np.testing.assert_allclose(dout, x - sig, rtol=0, atol=2e-7)


# ---------------------------------------------------------------- sum_log

@pytest.mark.parametrize("p", [1, 2, 3, 5, 7, 16, 17, 49, 783, 784, 785, 2000])
def test_sum_log_equals_the_sum_of_logs(p):
    rng = np.random.default_rng(p)
    a = 1 + rng.random((3, p))                                              # in [1, 2)
    np.testing.assert_allclose(Bernoulli.sum_log(a), np.log(a).sum(-1), rtol=1e-13, atol=1e-13)
    a32 = a.astype(np.float32)
    exact = np.log(a32.astype(np.float64)).sum(-1)
    # each group's product rounds at most 80 times (5e-6 relative): far inside this
    assert np.all(np.abs(Bernoulli.sum_log(a32) - exact) <= 1e-6 * p + 1e-5)


def test_sum_log_does_not_overflow_at_its_largest_products():
    a = np.full((2, 4 * 784 + 3), 2.0, np.float32)                         # every factor at its max
    with np.errstate(over="raise"):
        np.testing.assert_allclose(Bernoulli.sum_log(a), a.shape[1] * np.log(2.0), rtol=1e-6)

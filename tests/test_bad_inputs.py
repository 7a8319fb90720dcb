"""Bad inputs to the command-line scripts: one sentence each, a non-zero exit, nothing lost.

A table of cases, each ``(script, where, args, exit status, message)``: the script runs on an
output folder prepared as ``where`` says (a copy of a finished tiny run, a fresh folder, ...),
and the case asserts the exit status, that stderr names the problem (the regex), that no
traceback is printed, and that every file in the folder is byte-identical afterwards (and no
file was added).  Scripts run in-process (``run(main, argv)``, as their ``__main__`` does), with
the data set loaded once; a few run as subprocesses, for the real tracebacks and for a
file-size limit (RLIMIT_FSIZE) on the writes.  File-system faults that need permissions (a
read-only folder, a folder without search permission) are real where chmod binds (not as root)
and simulated otherwise.
"""
import errno
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from minivae import commands, runs
from minivae.checkpoint import save_checkpoint
from minivae.commands import raised_by_minivae, run
from minivae.runs import CommandError, train_state
from minivae.data import load_dataset
from minivae.train import TrainConfig
from minivae.two_layer import TwoLayerVAE
from tests.realdata import REPO, data_root, mnist

TINY = ["--subset", "500", "--epochs", "1", "--eval-k", "5", "--no-figures", "--hidden", "32",
        "--latent-dim", "4"]
TINY_GRID = ["--passes", "1", "--subset", "400", "--eval-k", "4", "--eval-n", "50"]
COMMANDS = {"evaluate": commands.evaluate_main, "analysis": commands.analysis_main}


# ---------------------------------------------------------------- running a script

@functools.lru_cache(maxsize=None)
def example(name):
    """The module of examples/<name>.py."""
    spec = importlib.util.spec_from_file_location(f"bad_inputs_{name}", REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=None)
def _cached_dataset(name, data_dir, offline):
    return load_dataset(name, data_dir, offline)


def cached_load_dataset(name="mnist", data_dir=None, offline=False, mirrors=None):
    return _cached_dataset(name, None if data_dir is None else str(data_dir), offline)


@pytest.fixture(autouse=True)
def data_loaded_once(monkeypatch):
    monkeypatch.setattr(runs, "load_dataset", cached_load_dataset)         # the examples' data
    monkeypatch.setattr(commands, "load_dataset", cached_load_dataset)     # the commands'


def data_args():
    return ["--data-dir", str(data_root()), "--offline"]


def call(name, args, capsys):
    """(exit status, stdout, stderr) of script ``name`` (an example or a command) on ``args``."""
    try:
        code = COMMANDS[name](args) if name in COMMANDS else run(example(name).main, args)
    except SystemExit as exit:                    # argparse refuses with SystemExit(2)
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def subprocess_call(name, args, preexec_fn=None):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, "-W", "error", str(REPO / "examples" / f"{name}.py"), *args],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
                       preexec_fn=preexec_fn)
    return r.returncode, r.stdout, r.stderr


def snapshot(folder: Path) -> dict:
    """Every file under ``folder``, by relative path: its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_clear_error(code, err, expected_code, message):
    assert code == expected_code, err
    assert "Traceback" not in err
    assert re.search(message, err, re.S), err
    lines = err.strip().splitlines()
    if lines[0].startswith("usage:"):                     # argparse: a usage line and the problem
        assert len(lines) == 2 and ": error: " in lines[1], err
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), err


# ---------------------------------------------------------------- finished runs, made once

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run of examples/mnist_vae.py: its folder (checkpoint.npz, metrics.json)."""
    mnist()
    out = tmp_path_factory.mktemp("finished") / "run"
    assert run(example("mnist_vae").main, [*TINY, *data_args(), "--out", str(out)]) == 0
    assert sorted(snapshot(out)) == ["checkpoint.npz", "metrics.json"]
    return out


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory):
    """A finished one-pass vae-1-1 of examples/iwae_vs_vae.py: results.json, results.md, its
    checkpoint."""
    mnist()
    out = tmp_path_factory.mktemp("grid") / "iwae"
    assert run(example("iwae_vs_vae").main,
               ["--runs", "vae-1-1", *TINY_GRID, *data_args(), "--out", str(out)]) == 0
    assert sorted(snapshot(out)) == ["results.json", "results.md", "vae-1-1/checkpoint.npz"]
    return out


def prepare(where, tmp_path, finished, finished_grid) -> Path:
    """The output folder of a case, set up as ``where`` says."""
    out = tmp_path / "out"
    if where == "finished":                              # a finished examples/mnist_vae.py run
        shutil.copytree(finished, out)
    elif where == "fresh":                               # nothing there yet
        pass
    elif where.startswith("grid"):                       # a finished examples/iwae_vs_vae.py run
        shutil.copytree(finished_grid, out)
        damaged = {"grid": None, "grid-truncated": b'[{"run": "vae-1-1", "objec',
                   "grid-dict": b'{"run": "vae-1-1"}', "grid-no-names": b'[{"nope": 1}]',
                   "grid-not-utf8": b"\xff\xfe\x00[", "grid-empty": b""}
        if where == "grid-mnist":                      # a run's folder holding another's model
            (out / "iwae-1-50").mkdir()
            shutil.copy(finished / "checkpoint.npz", out / "iwae-1-50" / "checkpoint.npz")
        elif damaged[where] is not None:
            (out / "results.json").write_bytes(damaged[where])
    elif where == "two-layer":                           # a TwoLayerVAE's checkpoint
        model = TwoLayerVAE(784, 8, 4, (16,), (8,), "tanh", "bernoulli")
        save_checkpoint(out / "checkpoint.npz", model, None,
                        train_state(TrainConfig(epochs=1), 1, []))
    else:
        raise AssertionError(where)
    return out


def case(script, where, args, message, code=2):
    return pytest.param(script, where, args, code, message,
                        id=f"{script}-{where}-{' '.join(args)[:60]}")


CASES = [
    # ---- a setting out of its range: refused by argparse, before anything is read or written
    case("mnist_vae", "finished", ["--k", "0"], r"argument --k: must be at least 1, got 0"),
    case("mnist_vae", "finished", ["--k", "2.5"], r"argument --k: must be a whole number, got '2.5'"),
    case("mnist_vae", "finished", ["--batch-size", "0"], r"argument --batch-size: must be at least 1"),
    case("mnist_vae", "finished", ["--epochs", "0"], r"argument --epochs: must be at least 1"),
    case("mnist_vae", "finished", ["--latent-dim", "0"], r"argument --latent-dim: must be at least 1"),
    case("mnist_vae", "finished", ["--hidden", "64", "0"], r"argument --hidden: must be at least 1"),
    case("mnist_vae", "finished", ["--eval-k", "0"], r"argument --eval-k: must be at least 1, got 0"),
    case("mnist_vae", "finished", ["--eval-k", "-1"], r"argument --eval-k: must be at least 1, got -1"),
    case("mnist_vae", "finished", ["--lr", "0"], r"argument --lr: must be a number > 0, got 0"),
    case("mnist_vae", "finished", ["--lr", "-0.01"], r"argument --lr: must be a number > 0, got -0.01"),
    case("mnist_vae", "finished", ["--lr", "nan"], r"argument --lr: must be a finite number, got nan"),
    case("mnist_vae", "finished", ["--lr-end", "-1"], r"argument --lr-end: must be a number > 0"),
    case("mnist_vae", "finished", ["--seed", "-1"], r"argument --seed: must be at least 0, got -1"),
    case("mnist_vae", "finished", ["--sigma", "0"], r"argument --sigma: must be a number > 0"),
    case("mnist_vae", "finished", ["--activation", "swish"], r"argument --activation: invalid choice: 'swish'"),
    case("mnist_vae", "finished", ["--beta", "-1"], r"argument --beta: must be a number >= 0, got -1"),
    case("mnist_vae", "finished", ["--beta", "inf"], r"argument --beta: must be a finite number"),
    case("mnist_vae", "finished", ["--subset", "0"], r"argument --subset: must be at least 1, got 0"),
    case("mnist_vae", "finished", ["--subset", "-1"], r"argument --subset: must be at least 1, got -1"),
    case("mnist_vae", "finished", ["--objective", "foo"], r"argument --objective: invalid choice"),
    case("mnist_vae", "finished", ["--resume", "--overwrite"], r"--overwrite: not allowed with argument --resume"),
    case("iwae_vs_vae", "grid", ["--passes", "0"], r"argument --passes: must be at least 1, got 0"),
    case("iwae_vs_vae", "grid", ["--minutes", "nan"], r"argument --minutes: must be a finite number, got nan"),
    case("iwae_vs_vae", "grid", ["--minutes", "0"], r"argument --minutes: must be a number > 0, got 0"),
    case("iwae_vs_vae", "grid", ["--minutes", "-1"], r"argument --minutes: must be a number > 0, got -1"),
    case("iwae_vs_vae", "grid", ["--k", "2"], r"argument --k: invalid choice: 2 \(choose from 1, 5, 50\)"),
    case("iwae_vs_vae", "grid", ["--layers", "3"], r"argument --layers: invalid choice: 3"),
    case("iwae_vs_vae", "grid", ["--eval-n", "0"], r"argument --eval-n: must be at least 1, got 0"),
    case("iwae_vs_vae", "grid", ["--eval-n", "-5"], r"argument --eval-n: must be at least 1, got -5"),
    case("iwae_vs_vae", "grid", ["--eval-k", "0"], r"argument --eval-k: must be at least 1"),
    case("iwae_vs_vae", "grid", ["--batch-size", "0"], r"argument --batch-size: must be at least 1"),
    case("iwae_vs_vae", "grid", ["--runs", "iwae-3-50"], r"argument --runs: unknown run 'iwae-3-50'"),
    case("beta_vae", "finished", ["--betas", "1", "-1"], r"argument --betas: must be a number > 0, got -1"),
    case("beta_vae", "finished", ["--epochs", "0"], r"argument --epochs: must be at least 1"),
    case("gaussian_decoder", "finished", ["--r-loss-factor", "0"], r"argument --r-loss-factor: must be a number > 0"),
    case("gaussian_decoder", "finished", ["--activation", "swish"], r"argument --activation: invalid choice"),
    case("gradient_variance", "finished", ["--repeats", "1"], r"argument --repeats: must be at least 2, got 1"),
    case("gradient_variance", "finished", ["--samples", "5", "0"], r"argument --samples: must be at least 1"),
    case("gradient_variance", "finished", ["--pretrain-epochs", "-1"], r"argument --pretrain-epochs: must be at least 0"),
    case("latent_arithmetic", "finished", ["--quantile", "0"], r"argument --quantile: must be in \(0, 0.5\], got 0"),
    case("latent_arithmetic", "finished", ["--quantile", "0.6"], r"argument --quantile: must be in \(0, 0.5\]"),
    case("latent_arithmetic", "finished", ["--steps", "1"], r"argument --steps: must be at least 2, got 1"),
    case("latent_arithmetic", "finished", ["--n-weights", "1"], r"argument --n-weights: must be at least 2"),
    case("latent_arithmetic", "finished", ["--max-weight", "nan"], r"argument --max-weight: must be a finite"),
    case("latent_arithmetic", "finished", ["--from", "-1"], r"argument --from: must be at least 0, got -1"),
    case("latent_arithmetic", "finished", ["--attribute", "class", "--from", "3", "--to", "3"],
         r"--from and --to name the same class \(3\)"),
    case("latent_arithmetic", "fresh", ["--checkpoint", "{ckpt}", "--hidden", "64"],
         r"--hidden: with --checkpoint nothing is trained"),
    case("evaluate", "finished", ["{ckpt}", "--k", "0"], r"argument --k: must be at least 1, got 0"),
    case("evaluate", "finished", ["{ckpt}", "--max-rows", "0"], r"argument --max-rows: must be at least 1"),
    case("evaluate", "finished", ["{ckpt}", "--seed", "-1"], r"argument --seed: must be at least 0"),
    case("evaluate", "finished", ["{ckpt}", "--dataset", "cifar"], r"argument --dataset: invalid choice"),
    case("analysis", "finished", ["{ckpt}", "--samples", "0"], r"argument --samples: must be at least 1"),

    # ---- a setting too large for the data: one sentence once the data is loaded
    case("mnist_vae", "fresh", ["--subset", "70000"], r"--subset 70000 is more than the 60000 training images of mnist"),
    case("mnist_vae", "fresh", ["--subset", "500", "--batch-size", "600"],
         r"--batch-size 600 is larger than the 500 training images \(--subset 500\)"),
    case("beta_vae", "fresh", ["--subset", "100", "--batch-size", "200"], r"--batch-size 200 is larger than the 100"),
    case("gaussian_decoder", "fresh", ["--subset", "100", "--batch-size", "101"], r"--batch-size 101 is larger"),
    case("gradient_variance", "fresh", ["--batch-size", "70000"], r"--batch-size 70000 is larger than the 60000"),
    case("latent_arithmetic", "fresh", ["--attribute", "class", "--from", "1", "--to", "12"],
         r"class 12 does not exist: mnist has classes 0..9"),
    case("latent_arithmetic", "fresh", ["--checkpoint", "{ckpt}", "--n-digits", "20000"],
         r"--n-digits 20000 needs \d+ test digits of class \d"),
    case("iwae_vs_vae", "fresh", ["--runs", "vae-1-5", "--eval-n", "20000"], r"--eval-n 20000 is more than the 10000 test images"),
    case("iwae_vs_vae", "fresh", ["--runs", "vae-1-5", "--subset", "10", "--batch-size", "20"],
         r"--batch-size 20 is larger than the 10 training images"),
    case("evaluate", "finished", ["{ckpt}", "--n", "20000"], r"--n 20000 is more than the 10000 test images"),

    # ---- a new run never replaces a saved one
    case("mnist_vae", "finished", [], r"checkpoint.npz holds a saved run.*pass --resume to continue it, or pass --overwrite"),
    case("mnist_vae", "finished", ["--latent-dim", "8", "--epochs", "2"], r"holds a saved run.*--resume.*--overwrite"),
    case("iwae_vs_vae", "grid", ["--runs", "vae-1-1", *TINY_GRID], r"vae-1-1/checkpoint.npz holds a saved run.*--resume"),
    case("iwae_vs_vae", "grid", ["--runs", "vae-1-5", "vae-1-1", *TINY_GRID], r"vae-1-1/checkpoint.npz holds a saved run"),
    case("latent_arithmetic", "finished", [], r"holds a saved run.*pass --checkpoint .*checkpoint.npz to use it"),

    # ---- --resume takes its settings from the checkpoint, and refuses a flag that contradicts it
    case("mnist_vae", "finished", ["--resume", "--hidden", "64"], r"--hidden 64 differs from the 32 that .*checkpoint.npz was trained with"),
    case("mnist_vae", "finished", ["--resume", "--hidden", "200", "200"], r"--hidden 200 200 differs from the 32"),
    case("mnist_vae", "finished", ["--resume", "--latent-dim", "50"], r"--latent-dim 50 differs from the 4"),
    case("mnist_vae", "finished", ["--resume", "--objective", "iwae"], r"--objective iwae differs from the elbo"),
    case("mnist_vae", "finished", ["--resume", "--k", "5"], r"--k 5 differs from the 1"),
    case("mnist_vae", "finished", ["--resume", "--lr", "0.01"], r"--lr 0.01 differs from the 0.001"),
    case("mnist_vae", "finished", ["--resume", "--schedule", "constant"], r"--schedule constant differs from the exp"),
    case("mnist_vae", "finished", ["--resume", "--likelihood", "gaussian"], r"--likelihood gaussian differs from the bernoulli"),
    case("mnist_vae", "finished", ["--resume", "--subset", "600"], r"--subset 600 differs from the 500"),
    case("mnist_vae", "finished", ["--resume", "--dataset", "fashion-mnist"], r"--dataset fashion-mnist differs from the mnist"),
    case("mnist_vae", "finished", ["--resume", "--batch-size", "50"], r"--batch-size 50 differs from the 100"),
    case("mnist_vae", "finished", ["--resume", "--seed", "1"], r"--seed 1 differs from the 0"),
    case("mnist_vae", "two-layer", ["--resume"], r"holds a TwoLayerVAE, which this script does not train.*iwae_vs_vae.py --resume"),
    case("iwae_vs_vae", "grid", ["--runs", "vae-1-1", "--resume", "--seed", "2", *TINY_GRID], r"--seed 2 differs from the 0"),
    case("iwae_vs_vae", "grid", ["--runs", "vae-1-1", "--resume", "--batch-size", "10", *TINY_GRID], r"--batch-size 10 differs from the 20"),
    case("iwae_vs_vae", "grid", ["--runs", "vae-1-1", "--resume", *TINY_GRID[:2], "--subset", "300"],
         r"was trained on --subset 400, this invocation on --subset 300"),
    case("iwae_vs_vae", "grid-mnist", ["--runs", "iwae-1-50", "--resume", *TINY_GRID],
         r"iwae-1-50/checkpoint.npz holds a VAE trained with elbo k=1, but run iwae-1-50 is a VAE trained with iwae k=50"),

    # ---- a damaged results.json is one sentence, and is left as it is
    case("iwae_vs_vae", "grid-truncated", ["--runs", "vae-1-5", *TINY_GRID], r"results.json is damaged: it is not valid JSON.*Move it away"),
    case("iwae_vs_vae", "grid-empty", ["--runs", "vae-1-5", *TINY_GRID], r"results.json is damaged: it is not valid JSON"),
    case("iwae_vs_vae", "grid-not-utf8", ["--runs", "vae-1-5", *TINY_GRID], r"results.json is damaged: it is not valid JSON"),
    case("iwae_vs_vae", "grid-dict", ["--runs", "vae-1-5", *TINY_GRID], r"results.json is damaged: it is not a JSON list of records"),
    case("iwae_vs_vae", "grid-no-names", ["--runs", "vae-1-5", *TINY_GRID], r"results.json is damaged: it is not a JSON list"),
]


@pytest.mark.parametrize("script, where, args, code, message", CASES)
def test_a_bad_input_is_one_sentence_and_no_file_changes(script, where, args, code, message,
                                                         tmp_path, capsys, finished, finished_grid):
    out = prepare(where, tmp_path, finished, finished_grid)
    before, before_finished = snapshot(out) if out.exists() else {}, snapshot(finished)
    args = [a.replace("{ckpt}", str(finished / "checkpoint.npz")) for a in args]
    if script not in COMMANDS:
        args += ["--out", str(out)]
    got, _, err = call(script, [*args, *data_args()], capsys)
    assert_one_clear_error(got, err, code, message)
    assert (snapshot(out) if out.exists() else {}) == before
    assert snapshot(finished) == before_finished


# ---------------------------------------------------------------- file-system faults

def test_an_out_that_is_a_file_is_one_sentence(tmp_path, capsys):
    (tmp_path / "out").write_text("mine")
    for script in ("mnist_vae", "beta_vae", "iwae_vs_vae", "gradient_variance"):
        code, _, err = call(script, ["--out", str(tmp_path / "out"), *data_args()], capsys)
        assert_one_clear_error(code, err, 2, r"--out .*out is a file, not a folder")
    code, _, err = call("mnist_vae", ["--out", str(tmp_path / "out" / "run"), *data_args()], capsys)
    assert_one_clear_error(code, err, 2, r"cannot write to --out .*out/run \(Not a directory\)")
    assert (tmp_path / "out").read_text() == "mine"


def chmod_binds(folder: Path) -> bool:
    """Whether removing write permission from ``folder`` stops this process (not so for root)."""
    return not os.access(folder, os.W_OK)


@pytest.mark.parametrize("inside", [False, True], ids=["out read-only", "out in a read-only folder"])
def test_a_read_only_out_is_one_sentence(tmp_path, capsys, finished, inside):
    locked = tmp_path / "locked"
    shutil.copytree(finished, locked)
    out = locked / "new" if inside else locked
    locked.chmod(0o555)
    try:
        if not chmod_binds(locked):
            pytest.skip("chmod does not bind here (running as root)")
        code, _, err = call("mnist_vae", [*TINY, "--overwrite", "--out", str(out), *data_args()],
                            capsys)
    finally:
        locked.chmod(0o755)
    assert_one_clear_error(code, err, 2, r"cannot write to --out .*\(Permission denied\)")
    assert snapshot(locked) == snapshot(finished)


def test_an_unwritable_out_is_one_sentence_where_chmod_does_not_bind(tmp_path, capsys, finished,
                                                                     monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    real = tempfile.TemporaryFile

    def temporary_file(*args, dir=None, **kwargs):          # as a read-only folder answers
        if dir is not None and Path(dir) == out:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, dir=dir, **kwargs)
    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)
    code, _, err = call("beta_vae", ["--out", str(out), *data_args()], capsys)
    assert_one_clear_error(code, err, 2, r"cannot write to --out .*\(Permission denied\)")
    assert snapshot(out) == snapshot(finished)


def locked_data_folder(tmp_path) -> Path:
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for f in (data_root() / "mnist").iterdir():
        (folder / f.name).symlink_to(f)
    return folder


def test_a_data_folder_without_search_permission_is_one_sentence(tmp_path, capsys):
    mnist()
    folder = locked_data_folder(tmp_path)
    folder.chmod(0o000)
    try:
        if os.access(folder, os.X_OK):
            pytest.skip("chmod does not bind here (running as root)")
        code, _, err = call("mnist_vae", ["--data-dir", str(folder), "--offline",
                                          "--out", str(tmp_path / "out")], capsys)
    finally:
        folder.chmod(0o755)
    assert_one_clear_error(code, err, 2, r"cannot look into .*mnist \(Permission denied\).*chmod u\+rx")


def test_a_data_folder_without_search_permission_where_chmod_does_not_bind(tmp_path, capsys,
                                                                          monkeypatch):
    mnist()
    folder = locked_data_folder(tmp_path)
    real = Path.is_file

    def is_file(self):                                     # as an unsearchable folder answers
        if str(self).startswith(str(folder) + os.sep):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)
    monkeypatch.setattr(Path, "is_file", is_file)
    code, _, err = call("beta_vae", ["--data-dir", str(folder), "--offline",
                                     "--out", str(tmp_path / "out")], capsys)
    assert_one_clear_error(code, err, 2, r"cannot look into .*mnist \(Permission denied\).*chmod u\+rx")


def no_space_left(*args):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("script, where, args, written", [
    ("mnist_vae", "finished", ["--resume", *TINY], "metrics.json"),            # nothing to train
    ("iwae_vs_vae", "grid", ["--runs", "vae-1-1", "--resume", *TINY_GRID], "results.json"),
])
def test_a_full_disk_leaves_the_old_files_whole(script, where, args, written, tmp_path, capsys,
                                                finished, finished_grid, monkeypatch):
    out = prepare(where, tmp_path, finished, finished_grid)
    before = snapshot(out)
    monkeypatch.setattr(os, "fsync", no_space_left)             # the write fails when flushed
    code, _, err = call(script, [*args, "--out", str(out), *data_args()], capsys)
    assert_one_clear_error(code, err, 2, rf"No space left on device: .*{written}; free some space")
    assert snapshot(out) == before                               # old files whole, no temporary


# ---------------------------------------------------------------- as the user runs them

def test_scripts_run_as_programs_print_no_traceback(tmp_path, finished):
    mnist()
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    before = snapshot(out)
    code, _, err = subprocess_call("mnist_vae", ["--k", "0", "--out", str(out)])
    assert_one_clear_error(code, err, 2, r"argument --k: must be at least 1, got 0")
    code, _, err = subprocess_call("mnist_vae", [*TINY, "--out", str(out), *data_args()])
    assert_one_clear_error(code, err, 2, r"holds a saved run.*--resume.*--overwrite")
    (out / "results.json").write_text("[{")
    code, _, err = subprocess_call("iwae_vs_vae", ["--runs", "vae-1-1", *TINY_GRID,
                                                   "--out", str(out), *data_args()])
    assert_one_clear_error(code, err, 2, r"results.json is damaged")
    (out / "results.json").unlink()
    assert snapshot(out) == before


def file_size_limit(n_bytes):
    def limit():
        import resource
        import signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)        # a write past it fails: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))
    return limit


@pytest.mark.parametrize("script, where, args, limit, written", [
    ("mnist_vae", "finished", ["--resume", *TINY], 512, "metrics.json"),     # nothing to train
    ("mnist_vae", "finished", ["--resume", *TINY, "--epochs", "2"], 64 * 1024, "checkpoint.npz"),
    ("iwae_vs_vae", "grid", ["--runs", "vae-1-1", "--resume", *TINY_GRID], 512, "results.json"),
], ids=["metrics.json", "checkpoint.npz", "results.json"])
def test_a_file_size_limit_leaves_the_old_files_whole(script, where, args, limit, written,
                                                      tmp_path, finished, finished_grid):
    pytest.importorskip("resource")
    out = prepare(where, tmp_path, finished, finished_grid)
    before = snapshot(out)
    code, _, err = subprocess_call(script, [*args, "--out", str(out), *data_args()],
                                   preexec_fn=file_size_limit(limit))
    assert_one_clear_error(code, err, 2, rf"File too large: .*{written}; the file-size limit")
    assert snapshot(out) == before                               # old files whole, no temporary


# ---------------------------------------------------------------- what run() reports

def failing(make):
    """A main that calls ``make()``, which raises."""
    def main(argv):
        make()
    return main


def refuse():
    raise CommandError("bad --out.")


def test_run_reports_minivae_refusals_and_raises_other_errors(capsys):
    import numpy as np
    assert run(failing(lambda: TrainConfig(epochs=0))) == 2          # the library's own check
    assert capsys.readouterr().err.startswith("error: epochs must be at least 1")
    assert run(failing(refuse)) == 2
    assert capsys.readouterr().err == "error: bad --out.\n"
    assert run(failing(lambda: open("/nonexistent/folder/x"))) == 2
    assert "No such file or directory: /nonexistent/folder/x" in capsys.readouterr().err
    with pytest.raises(ValueError):                                  # NumPy's: a bug, raised
        run(failing(lambda: np.zeros(2) + np.zeros(3)))
    with pytest.raises(TypeError):                                   # an operation failing
        run(failing(lambda: None + 1))


def test_raised_by_minivae_tells_a_check_from_a_failure():
    try:
        TrainConfig(schedule="sometimes")
    except ValueError as err:
        assert raised_by_minivae(err)
    try:
        json.loads("{")
    except ValueError as err:
        assert not raised_by_minivae(err)


def test_a_resume_accepts_flags_that_agree_with_its_checkpoint(tmp_path, capsys, finished):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    code, stdout, err = call("mnist_vae", ["--resume", *TINY, "--seed", "0", "--lr", "1e-3",
                                           "--out", str(out), *data_args()], capsys)
    assert code == 0, err
    assert "resuming" in stdout and (out / "checkpoint.npz").read_bytes() == \
        (finished / "checkpoint.npz").read_bytes()               # nothing left to train

"""The training guard: a NaN or a diverging loss stops training before anything is saved, with a
true message; no non-finite checkpoint is ever written; settings are checked where they enter;
killed writes leave the last checkpoint loadable and their temporaries are cleaned up."""
import os
import random
import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from minivae import VAE, Adam
from minivae.checkpoint import (STALE_AFTER_SECONDS, CheckpointError, load_checkpoint,
                                remove_stale_temporaries, save_checkpoint)
from minivae.train import NonFiniteLoss, TrainConfig, TrainingDiverged, train
from tests.realdata import REPO, mnist


def small_model(ds):
    model = VAE(latent_dim=8, encoder_hidden=(64,), decoder_hidden=(64,), seed=1)
    model.init_output_bias(ds.x_train[:2000].mean(0))
    return model


def saving_to(path, model, saved):
    """An on_epoch_end that saves every epoch to ``path`` and keeps the file's bytes."""
    def save(epoch, history, optimizer):
        save_checkpoint(path, model, optimizer, {"epoch": epoch + 1, "history": history})
        saved.append((epoch, path.read_bytes()))
    return save


def poison_steps_from(model, epoch_calls: int, poison):
    """Wrap model.loss_and_grads: from call number ``epoch_calls`` on, ``poison(grads)`` (the
    loss itself is untouched: it is measured before the step)."""
    real, calls = model.loss_and_grads, []

    def wrapped(x, *args, **kwargs):
        loss, grads, stats = real(x, *args, **kwargs)
        calls.append(kwargs.get("check_data"))
        if len(calls) > epoch_calls:
            grads = poison(grads)
        return loss, grads, stats
    model.loss_and_grads = wrapped
    return calls


# ---------------------------------------------------------------- NaN with one batch per epoch

def test_one_batch_per_epoch_nan_parameters_stop_training_and_keep_the_good_checkpoint(tmp_path):
    ds = mnist()
    model, ckpt, saved = small_model(ds), tmp_path / "checkpoint.npz", []
    # one batch per epoch; from epoch 2 on the step's gradient is NaN, the loss before it is not
    calls = poison_steps_from(model, 1, lambda g: {n: a * np.nan for n, a in g.items()})
    cfg = TrainConfig(epochs=4, batch_size=100, seed=3)
    lines = []
    with pytest.raises(NonFiniteLoss) as info:
        train(model, ds.x_train[:100], ds.x_test[:100], cfg,
              on_epoch_end=saving_to(ckpt, model, saved), log=lines.append)
    message = str(info.value)
    assert re.search(r"stopped in epoch 2: the test -ELBO is nan, encoder.0.W, .* hold NaN",
                     message)
    assert "the training loss" not in message                  # it was finite: the message says so
    assert message.endswith("check the data and the model's parameters.")
    assert "Epoch 2 was not saved: the last good checkpoint was kept" in message
    assert [e for e, _ in saved] == [0] and len(lines) == 1 and "nan" not in lines[0]
    assert ckpt.read_bytes() == saved[0][1]                     # byte-identical
    _, _, state = load_checkpoint(ckpt)
    assert state["epoch"] == 1
    assert calls == [False, False]            # the hot loop skips the per-step data check


def test_a_first_epoch_gone_nan_saves_nothing_and_says_so(tmp_path):
    ds = mnist()
    model, ckpt, saved = small_model(ds), tmp_path / "checkpoint.npz", []
    poison_steps_from(model, 0, lambda g: {n: a * np.nan for n, a in g.items()})
    with pytest.raises(NonFiniteLoss, match="epoch 1: .*Epoch 1 was not saved, and no checkpoint "
                                            "was written before it."):
        train(model, ds.x_train[:100], ds.x_test[:100], TrainConfig(epochs=2, batch_size=100),
              on_epoch_end=saving_to(ckpt, model, saved), log=lambda s: None)
    assert saved == [] and not ckpt.exists()


def test_non_finite_optimizer_state_alone_stops_training(tmp_path):
    ds = mnist()
    model = small_model(ds)
    opt = Adam(lr=1e-3, eps=1e-4)
    real_step = opt.step

    def step(params, grads):                  # the moments go NaN, the parameters stay finite
        real_step(params, grads)
        opt.state["v"]["decoder.1.b"][0] = np.nan
    opt.step = step
    with pytest.raises(NonFiniteLoss, match=r"epoch 1: Adam v/decoder.1.b hold NaN"):
        train(model, ds.x_train[:100], ds.x_test[:100], TrainConfig(epochs=2, batch_size=100),
              opt, log=lambda s: None)


def test_poisoned_parameters_are_refused_before_training():
    ds = mnist()
    model = small_model(ds)
    model.params["encoder.1.b"][3] = np.nan
    called = []
    with pytest.raises(NonFiniteLoss, match=r"stopped before training: encoder.1.b hold NaN .*"
                                            r"Nothing was trained or saved"):
        train(model, ds.x_train[:100], ds.x_test[:100], TrainConfig(epochs=2),
              on_epoch_end=lambda *a: called.append(a), log=lambda s: None)
    assert called == []


@pytest.mark.parametrize("bad, problem", [
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), "NaN|finite"),
    (lambda x: x * 255, r"\[0, 1\]"),
])
def test_bad_training_data_is_refused_once_before_training(bad, problem):
    ds = mnist()
    model = small_model(ds)
    with pytest.raises(ValueError, match=problem):
        train(model, bad(ds.x_train[:100]), ds.x_test[:100], TrainConfig(epochs=1),
              log=lambda s: None)
    with pytest.raises(ValueError, match=problem):
        train(model, ds.x_train[:100], bad(ds.x_test[:100]), TrainConfig(epochs=1),
              log=lambda s: None)
    with pytest.raises(ValueError, match="at least one row"):
        train(model, ds.x_train[:0], ds.x_test[:100], TrainConfig(epochs=1), log=lambda s: None)


# ---------------------------------------------------------------- divergence

@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # Adam's g^2 overflows on the way up
def test_a_learning_rate_rising_to_1e5_stops_before_saving_a_diverged_model(tmp_path):
    ds = mnist()
    model, ckpt, saved = small_model(ds), tmp_path / "checkpoint.npz", []
    cfg = TrainConfig(epochs=8, batch_size=100, schedule="exp", lr=1e-3, lr_end=1e5)
    with pytest.raises(NonFiniteLoss) as info:                # TrainingDiverged is one
        train(model, ds.x_train[:300], ds.x_test[:100], cfg,
              on_epoch_end=saving_to(ckpt, model, saved), log=lambda s: None)
    stopped = int(re.search(r"stopped in epoch (\d+)", str(info.value)).group(1))
    assert len(saved) == stopped - 1 >= 1 and ckpt.read_bytes() == saved[-1][1]
    assert "the last good checkpoint was kept" in str(info.value)
    _, _, state = load_checkpoint(ckpt)
    assert all(r["test_nelbo"] < 1000 and r["train_loss"] < 1000 for r in state["history"])


def test_a_loss_grown_a_hundredfold_is_divergence(tmp_path):
    ds = mnist()
    model, ckpt, saved = small_model(ds), tmp_path / "checkpoint.npz", []
    # in epoch 2 (one batch) the decoder's weights are multiplied by 10^4: finite, but far off
    real = model.loss_and_grads

    def blow_up(x, *args, **kwargs):
        out = real(x, *args, **kwargs)
        if len(saved) == 1:
            model.params["decoder.1.W"] *= 1e4
        return out
    model.loss_and_grads = blow_up
    with pytest.raises(TrainingDiverged) as info:
        train(model, ds.x_train[:100], ds.x_test[:100], TrainConfig(epochs=3, batch_size=100),
              on_epoch_end=saving_to(ckpt, model, saved), log=lambda s: None)
    message = str(info.value)
    assert re.search(r"stopped in epoch 2: the loss diverged: the test -ELBO reached \S+ nats, "
                     r"above the limit of \S+, which is the test -ELBO before training", message)
    assert "the last good checkpoint was kept" in message
    assert [e for e, _ in saved] == [0] and ckpt.read_bytes() == saved[0][1]


def test_a_normal_run_is_far_from_the_divergence_limit():
    ds = mnist()
    model = small_model(ds)
    history = train(model, ds.x_train[:500], ds.x_test[:100], TrainConfig(epochs=2, batch_size=50),
                    log=lambda s: None)
    assert len(history) == 2 and history[-1]["test_nelbo"] < 300


# ---------------------------------------------------------------- never a non-finite checkpoint

@pytest.mark.parametrize("where", ["parameter", "optimizer state"])
def test_save_checkpoint_refuses_non_finite_values_and_keeps_the_file(tmp_path, where):
    model = VAE(x_dim=10, latent_dim=3, encoder_hidden=(6,), decoder_hidden=(5,), seed=2)
    opt = Adam()
    x = (np.random.default_rng(0).random((4, 10)) < 0.5).astype(np.float32)
    opt.step(model.params, model.loss_and_grads(x)[1])
    path = save_checkpoint(tmp_path / "checkpoint.npz", model, opt, {"epoch": 1})
    good = path.read_bytes()
    if where == "parameter":
        model.params["decoder.0.W"][0, 0] = np.inf
        name = "params/decoder.0.W"
    else:
        opt.state["m"]["encoder.0.b"][1] = np.nan
        name = "optim/m/encoder.0.b"
    with pytest.raises(CheckpointError, match=rf"Refusing to write {re.escape(str(path))}: "
                                              rf"{name} hold NaN or infinite values; the file "
                                              r"already there \(if any\) is left as it was."):
        save_checkpoint(path, model, opt, {"epoch": 2})
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == [path.name]


# ---------------------------------------------------------------- TrainConfig, field by field

BAD_CONFIGS = [
    ("epochs", 0), ("epochs", -3), ("epochs", 2.5), ("epochs", "3"), ("epochs", True),
    ("epochs", None), ("batch_size", 0), ("k", 0), ("k", 2.5), ("eval_batch", 0),
    ("beta", -1.0), ("beta", float("nan")), ("beta", float("inf")), ("beta", "1"),
    ("lr", 0.0), ("lr", -0.01), ("lr", float("nan")), ("lr", float("inf")), ("lr_end", 0.0),
    ("lr_end", -1.0), ("adam_eps", 0.0), ("adam_eps", -1e-8), ("seed", -1), ("seed", 1.5),
    ("minutes", 0.0), ("minutes", -5), ("minutes", float("nan")), ("minutes", float("inf")),
    ("minutes", "5"), ("objective", "foo"), ("objective", None), ("schedule", "cosine"),
    ("schedule", None), ("optimizer", "rmsprop"), ("dataset", None), ("binarize", "yes"),
]


@pytest.mark.parametrize("field, value", BAD_CONFIGS, ids=[f"{f}={v!r}" for f, v in BAD_CONFIGS])
def test_a_bad_training_setting_is_one_sentence_naming_it_and_its_range(field, value):
    with pytest.raises(ValueError) as info:
        TrainConfig(**{field: value})
    message = str(info.value)
    named = field in message or field.replace("_", " ") in message
    assert named and repr(value) in message and "\n" not in message, message
    assert re.search(r"at least|above|choose one of|True or False|a string", message), message


def test_good_training_settings_are_accepted():
    TrainConfig(beta=0.0, minutes=None, k=np.int64(5), epochs=1, seed=0, lr=5, lr_end=1e-9)
    TrainConfig(minutes=0.5, objective="iwae", schedule="iwae", optimizer="sgd")


# ---------------------------------------------------------------- stale temporaries

def dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


def test_stale_temporaries_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    dead, alive = dead_pid(), os.getpid()
    old = time.time() - 2 * STALE_AFTER_SECONDS
    names = {
        f".checkpoint.npz.{dead}.k3j_x9a2.tmp": ("old", "removed"),       # a killed write
        ".checkpoint.npz.q8w2e_r1.tmp": ("old", "removed"),               # minivae 0.2's naming
        f".checkpoint.npz.{dead}.fresh001.tmp": ("new", "kept"),          # too recent
        ".checkpoint.npz.fresh002.tmp": ("new", "kept"),
        f".checkpoint.npz.{alive}.running.tmp": ("old", "kept"),          # its writer runs
        f".other.npz.{dead}.abcdefgh.tmp": ("old", "kept"),               # another file's
        f".checkpoint.npz.{dead}.tmp": ("old", "kept"),                   # not minivae's pattern
        f"checkpoint.npz.{dead}.abcdefgh.tmp": ("old", "kept"),
        f".checkpoint.npz.{dead}.abcdefgh.tmp.bak": ("old", "kept"),
        ".checkpoint.npz.0.abcdefgh.tmp": ("old", "kept"),               # pid 0 is no process
        f".checkpoint.npz.{dead}.ABCDEFGH.tmp": ("old", "kept"),          # mkstemp: lower case
        "notes.tmp": ("old", "kept"),
    }
    for name, (age, _) in names.items():
        (tmp_path / name).write_bytes(b"partial")
        if age == "old":
            os.utime(tmp_path / name, (old, old))
    link = tmp_path / f".checkpoint.npz.{dead}.linkxxxx.tmp"
    link.symlink_to(tmp_path / "notes.tmp")
    folder = tmp_path / f".checkpoint.npz.{dead}.folderxx.tmp"
    folder.mkdir()
    for p in (link, folder):
        os.utime(p, (old, old), follow_symlinks=False)

    model = VAE(x_dim=10, latent_dim=3, encoder_hidden=(6,), decoder_hidden=(5,), seed=2)
    save_checkpoint(tmp_path / "checkpoint.npz", model)
    left = {p.name for p in tmp_path.iterdir()}
    assert left == ({n for n, (_, fate) in names.items() if fate == "kept"}
                    | {"checkpoint.npz", link.name, folder.name})
    later = time.time() + 2 * STALE_AFTER_SECONDS               # once the fresh ones are old
    removed = remove_stale_temporaries(tmp_path / "checkpoint.npz", now=later)
    assert {p.name for p in removed} == {f".checkpoint.npz.{dead}.fresh001.tmp",
                                         ".checkpoint.npz.fresh002.tmp"}


# ---------------------------------------------------------------- kill -9

CHILD = textwrap.dedent(r"""
    import io, sys, time
    from pathlib import Path
    import numpy as np
    from minivae import VAE
    from minivae.checkpoint import load_checkpoint, save_checkpoint
    from minivae.optim import Adam
    from minivae.train import TrainConfig, config_dict, train

    ckpt, mode, arg = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])

    def pause():                          # wait here to be killed
        print("PAUSED", flush=True)
        time.sleep(120)

    if mode == "pause-at-step":           # after step int(arg) of this run
        real_step, steps = Adam.step, []
        def step(self, params, grads):
            real_step(self, params, grads)
            steps.append(1)
            if len(steps) == int(arg):
                pause()
        Adam.step = step
    if mode == "pause-in-write":          # with a fraction arg of the checkpoint written
        real_savez = np.savez
        def savez(f, **arrays):
            buf = io.BytesIO()
            real_savez(buf, **arrays)
            data = buf.getvalue()
            f.write(data[:int(arg * len(data))])
            f.flush()
            pause()
        np.savez = savez
    x = np.random.default_rng(0).random((800, 784), dtype=np.float32)      # grey levels in [0, 1)
    if ckpt.exists():
        model, opt, state = load_checkpoint(ckpt)
        cfg, start, history = TrainConfig(**state["config"]), state["epoch"], state["history"]
    else:
        model = VAE(latent_dim=10, encoder_hidden=(128,), decoder_hidden=(128,), seed=0)
        cfg = TrainConfig(epochs=12, batch_size=50, schedule="exp")
        opt, start, history = None, 0, []
    print("READY", start, flush=True)
    train(model, x[:700], x[700:], cfg, opt, start, history, progress=False,
          on_epoch_end=lambda e, h, o: save_checkpoint(
              ckpt, model, o, {"config": config_dict(cfg), "epoch": e + 1, "history": h}),
          log=lambda line: print(line, flush=True))
    print("DONE", flush=True)
""")


def start_child(script, ckpt, mode="plain", arg=0.0):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(ckpt), mode, str(arg)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc, word) -> bool:
    """Read the child's lines until one starts with ``word`` (True), or it ends (False)."""
    return any(line.startswith(word) for line in proc.stdout)


def test_kill_9_at_random_moments_and_during_writes_then_resume_finishes(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ckpt = tmp_path / "run" / "checkpoint.npz"
    rng = random.Random(7)
    # 12 epochs of 14 steps: the kills below take at most 3 x 30 steps, so the run never ends
    # before the final resume; a write is killed with 10-90 % of it on disk
    trials = [("pause-at-step", rng.randint(1, 30)), ("pause-in-write", rng.uniform(0.1, 0.9)),
              ("pause-at-step", rng.randint(1, 30)), ("pause-in-write", rng.uniform(0.1, 0.9)),
              ("pause-at-step", rng.randint(1, 30)), ("wall-clock", rng.uniform(0.0, 0.5))]
    epochs_seen, killed = [], []
    for mode, arg in trials:
        proc = start_child(script, ckpt, "plain" if mode == "wall-clock" else mode, arg)
        assert wait_for(proc, "READY")
        if mode == "wall-clock":
            time.sleep(arg)                              # wherever it is: training, a write
        else:
            assert wait_for(proc, "PAUSED"), proc.stderr.read()
        proc.kill()                                      # SIGKILL: no cleanup of any kind
        proc.communicate()
        killed.append(proc.pid)
        if ckpt.exists():
            _, opt, state = load_checkpoint(ckpt)        # always loads, with its Adam state
            assert opt.t > 0 and state["epoch"] == len(state["history"])
            epochs_seen.append(state["epoch"])
        if mode == "pause-in-write":                     # the partial temporary is left behind
            assert list(ckpt.parent.glob(f".checkpoint.npz.{proc.pid}.*.tmp"))
    assert epochs_seen == sorted(epochs_seen) and 0 < epochs_seen[-1] < 12

    proc = start_child(script, ckpt)                     # resume, to the end
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "DONE" in out, err
    model, _, state = load_checkpoint(ckpt)
    assert state["epoch"] == 12 and [r["epoch"] for r in state["history"]] == list(range(1, 13))

    reference = tmp_path / "uninterrupted" / "checkpoint.npz"     # the same run, never killed
    start_child(script, reference).communicate(timeout=300)
    uninterrupted, _, _ = load_checkpoint(reference)
    for name, p in uninterrupted.params.items():
        np.testing.assert_array_equal(model.params[name], p, err_msg=name)

    temps = sorted(ckpt.parent.glob(".checkpoint.npz.*.tmp"))     # the killed writes' leftovers
    assert temps and all(int(t.name.split(".")[3]) in killed for t in temps)
    old = time.time() - 2 * STALE_AFTER_SECONDS
    for t in temps:
        os.utime(t, (old, old))
    save_checkpoint(ckpt, model)                         # the next save cleans them up
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["checkpoint.npz"]

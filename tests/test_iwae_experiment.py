"""examples/iwae_vs_vae.py end to end on a tiny budget: results.json, the table beside the paper."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from minivae.checkpoint import load_checkpoint, save_checkpoint
from minivae.train import TrainConfig
from tests.realdata import REPO, data_root, mnist


def run(out, *args, passes=1):
    cmd = [sys.executable, str(REPO / "examples" / "iwae_vs_vae.py"), *args,
           "--passes", str(passes), "--subset", "400", "--eval-k", "4", "--eval-n", "50",
           "--data-dir", str(data_root()), "--offline", "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_experiment_writes_results_beside_the_paper_and_runs_table2(tmp_path):
    mnist()
    out = tmp_path / "iwae"
    r = run(out, "--runs", "iwae-2-5", "--table2")        # trains vae-1-1 and iwae-1-50 first
    assert r.returncode == 0, r.stderr
    results = {x["run"]: x for x in json.loads((out / "results.json").read_text())}
    assert set(results) == {"iwae-2-5", "vae-1-1", "iwae-1-50", "vae-1-1+iwae-50",
                            "iwae-1-50+vae-50"}
    two = results["iwae-2-5"]
    assert two["paper"] == [83.89, "21+5"] and "+" in two["active_units"]
    assert two["passes"] == 1 and two["eval_k"] == 4 and two["test_nll"] > 0
    assert two["backend"] == "numpy" and "protocol" in two and two["train_seconds"] > 0
    assert results["vae-1-1+iwae-50"]["paper"] == [84.88, "22"]
    table = (out / "results.md").read_text()
    assert "| iwae-2-5 | iwae | 2 | 5 | 1 (iwae over 1 passes) | 20 |" in table and "83.89" in table and "Protocol:" in table
    assert (out / "vae-1-1" / "checkpoint.npz").exists()

    r = run(out, "--runs", "vae-1-5")                     # a later run adds to the same table
    assert r.returncode == 0, r.stderr
    assert len(json.loads((out / "results.json").read_text())) == 6


def test_unknown_run_name_is_a_clear_error(tmp_path):
    r = run(tmp_path, "--runs", "iwae-3-50")
    assert r.returncode != 0 and "unknown run 'iwae-3-50'" in r.stderr and "Traceback" not in r.stderr


def test_a_stopped_run_resumes_where_it_stopped_and_a_table2_run_can_be_named(tmp_path):
    mnist()
    out = tmp_path / "iwae"
    r = run(out, "--runs", "vae-1-1")                   # a budget of one pass (run() says so)
    assert r.returncode == 0, r.stderr
    first = json.loads((out / "results.json").read_text())[0]
    assert first["passes"] == 1
    r = subprocess.run([sys.executable, str(REPO / "examples" / "iwae_vs_vae.py"),
                        "--runs", "vae-1-1", "--resume",
                        "--passes", "3", "--minutes", "100", "--schedule", "exp",
                        "--subset", "400", "--eval-k", "4", "--eval-n", "50",
                        "--data-dir", str(data_root()), "--offline", "--out", str(out)],
                       capture_output=True, text=True,
                       timeout=600, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert "resuming after pass 1" in r.stdout and "schedule exp from pass 2 on" in r.stdout
    assert "100-minute budget from pass 2 on" in r.stdout     # the first run had no time budget
    resumed = json.loads((out / "results.json").read_text())[0]
    assert resumed["passes"] == 3 and resumed["train_seconds"] > first["train_seconds"]
    assert resumed["schedule"] == ("iwae for pass 1, then exp over 3 passes, "
                                   "100-minute budget from pass 2")
    _, _, state = load_checkpoint(out / "vae-1-1" / "checkpoint.npz", with_optimizer=False)
    lrs = [h["lr"] for h in state["history"]]        # the paper's last stage, then exp from 1e-3
    assert lrs[0] == pytest.approx(1e-4) and all(9e-4 < lr <= 1e-3 for lr in lrs[1:])

    r = run(out, "--runs", "vae-1-1+iwae-50")           # starts from the vae-1-1 just trained
    assert r.returncode == 0, r.stderr
    results = {x["run"]: x for x in json.loads((out / "results.json").read_text())}
    assert set(results) == {"vae-1-1", "vae-1-1+iwae-50"}
    assert results["vae-1-1+iwae-50"]["k"] == 50 and results["vae-1-1"]["passes"] == 3


def test_the_report_names_every_budget_a_run_trained_under():
    path = REPO / "examples" / "iwae_vs_vae.py"
    spec = importlib.util.spec_from_file_location("iwae_vs_vae", path)
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    cfg = TrainConfig(schedule="iwae", epochs=3280, minutes=1800)
    record = {"schedules": [[0, "exp"], [18, "iwae"]], "budgets": [[0, 1200], [1009, 1800]]}
    assert experiment.schedule_text(cfg, record) == ("exp for passes 1-18, then iwae over 3280 passes, "
                                             "1200-minute budget, then 1800-minute budget from "
                                             "pass 1010")
    assert experiment.schedule_text(TrainConfig(schedule="iwae", epochs=3280, minutes=1200)) == (
        "iwae over 3280 passes, 1200-minute budget")
    assert experiment.schedule_text(TrainConfig(schedule="iwae", epochs=3280)) == (
        "iwae over 3280 passes")


def test_a_parameters_only_checkpoint_resumes_with_a_fresh_adam_and_the_report_says_so(tmp_path):
    mnist()
    out = tmp_path / "iwae"
    assert run(out, "--runs", "vae-1-1").returncode == 0
    path = out / "vae-1-1" / "checkpoint.npz"
    model, optimizer, state = load_checkpoint(path)
    assert optimizer is not None
    save_checkpoint(path, model, None, state)            # as shipped in checkpoints/: no Adam state
    r = run(out, "--runs", "vae-1-1", "--resume", passes=2)
    assert r.returncode == 0, r.stderr
    assert "no Adam state: Adam starts afresh (zero moments) from pass 2" in r.stdout
    r = run(out, "--runs", "vae-1-1", "--resume", passes=3)   # now with Adam state again
    assert r.returncode == 0, r.stderr
    assert "no Adam state" not in r.stdout
    result = json.loads((out / "results.json").read_text())[0]
    assert result["passes"] == 3
    assert result["schedule"] == "iwae over 3 passes, Adam restarted at pass 2"
    _, optimizer, state = load_checkpoint(path)
    assert state["campaign"]["adam_restarts"] == [1] and optimizer.t > 0


def test_a_shipped_checkpoint_resumes_with_its_record(tmp_path):
    mnist()
    out = tmp_path / "iwae"
    (out / "iwae-2-50").mkdir(parents=True)
    shutil.copy(REPO / "checkpoints" / "iwae-2-50.npz", out / "iwae-2-50" / "checkpoint.npz")
    r = run(out, "--runs", "iwae-2-50", "--resume", passes=1566)   # one pass more than it has
    assert r.returncode == 0, r.stderr
    assert "resuming after pass 1565" in r.stdout and "no Adam state" in r.stdout
    result = json.loads((out / "results.json").read_text())[0]
    assert result["passes"] == 1566 and result["schedule"] == (
        "iwae over 1566 passes, Adam restarted at pass 746, Adam restarted at pass 1566")
    _, _, state = load_checkpoint(out / "iwae-2-50" / "checkpoint.npz", with_optimizer=False)
    assert "extra" not in state["config"]                  # the record moved out of the config
    assert state["campaign"] == {"adam_restarts": [745, 1565]}


def test_an_estimator_run_is_named_for_it_recorded_and_resumed_with_it(tmp_path):
    mnist()
    out = tmp_path / "iwae"
    r = run(out, "--runs", "iwae-1-5", "--estimator", "dreg")
    assert r.returncode == 0, r.stderr
    assert "== dreg-1-5: iwae k=5, dreg gradient" in r.stdout
    result = json.loads((out / "results.json").read_text())[0]
    assert result["run"] == "dreg-1-5" and result["estimator"] == "dreg"
    assert result["paper"] is None and "m" not in result      # Burda et al. had no DReG run
    assert "| dreg-1-5 | iwae | 1 | 5 | 1 (iwae over 1 passes) | 20 | dreg |" in (
        out / "results.md").read_text()
    path = out / "dreg-1-5" / "checkpoint.npz"
    _, _, state = load_checkpoint(path, with_optimizer=False)
    assert state["config"]["estimator"] == "dreg"

    r = run(out, "--runs", "iwae-1-5", "--estimator", "dreg", "--resume", passes=2)
    assert r.returncode == 0, r.stderr
    assert "resuming after pass 1" in r.stdout and "dreg gradient" in r.stdout
    _, _, state = load_checkpoint(path, with_optimizer=False)
    assert state["config"]["estimator"] == "dreg" and state["epoch"] == 2

    (out / "iwae-1-5").mkdir()                  # another estimator is another run: refused here
    shutil.copy(path, out / "iwae-1-5" / "checkpoint.npz")
    r = run(out, "--runs", "iwae-1-5", "--resume", passes=3)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "holds a VAE trained with iwae k=5, dreg gradient, but run iwae-1-5" in r.stderr

    r = run(out, "--runs", "iwae-1-5", "--estimator", "miwae", "--m", "2")
    assert r.returncode == 0, r.stderr
    results = {x["run"]: x for x in json.loads((out / "results.json").read_text())}
    assert results["miwae-1-5"]["m"] == 2 and results["dreg-1-5"]["passes"] == 2
    assert "| 20 | miwae (m=2) |" in (out / "results.md").read_text()
    r = run(out, "--runs", "iwae-1-5", "--estimator", "miwae", "--m", "3", "--resume")
    assert r.returncode == 2 and "--m 3 differs from the 2" in r.stderr


@pytest.mark.parametrize("flags, message", [
    (["--runs", "vae-1-1", "iwae-1-1", "--estimator", "dreg"],
     "--estimator dreg is for the iwae runs, not vae-1-1"),
    (["--runs", "iwae-1-50+vae-50", "--estimator", "ciwae"],
     "--estimator ciwae is for the iwae runs, not iwae-1-50+vae-50"),
    (["--runs", "iwae-2-5", "--estimator", "stl"],
     "--estimator stl needs one stochastic layer"),
    (["--runs", "iwae-1-5", "--estimator", "dreg", "--m", "2"],
     "--m is read only by --estimator miwae or piwae"),
])
def test_an_estimator_a_run_cannot_take_is_refused_before_training(tmp_path, flags, message):
    r = run(tmp_path, *flags)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())                       # nothing trained, nothing written

"""minivae.runs: what the example scripts share apart from their flags (the data subset, the
model, the checkpoint's train dict, the files a run writes)."""
import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from minivae.data import Dataset
from minivae.runs import (build_vae, markdown_table, train_config, train_state, training_subset,
                          update_records, write_figures, write_metrics)
from minivae.train import TrainConfig, config_dict


def test_write_figures_prints_what_was_written_or_why_nothing_was(capsys):
    assert write_figures(lambda a, b: [Path(a) / "x.png", f"{b}/y.png"], "out", "out") == \
        [Path("out/x.png"), "out/y.png"]
    assert capsys.readouterr().out == "figures: x.png, y.png\n"

    def no_matplotlib():
        raise ImportError("No module named 'matplotlib'")
    assert write_figures(no_matplotlib) == []
    assert "figures skipped: matplotlib is not installed" in capsys.readouterr().out


def test_write_metrics_replaces_the_file_whole_or_not_at_all(tmp_path):
    path = tmp_path / "new" / "metrics.json"
    metrics = {"test_nll": 86.5, "history": [{"epoch": 1}], "name": "vae-1-1"}
    assert write_metrics(path, metrics) == path
    assert path.read_text() == json.dumps(metrics, indent=1)
    write_metrics(path, [1, 2])                                   # over an existing file
    assert json.loads(path.read_text()) == [1, 2]
    with pytest.raises(TypeError):                                # not JSON: fails mid-write
        write_metrics(path, {"a": 1, "b": object()})
    assert json.loads(path.read_text()) == [1, 2]                 # the old file, untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]   # no temp file


def test_update_records_replaces_by_key_in_place_and_appends_the_new(tmp_path):
    path = tmp_path / "results.json"
    assert update_records(path, [{"run": "a", "v": 1}, {"run": "b", "v": 2}], key="run") == \
        [{"run": "a", "v": 1}, {"run": "b", "v": 2}]                    # no file yet
    merged = update_records(path, [{"run": "c", "v": 3}, {"run": "a", "v": 4}], key="run")
    assert merged == [{"run": "a", "v": 4}, {"run": "b", "v": 2}, {"run": "c", "v": 3}]
    assert json.loads(path.read_text()) == merged


def test_markdown_table_writes_a_header_a_rule_and_a_line_per_row():
    assert markdown_table(["run", "k", "NLL"], [["vae-1-1", 1, 86.76], ["iwae", 50, "-"]]) == [
        "| run | k | NLL |", "|---|---|---|", "| vae-1-1 | 1 | 86.76 |", "| iwae | 50 | - |"]


def test_training_subset_cuts_images_and_labels_alike():
    x, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    ds = Dataset(x, y, x[:2], y[:2], "mnist", Path("."), tuple("0123456789"))
    sub = training_subset(ds, 3)
    np.testing.assert_array_equal(sub.x_train, x[:3])
    np.testing.assert_array_equal(sub.y_train, y[:3])
    assert sub.x_test is ds.x_test and sub.name == "mnist"
    assert training_subset(ds, None) is ds


def test_build_vae_mirrors_the_encoder_and_starts_at_the_mean_image():
    x = np.random.default_rng(0).uniform(0.1, 0.9, (20, 6)).astype(np.float32)
    args = Namespace(latent_dim=2, hidden=[8, 4], seed=3)          # a script without --activation
    model = build_vae(args, x, "numpy")
    assert model.config["encoder_hidden"] == [8, 4] and model.config["decoder_hidden"] == [4, 8]
    assert model.config["activation"] == "tanh" and model.config["seed"] == 3
    z = model.xp.zeros((1, 2), dtype=model.dtype)                  # decode ~ mean at init
    assert np.abs(model.decode(z) - x.mean(axis=0)).max() < 0.2


def test_a_saved_config_comes_back_without_another_programs_record():
    cfg = TrainConfig(epochs=30, schedule="exp", minutes=100.0)
    state = train_state(cfg, 12, [], campaign={"adam_restarts": [3]})
    assert state["config"] == config_dict(cfg) and state["epoch"] == 12
    assert state["dataset"] == "mnist" and state["binarize"] and state["campaign"]
    saved = {**state["config"], "extra": {"adam_restarts": [3]}}   # as in checkpoints/*.npz
    assert train_config(saved, epochs=40) == TrainConfig(epochs=40, schedule="exp", minutes=100.0)

"""Checkpoints: round trip, a documented format readable without minivae, atomic writes, bad files."""
import json
import zipfile

import numpy as np
import pytest

from minivae.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests.models import trained_pair


def test_round_trip_restores_model_optimizer_and_train_state(tmp_path):
    model, opt = trained_pair()
    path = save_checkpoint(tmp_path / "a" / "ckpt.npz", model, opt, {"epoch": 3, "seed": 1})
    loaded, lopt, train = load_checkpoint(path)
    assert loaded.config == model.config and train == {"epoch": 3, "seed": 1}
    for n, p in model.params.items():
        np.testing.assert_array_equal(loaded.params[n], p)
    assert lopt.t == opt.t == 3 and lopt.eps == 1e-4
    for slot in ("m", "v"):
        for n in model.params:
            np.testing.assert_array_equal(lopt.state[slot][n], opt.state[slot][n])


def test_format_is_readable_with_numpy_alone(tmp_path):
    model, opt = trained_pair()
    path = save_checkpoint(tmp_path / "ckpt.npz", model, opt, {"epoch": 3})
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz["config.json"].tobytes())
        W = npz["params/encoder.0.W"]
        assert "optim/m/encoder.0.W" in npz.files
    assert meta["format"] == "minivae-checkpoint" and meta["version"] == 1
    assert meta["model"]["type"] == "VAE" and meta["model"]["latent_dim"] == 3
    assert meta["optimizer"]["type"] == "Adam" and meta["optimizer"]["t"] == 3
    assert W.shape == (10, 6) and W.dtype == np.float32


def test_a_crash_while_saving_leaves_the_last_good_checkpoint(tmp_path, monkeypatch):
    model, opt = trained_pair()
    path = save_checkpoint(tmp_path / "ckpt.npz", model, opt, {"epoch": 1})
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")
    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, opt, {"epoch": 2})
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]        # no temporary left behind


def test_unusable_checkpoints_are_clear_errors(tmp_path):
    model, opt = trained_pair()
    path = save_checkpoint(tmp_path / "ckpt.npz", model, opt)
    with pytest.raises(CheckpointError, match="No checkpoint at .*missing.npz"):
        load_checkpoint(tmp_path / "missing.npz")

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated.npz is not a readable checkpoint"):
        load_checkpoint(truncated)

    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a minivae checkpoint"):
        load_checkpoint(other)

    def rewrite(name, edit):
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        edit(arrays)
        target = tmp_path / name
        np.savez(target, **arrays)
        return target

    def nan_param(arrays):
        arrays["params/decoder.0.W"] = arrays["params/decoder.0.W"] * np.nan
    with pytest.raises(CheckpointError, match="non-finite values in decoder.0.W"):
        load_checkpoint(rewrite("nan.npz", nan_param))

    def other_architecture(arrays):
        meta = json.loads(arrays["config.json"].tobytes())
        meta["model"]["latent_dim"] = 4
        arrays["config.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with pytest.raises(CheckpointError, match="architecture differs"):
        load_checkpoint(rewrite("arch.npz", other_architecture))

    def newer(arrays):
        meta = json.loads(arrays["config.json"].tobytes())
        meta["version"] = 99
        arrays["config.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with pytest.raises(CheckpointError, match="newer than this minivae reads"):
        load_checkpoint(rewrite("newer.npz", newer))
    assert zipfile.is_zipfile(path)

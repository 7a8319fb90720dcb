r"""Checkpoints: one ``.npz`` file of named arrays plus a JSON document, written atomically.

The format, readable without minivae (``numpy.load(path, allow_pickle=False)``):

    params/<name>          float arrays, the model's parameters, e.g. ``params/encoder.0.W`` (784, 200)
    optim/<slot>/<name>    the optimizer's per-parameter state, e.g. ``optim/m/encoder.0.W``
    config.json            uint8 array: UTF-8 JSON, read with ``json.loads(a.tobytes())``:
        format, version    "minivae-checkpoint", 1
        model              {"type": "VAE", "x_dim", "latent_dim", "encoder_hidden", "decoder_hidden",
                            "activation", "likelihood", "sigma", "dtype", "seed"}, or for
                           "TwoLayerVAE" "h1_dim", "h2_dim", "x_hidden", "h_hidden" in place of
                           the sizes (the constructor's arguments, by name)
        optimizer          {"type": "Adam", "t": steps taken, "hyper": {"lr", "beta1", "beta2", "eps"}}
        train              the training configuration, "epoch" (epochs completed) and "history"

Saving writes a temporary file beside the target, flushes it to disk and renames it over the
target (``os.replace``), so a crash leaves either the old checkpoint or the new one, never half
of one.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .backend import to_host
from .model import VAE
from .optim import make_optimizer
from .two_layer import TwoLayerVAE

FORMAT, VERSION = "minivae-checkpoint", 1
MODEL_TYPES = {"VAE": VAE, "TwoLayerVAE": TwoLayerVAE}


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit; the message names the file and the fix."""


def save_checkpoint(path, model, optimizer=None, train: dict | None = None) -> Path:
    """Write ``model`` (and ``optimizer``, and the ``train`` dict) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": VERSION,
            "model": {"type": type(model).__name__, **model.config},
            "optimizer": None, "train": train or {}}
    arrays = {f"params/{n}": to_host(p) for n, p in model.params.items()}
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = {k: state[k] for k in ("type", "t", "hyper")}
        arrays.update({f"optim/{k}": to_host(a) for k, a in state["arrays"].items()})
    arrays["config.json"] = np.frombuffer(json.dumps(meta, indent=1).encode(), dtype=np.uint8)

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)                  # mkstemp makes 0600; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path) -> tuple[dict, dict]:
    """Return ``(meta, arrays)`` from a checkpoint file, checking that it is one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}: check the path, or train one with "
                              "examples/mnist_vae.py --out DIR.")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err}); "
                              "it may be truncated or corrupt: use another checkpoint or retrain.") \
            from None
    try:
        meta = json.loads(arrays.pop("config.json").tobytes())
        is_checkpoint = (isinstance(meta, dict) and meta.get("format") == FORMAT
                         and isinstance(meta.get("version"), int))
    except (KeyError, ValueError, TypeError):
        is_checkpoint = False
    if not is_checkpoint:
        raise CheckpointError(f"{path} is an .npz file but not a minivae checkpoint (no valid "
                              "config.json entry): point to a file written by minivae.") from None
    if meta["version"] > VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {meta['version']}, newer than "
                              f"this minivae reads ({VERSION}): upgrade minivae.")
    return meta, arrays


def load_checkpoint(path, backend="numpy", with_optimizer: bool = True):
    """Rebuild ``(model, optimizer, train)`` from ``path`` on ``backend``.

    ``optimizer`` is None when the checkpoint has none or ``with_optimizer`` is False.
    """
    meta, arrays = read_checkpoint(path)
    cfg = dict(meta["model"])
    model_type = cfg.pop("type", "VAE")
    if model_type not in MODEL_TYPES:
        raise CheckpointError(f"{path} holds a model of type {model_type!r}, which this minivae "
                              f"does not know ({', '.join(MODEL_TYPES)}): upgrade minivae.")
    try:
        model = MODEL_TYPES[model_type](**cfg, backend=backend)
        params = {k[len("params/"):]: a for k, a in arrays.items() if k.startswith("params/")}
        bad = [n for n, a in params.items() if not np.all(np.isfinite(a))]
        if bad:
            raise ValueError(f"non-finite values in {', '.join(bad)}")
        model.load_params(params)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path} cannot be loaded: {err}. Use another checkpoint.") from None

    optimizer = None
    if with_optimizer and meta.get("optimizer"):
        o = meta["optimizer"]
        optimizer = make_optimizer(o["type"].lower(), **o["hyper"])
        optimizer.load_state_dict(
            {"type": o["type"], "t": o["t"], "hyper": o["hyper"],
             "arrays": {k[len("optim/"):]: a for k, a in arrays.items() if k.startswith("optim/")}},
            xp=model.xp)
    return model, optimizer, meta.get("train", {})

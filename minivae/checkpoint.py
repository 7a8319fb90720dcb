r"""Checkpoints: one ``.npz`` file of named arrays plus a JSON document, written atomically.

The format, readable without minivae (``numpy.load(path, allow_pickle=False)``):

    params/<name>          float arrays, the model's parameters, e.g. ``params/encoder.0.W`` (784, 200)
    optim/<slot>/<name>    the optimizer's per-parameter state, e.g. ``optim/m/encoder.0.W``
    config.json            uint8 array: UTF-8 JSON, read with ``json.loads(a.tobytes())``:
        format, version    "minivae-checkpoint", 1
        model              {"type": "VAE", "x_dim", "latent_dim", "encoder_hidden", "decoder_hidden",
                            "activation", "likelihood", "sigma", "dtype", "seed"}, or for
                           "TwoLayerVAE" "h1_dim", "h2_dim", "x_hidden", "h_hidden" in place of
                           the sizes, for "ConvVAE" "image_shape", "latent_dim", "channels"
                           (the constructor's arguments, by name)
        optimizer          {"type": "Adam", "t": steps taken, "hyper": {"lr", "beta1", "beta2", "eps"}},
                           or null
        train              the training configuration, "epoch" (epochs completed) and "history"

Saving refuses parameters or optimizer state that are not finite, then writes a temporary file
``.<name>.<pid>.<random>.tmp`` beside the target, flushes it to disk and renames it over the
target (``os.replace``), so a crash leaves either the old checkpoint or the new one, never half
of one.  A process killed mid-write leaves its temporary behind; the next save of the same
checkpoint removes it (:func:`remove_stale_temporaries` says when that is safe).

Loading (:func:`read_checkpoint`, and :func:`load_checkpoint` on top of it, the one loader every
command uses) checks everything before it allocates anything large: the zip's members (each an
``.npy``), the JSON schema (``config.json``: format, version, the model's type and constructor
arguments, the optimizer's type, step count and hyperparameters, the training configuration),
then every array's ``.npy`` header (dtype float32 or float64; the shape the architecture in
``config.json`` needs; a data size equal to what the zip member holds, so a header declaring
2^40 items is refused without reading it), and only then the arrays and their finiteness.  Every
problem is one :class:`CheckpointError` sentence naming the file.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import re
import stat
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .backend import to_host
from .layers import ACTIVATIONS
from .likelihoods import LIKELIHOODS, make_likelihood
from .conv_vae import ConvVAE
from .model import VAE
from .optim import OPTIMIZERS
from .train import TrainConfig
from .two_layer import TwoLayerVAE

FORMAT, VERSION = "minivae-checkpoint", 1
MODEL_TYPES = {"VAE": VAE, "TwoLayerVAE": TwoLayerVAE, "ConvVAE": ConvVAE}
OPTIMIZER_TYPES = {cls.__name__: cls for cls in OPTIMIZERS.values()}   # "Adam", "SGD", "Adagrad"
FLOAT_DTYPES = ("float32", "float64")
MAX_CONFIG_BYTES = 64 * 2 ** 20     # config.json: a 3,280-pass history is under 1 MB
MAX_DEFLATE_RATIO = 1032            # deflate never expands data by more than 1032:1
STALE_AFTER_SECONDS = 60.0          # an unfinished temporary untouched this long is a dead write's


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit; the message names the file and the fix."""


# ---------------------------------------------------------------- saving

def save_checkpoint(path, model, optimizer=None, train: dict | None = None) -> Path:
    """Write ``model`` (and ``optimizer``, and the ``train`` dict) to ``path`` atomically.

    Raises :class:`CheckpointError`, and leaves any file at ``path`` as it was, when a parameter
    or an optimizer state array holds NaN or infinite values.  Stale temporaries of earlier,
    killed writes of ``path`` are removed first (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    meta = {"format": FORMAT, "version": VERSION,
            "model": {"type": type(model).__name__, **model.config},
            "optimizer": None, "train": train or {}}
    arrays = {f"params/{n}": to_host(p) for n, p in model.params.items()}
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = {k: state[k] for k in ("type", "t", "hyper")}
        arrays.update({f"optim/{k}": to_host(a) for k, a in state["arrays"].items()})
    bad = [k for k, a in arrays.items() if not np.isfinite(a).all()]
    if bad:
        raise CheckpointError(
            f"Refusing to write {path}: {_list(bad)} hold NaN or infinite values; the file "
            "already there (if any) is left as it was.")
    arrays["config.json"] = np.frombuffer(json.dumps(meta, indent=1).encode(), dtype=np.uint8)

    return write_atomically(path, lambda f: np.savez(f, **arrays))


def write_atomically(path, write, binary: bool = True) -> Path:
    r"""Write a file so that a reader or a crash sees the old file or the new one, never half of one.

    ``write(f)`` fills a temporary file beside ``path`` (``.<name>.<pid>.<8 characters>.tmp``,
    the naming whose stale leftovers :func:`remove_stale_temporaries` removes first); it is
    flushed to disk (``fsync``) and renamed over ``path`` (one ``os.replace``).  A failed write (a
    full disk, a file-size limit, an exception in ``write``) removes the temporary and re-raises.
    ``binary=False`` opens it as UTF-8 text.  Every file minivae writes goes through here.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
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


def remove_stale_temporaries(path, now: float | None = None) -> list[Path]:
    r"""Remove the temporaries that killed writes of the checkpoint ``path`` left beside it.

    :func:`save_checkpoint` writes ``.<name>.<pid>.<8 characters>.tmp`` (minivae 0.2 wrote
    ``.<name>.<8 characters>.tmp``) and renames it over ``<name>`` at the end; a write killed
    before the rename leaves it behind, as large as the checkpoint.  A file is removed only when

    * its name is exactly that pattern for this checkpoint's name (nothing else is touched), and it
      is a regular file (not a link or a folder);
    * it was last modified more than :data:`STALE_AFTER_SECONDS` ago: a live write modifies its
      temporary continuously until the rename, which follows within moments of the last byte; and
    * the process named by the pid in it no longer runs on this machine: a write in progress is
      never touched, even a slow one.  (A pid belongs to this machine only; a writer on another
      machine sharing the folder is protected by the age rule.  A pid reused by a new process
      keeps the file until that process ends.)

    Returns the paths removed.  A file that cannot be removed is left, silently: cleaning is a
    courtesy and never stops a save.
    """
    path = Path(path)
    now = time.time() if now is None else now
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:([1-9][0-9]*)\.)?[a-z0-9_]{{8}}\.tmp")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        pid = match.group(1)
        if (not stat.S_ISREG(st.st_mode) or now - st.st_mtime < STALE_AFTER_SECONDS
                or (pid is not None and _process_runs(int(pid)))):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _process_runs(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (True when that cannot be told)."""
    if os.name != "posix":
        return True                     # os.kill(pid, 0) is not a probe there: keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                     # e.g. PermissionError: it exists, as another user's
        return True
    return True


# ---------------------------------------------------------------- loading

def load_checkpoint(path, backend="numpy", with_optimizer: bool = True):
    """Rebuild ``(model, optimizer, train)`` from ``path`` on ``backend``.

    Everything is checked first (:func:`read_checkpoint`).  ``optimizer`` is None when the
    checkpoint has none or ``with_optimizer`` is False.
    """
    path = Path(path)
    meta, arrays = read_checkpoint(path)
    cfg = dict(meta["model"])
    model_type = cfg.pop("type")
    try:
        model = MODEL_TYPES[model_type](**cfg, backend=backend)
        model.load_params({k[len("params/"):]: a for k, a in arrays.items()
                           if k.startswith("params/")})
    except (TypeError, ValueError) as err:       # read_checkpoint checked all this: a safety net
        raise CheckpointError(f"{path} cannot be loaded: {err}. Use another checkpoint.") from None

    optimizer = None
    if with_optimizer and meta["optimizer"] is not None:
        optimizer = OPTIMIZER_TYPES[meta["optimizer"]["type"]]()
        optimizer.load_state_dict(_optimizer_state(meta, arrays), xp=model.xp, params=model.params)
    return model, optimizer, meta["train"]


def read_checkpoint(path) -> tuple[dict, dict]:
    """Return ``(meta, arrays)`` from a checkpoint file, every part of it checked.

    ``meta`` is config.json's document, ``arrays`` maps ``"params/<name>"`` and
    ``"optim/<slot>/<name>"`` to host arrays.  Raises :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"No checkpoint at {path}: check the path, or train one with "
                              "examples/mnist_vae.py --out DIR.")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file: name the .npz file in "
                              f"it (e.g. {path / 'checkpoint.npz'}).")
    try:
        with open(path, "rb") as f:
            head = f.read(6)
        if head == b"\x93NUMPY":
            raise CheckpointError(f"{path} is a single NumPy array (.npy), not a checkpoint "
                                  "archive (.npz): point to a file written by minivae.")
        with zipfile.ZipFile(path) as zf:
            return _read_archive(zf, path)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) \
            as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: "
                              f"{err}); it may be truncated or corrupt: use another checkpoint "
                              "or retrain.") from None


def _read_archive(zf: zipfile.ZipFile, path: Path) -> tuple[dict, dict]:
    """read_checkpoint's work on an open zip: members, config.json, headers, then arrays."""
    members = {}
    for info in zf.infolist():
        name = info.filename
        if not name.endswith(".npy"):
            raise CheckpointError(f"{path} holds {name!r}, which is not a NumPy array (.npy): it "
                                  "is not a minivae checkpoint, or it was altered.")
        if name[:-4] in members:
            raise CheckpointError(f"{path} holds {name!r} twice: it was altered; use another "
                                  "checkpoint.")
        _check_member_size(info, path)
        members[name[:-4]] = info
    if "config.json" not in members:
        raise CheckpointError(f"{path} is an .npz file but not a minivae checkpoint (no valid "
                              "config.json entry): point to a file written by minivae.")
    meta = _check_meta(_read_config(zf, members.pop("config.json"), path), path)

    try:
        expected = _expected_shapes(meta)
    except ValueError as err:                     # sizes that each pass but build no model
        raise CheckpointError(f"{path} cannot be loaded: its config.json describes no model this "
                              f"minivae can build ({err}) Use another checkpoint, or retrain.")
    for key, info in members.items():
        if key not in expected:
            raise CheckpointError(
                f"{path} cannot be loaded: it holds an array {key!r} that its config.json, "
                f"{_describe(meta)}, does not have (the architecture differs).")
        _check_header(zf, info, path, key, FLOAT_DTYPES, (expected[key], _describe(meta)))
    missing = [k for k in expected if k.startswith("params/") and k not in members]
    if missing:
        raise CheckpointError(f"{path} cannot be loaded: it lacks the parameters {_list(missing)} "
                              f"that its config.json, {_describe(meta)}, needs.")

    arrays = {}
    for key, info in members.items():
        with zf.open(info) as f:
            a = np.lib.format.read_array(f, allow_pickle=False)
        arrays[key] = a.astype(a.dtype.newbyteorder("="), copy=False)
    bad = [k.removeprefix("params/") for k, a in arrays.items() if not np.isfinite(a).all()]
    if bad:
        raise CheckpointError(f"{path} cannot be loaded: non-finite values in {_list(bad)}. Use "
                              "another checkpoint.")
    model_dtype = np.dtype(meta["model"]["dtype"])
    too_big = [k for k, a in arrays.items() if a.dtype.itemsize > model_dtype.itemsize
               and a.size and np.abs(a).max() > np.finfo(model_dtype).max]
    if too_big:
        raise CheckpointError(f"{path} cannot be loaded: values in {_list(too_big)} are too "
                              f"large for the model's {model_dtype}. Use another checkpoint.")
    if meta["optimizer"] is not None:
        params = {k[len("params/"):]: a for k, a in arrays.items() if k.startswith("params/")}
        try:
            OPTIMIZER_TYPES[meta["optimizer"]["type"]]().load_state_dict(
                _optimizer_state(meta, arrays), params=params)
        except ValueError as err:
            raise CheckpointError(f"{path} cannot be loaded: its optimizer state is unusable: "
                                  f"{str(err).rstrip('.')}. Use another checkpoint.") from None
    return meta, arrays


def _optimizer_state(meta, arrays) -> dict:
    """The ``load_state_dict`` argument of a checked checkpoint's optimizer section."""
    return {**meta["optimizer"],
            "arrays": {k[len("optim/"):]: a for k, a in arrays.items() if k.startswith("optim/")}}


def _check_member_size(info: zipfile.ZipInfo, path: Path) -> None:
    """A member's stated size must be one its compressed bytes can hold: stored members hold
    exactly their size, deflated ones at most :data:`MAX_DEFLATE_RATIO` times their bytes."""
    if info.compress_type == zipfile.ZIP_STORED:
        fits = info.file_size == info.compress_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        fits = info.file_size <= MAX_DEFLATE_RATIO * info.compress_size + 1024
    else:
        raise CheckpointError(f"{path} cannot be loaded: {info.filename} is compressed with zip "
                              f"method {info.compress_type}; minivae reads stored or deflated "
                              "members (numpy.savez, numpy.savez_compressed).")
    if not fits:
        raise CheckpointError(f"{path} is damaged: {info.filename} claims {info.file_size:,} bytes "
                              f"but holds {info.compress_size:,} compressed; use another "
                              "checkpoint.")


def _check_header(zf, info, path, key, dtypes, expected=None, ndim=None) -> tuple:
    """Read the ``.npy`` header of member ``info`` (and nothing after it); check that the dtype is
    one of ``dtypes``, the shape is ``expected = (shape, what needs it)`` (or has ``ndim`` axes),
    and the data it declares is exactly what the member holds.  Returns the shape."""
    label = f"{key} in {path}"
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f".npy format version {version[0]}.{version[1]} (minivae reads "
                                 "1.0 and 2.0)")
        except ValueError as err:
            raise CheckpointError(f"{label} is not a valid NumPy array ({err}): the file is "
                                  "damaged or not a minivae checkpoint.") from None
        header_bytes = f.tell()
    if dtype.name not in dtypes:
        raise CheckpointError(f"{label} is an array of {_dtype_name(dtype)}, but minivae stores "
                              f"it as {' or '.join(dtypes)}: use another checkpoint.")
    if expected is not None and shape != expected[0]:
        raise CheckpointError(f"{path} cannot be loaded: {key} has shape {shape} but its "
                              f"config.json, {expected[1]}, needs {expected[0]}: the "
                              "architecture differs.")
    if ndim is not None and len(shape) != ndim:
        raise CheckpointError(f"{label} has shape {shape}, not {ndim}-D: use another checkpoint.")
    data_bytes = math.prod(shape) * dtype.itemsize
    if header_bytes + data_bytes != info.file_size:
        raise CheckpointError(f"{label} is damaged: its header declares shape {shape} "
                              f"({data_bytes:,} bytes) but it holds "
                              f"{max(info.file_size - header_bytes, 0):,} bytes of data; the file "
                              "is truncated or altered.")
    return shape


def _dtype_name(dtype) -> str:
    return {"U": "strings", "S": "bytes", "O": "Python objects", "V": "records"}.get(
        dtype.kind, dtype.name)


def _read_config(zf, info, path) -> dict:
    """config.json's document: a 1-D uint8 array holding UTF-8 JSON of an object."""
    shape = _check_header(zf, info, path, "config.json", ("uint8",), ndim=1)
    if shape[0] > MAX_CONFIG_BYTES:
        raise CheckpointError(f"config.json in {path} is {shape[0]:,} bytes, more than a "
                              f"checkpoint's ({MAX_CONFIG_BYTES:,} at most): use another "
                              "checkpoint.")
    with zf.open(info) as f:
        raw = np.lib.format.read_array(f, allow_pickle=False).tobytes()
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is an .npz file but not a minivae checkpoint (no valid "
                              "config.json entry): point to a file written by minivae.")
    return meta


# ---------------------------------------------------------------- config.json's schema

def _is_int(v, low: int) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _one_of(names):
    return (f"one of {', '.join(map(repr, names))}", lambda v: isinstance(v, str) and v in names)


_SIZE = ("an integer of at least 1", lambda v: _is_int(v, 1))
_SIZES = ("a list of integers of at least 1",
          lambda v: isinstance(v, list) and all(_is_int(h, 1) for h in v))
_COMMON = {"activation": _one_of(ACTIVATIONS), "likelihood": _one_of(LIKELIHOODS),
           "sigma": ("a finite number above 0", lambda v: _is_real(v) and v > 0),
           "dtype": _one_of(FLOAT_DTYPES),
           "seed": ("an integer of at least 0", lambda v: _is_int(v, 0))}
MODEL_SCHEMA = {             # each constructor argument: (what it must be, the test)
    "VAE": {"x_dim": _SIZE, "latent_dim": _SIZE, "encoder_hidden": _SIZES,
            "decoder_hidden": _SIZES, **_COMMON},
    "TwoLayerVAE": {"x_dim": _SIZE, "h1_dim": _SIZE, "h2_dim": _SIZE, "x_hidden": _SIZES,
                    "h_hidden": _SIZES, **_COMMON},
    "ConvVAE": {"image_shape": ("a list of 3 integers of at least 1 (channels, height, width)",
                                lambda v: _SIZES[1](v) and len(v) == 3),
                "latent_dim": _SIZE,
                "channels": ("a non-empty list of integers of at least 1",
                             lambda v: _SIZES[1](v) and len(v) >= 1), **_COMMON},
}
TRAIN_SCHEMA = {             # the train section's entries that minivae reads back
    "epoch": ("an integer of at least 0", lambda v: _is_int(v, 0)),
    "history": ("a list of per-epoch records, each with its 'seconds'",
                lambda v: isinstance(v, list) and all(
                    isinstance(r, dict) and _is_real(r.get("seconds")) for r in v)),
    "dataset": ("a data set name", lambda v: isinstance(v, str)),
    "binarize": ("true or false", lambda v: isinstance(v, bool)),
    "config": ("an object of training settings", lambda v: isinstance(v, dict)),
}


def _check_meta(meta: dict, path: Path) -> dict:
    """config.json's document checked against the schema; each problem one sentence."""
    def fail(problem):
        raise CheckpointError(f"{path} cannot be loaded: its config.json {problem}. Use another "
                              "checkpoint, or retrain.")

    version = meta.get("version")
    if "version" not in meta:
        fail(f"has no 'version' (the format version, {VERSION})")
    if not _is_int(version, 1):
        fail(f"has version {version!r}, not a format version (an integer from 1)")
    if version > VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version}, newer than "
                              f"this minivae reads ({VERSION}): upgrade minivae.")
    unknown = sorted(set(meta) - {"format", "version", "model", "optimizer", "train"})
    if unknown:
        fail(f"has unknown sections {_list(unknown)}")

    model = meta.get("model")
    if not isinstance(model, dict):
        fail("has no 'model' section (the architecture)" if "model" not in meta else
             f"has model {json.dumps(model)}, not an object describing the architecture")
    kind = model.get("type")
    if not isinstance(kind, str) or kind not in MODEL_SCHEMA:
        fail(f"has model type {json.dumps(kind)}, which this minivae does not know (it knows "
             f"{', '.join(MODEL_SCHEMA)})")
    schema = MODEL_SCHEMA[kind]
    for name, (rule, ok) in schema.items():
        if name not in model:
            fail(f"lacks the {kind}'s {name!r} ({rule})")
        if not ok(model[name]):
            fail(f"has {kind} {name} = {json.dumps(model[name])}, which must be {rule}")
    unknown = sorted(set(model) - set(schema) - {"type"})
    if unknown:
        fail(f"gives the {kind} unknown settings {_list(unknown)}")

    opt = meta.get("optimizer")
    if opt is not None:
        if not isinstance(opt, dict):
            fail(f"has optimizer {json.dumps(opt)}, not an object (or null)")
        if not isinstance(opt.get("type"), str) or opt["type"] not in OPTIMIZER_TYPES:
            fail(f"has optimizer type {json.dumps(opt.get('type'))}, which this minivae does not "
                 f"know ({', '.join(OPTIMIZER_TYPES)})")
        missing = sorted({"type", "t", "hyper"} - set(opt))
        unknown = sorted(set(opt) - {"type", "t", "hyper"})
        if missing or unknown:
            fail("has an optimizer section " + (f"without {_list(missing)}" if missing else
                                                 f"with unknown entries {_list(unknown)}"))
        if not isinstance(opt["hyper"], dict):
            fail(f"has optimizer hyperparameters {json.dumps(opt['hyper'])}, not an object")
    meta.setdefault("optimizer", None)

    train = meta.setdefault("train", {})
    if not isinstance(train, dict):
        fail(f"has train {json.dumps(train)}, not an object")
    for name, (rule, ok) in TRAIN_SCHEMA.items():
        if name in train and not ok(train[name]):
            fail(f"has train {name} = {_short(train[name])}, which must be {rule}")
    if "config" in train:
        settings = {k: v for k, v in train["config"].items() if k != "extra"}
        unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(TrainConfig)})
        if unknown:
            fail(f"has training settings this minivae does not know: {_list(unknown)}")
        try:
            TrainConfig(**settings)
        except ValueError as err:
            fail(f"has a training configuration that is not valid ({str(err).rstrip('.')})")
    return meta


def _expected_shapes(meta: dict) -> dict:
    """Every array the checkpoint may hold, with its shape: ``params/<name>`` for each of the
    model's parameters (all required) and ``optim/<slot>/<name>`` for the optimizer's slots."""
    shapes = parameter_shapes(meta["model"])
    expected = {f"params/{n}": s for n, s in shapes.items()}
    if meta["optimizer"] is not None:
        for slot in OPTIMIZER_TYPES[meta["optimizer"]["type"]].slots:
            expected.update({f"optim/{slot}/{n}": s for n, s in shapes.items()})
    return expected


def parameter_shapes(model: dict) -> dict:
    r"""The shape of every parameter of the model a checkpoint's ``model`` section describes,
    computed from the sizes alone (nothing allocated): each network is an MLP of sizes
    (I, H1, ..., O) whose dense layer i has ``<net>.<i>.W`` (in, out) and ``<net>.<i>.b`` (out,).

        VAE          encoder (x, *encoder_hidden, 2 D), decoder (D, *decoder_hidden, O)
        TwoLayerVAE  q1 (x, *x_hidden, 2 D1), q2 (D1, *h_hidden, 2 D2),
                     p1 (D2, *reversed h_hidden, 2 D1), px (D1, *reversed x_hidden, O)

    with O the likelihood's outputs for x pixels (x for Bernoulli, 2 x for a learned variance).
    A ConvVAE's shapes come from :meth:`minivae.conv_vae.ConvVAE.parameter_shapes`, which builds
    its networks on the host (after the schema check, so only from valid sizes).
    """
    c = model
    if model["type"] == "ConvVAE":
        return ConvVAE.parameter_shapes(model)
    n_out = make_likelihood(c["likelihood"], c["sigma"]).n_outputs(c["x_dim"])
    if model["type"] == "VAE":
        nets = {"encoder": [c["x_dim"], *c["encoder_hidden"], 2 * c["latent_dim"]],
                "decoder": [c["latent_dim"], *c["decoder_hidden"], n_out]}
    else:
        nets = {"q1": [c["x_dim"], *c["x_hidden"], 2 * c["h1_dim"]],
                "q2": [c["h1_dim"], *c["h_hidden"], 2 * c["h2_dim"]],
                "p1": [c["h2_dim"], *c["h_hidden"][::-1], 2 * c["h1_dim"]],
                "px": [c["h1_dim"], *c["x_hidden"][::-1], n_out]}
    shapes = {}
    for net, sizes in nets.items():
        for i, (n_in, n_out_i) in enumerate(zip(sizes, sizes[1:])):
            shapes[f"{net}.{i}.W"], shapes[f"{net}.{i}.b"] = (n_in, n_out_i), (n_out_i,)
    return shapes


def _describe(meta) -> str:
    """e.g. "a VAE with Adam state": what config.json says the arrays are."""
    return f"a {meta['model']['type']}" + ("" if meta["optimizer"] is None else
                                           f" with {meta['optimizer']['type']} state")


def _list(names, most: int = 4) -> str:
    names = list(names)
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _short(value, most: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= most else text[:most] + "..."

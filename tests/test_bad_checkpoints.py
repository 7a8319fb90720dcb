"""Damaged checkpoints: every one is one CheckpointError sentence that names the file and the
problem, raised before anything large is allocated, by the one loader every command uses."""
import io
import json
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

from minivae import VAE, TwoLayerVAE
from minivae.checkpoint import (CheckpointError, load_checkpoint, parameter_shapes,
                                read_checkpoint, save_checkpoint)
from minivae.commands import evaluate_main
from minivae.train import TrainConfig, config_dict
from tests.models import trained_pair


def good_checkpoint(path):
    """A small VAE after three Adam steps, with a train section as the scripts write it."""
    model, opt = trained_pair()
    train = {"config": config_dict(TrainConfig(epochs=5)), "epoch": 3, "dataset": "mnist",
             "binarize": True, "history": [{"epoch": e, "test_nelbo": 7.0, "seconds": 0.1}
                                           for e in (1, 2, 3)]}
    return save_checkpoint(path, model, opt, train)


def contents(path):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return json.loads(arrays.pop("config.json").tobytes()), arrays


def as_bytes_array(text) -> np.ndarray:
    return np.frombuffer(text if isinstance(text, bytes) else text.encode(), dtype=np.uint8)


def npy_bytes(array=None, header=None, version=(1, 0), data=b"") -> bytes:
    """An .npy file: ``array`` saved, or a bare ``header`` dict followed by ``data``."""
    f = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(f, array, version=version, allow_pickle=True)
        return f.getvalue()
    write = {(1, 0): np.lib.format.write_array_header_1_0,
             (2, 0): np.lib.format.write_array_header_2_0}[version]
    write(f, header)
    return f.getvalue() + data


def write_zip(path, members: dict, compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


# ---------------------------------------------------------------- edits of a good checkpoint

def edit(change):
    """A case that loads the good checkpoint, lets ``change(meta, arrays)`` damage it (it may
    return a replacement for config.json's bytes) and saves it with numpy.savez."""
    def make(path, good):
        meta, arrays = contents(good)
        config = change(meta, arrays)
        raw = json.dumps(meta) if config is None else config
        if raw is not False:
            arrays["config.json"] = raw if isinstance(raw, np.ndarray) else as_bytes_array(raw)
        np.savez(path, **arrays)
    return make


def set_(section, key, value):
    def change(meta, arrays):
        target = meta if section is None else meta[section]
        if value is DELETE:
            del target[key]
        else:
            target[key] = value
    return edit(change)


def set_train_config(key, value):
    return edit(lambda meta, arrays: meta["train"]["config"].__setitem__(key, value))


def set_array(key, value):
    def change(meta, arrays):
        if value is DELETE:
            del arrays[key]
        else:
            arrays[key] = value(arrays.get(key)) if callable(value) else value
    return edit(change)


def drop_optim(meta, arrays):
    for k in [k for k in arrays if k.startswith("optim/")]:
        del arrays[k]


DELETE = object()
W = "params/encoder.0.W"                                      # (10, 6) float32

EDITS = {
    # config.json itself
    "config.json missing": (edit(lambda m, a: False), "not a minivae checkpoint"),
    "config.json not JSON": (edit(lambda m, a: "{not json"), "not a minivae checkpoint"),
    "config.json not UTF-8": (edit(lambda m, a: b"\xff\xfe{}"), "not a minivae checkpoint"),
    "config.json a JSON list": (edit(lambda m, a: "[1, 2]"), "not a minivae checkpoint"),
    "config.json of float64": (edit(lambda m, a: np.zeros(4)),
                               r"config.json in .* is an array of float64"),
    "config.json 2-D": (edit(lambda m, a: np.zeros((2, 2), np.uint8)), r"not 1-D"),
    "format not minivae's": (set_(None, "format", "other"), "not a minivae checkpoint"),
    "version missing": (set_(None, "version", DELETE), r"has no 'version'"),
    "version a string": (set_(None, "version", "1"), r"has version '1', not a format version"),
    "version true": (set_(None, "version", True), r"has version True"),
    "version 0": (set_(None, "version", 0), r"has version 0"),
    "version newer": (set_(None, "version", 2), r"version 2, newer than this minivae reads"),
    "unknown section": (set_(None, "notes", "hi"), r"unknown sections notes"),
    # the model section
    "model missing": (set_(None, "model", DELETE), r"has no 'model' section"),
    "model null": (set_(None, "model", None), r"has model null, not an object"),
    "model a list": (set_(None, "model", [1]), r"has model \[1\], not an object"),
    "model type unknown": (set_("model", "type", "GAN"), r'model type "GAN", which this'),
    "model type missing": (set_("model", "type", DELETE), r"model type null"),
    "model type a list": (set_("model", "type", ["VAE"]), r'model type \["VAE"\]'),
    "encoder_hidden an int": (set_("model", "encoder_hidden", 6),
                              r"VAE encoder_hidden = 6, which must be a list of integers"),
    "decoder_hidden with 0": (set_("model", "decoder_hidden", [0]), r"decoder_hidden = \[0\]"),
    "latent_dim a string": (set_("model", "latent_dim", "3"), r'latent_dim = "3", which must be'),
    "latent_dim 0": (set_("model", "latent_dim", 0), r"latent_dim = 0, which must be an integer"),
    "latent_dim 3.0": (set_("model", "latent_dim", 3.0), r"latent_dim = 3.0"),
    "x_dim missing": (set_("model", "x_dim", DELETE), r"lacks the VAE's 'x_dim'"),
    "activation unknown": (set_("model", "activation", "swish"), r'activation = "swish"'),
    "likelihood unknown": (set_("model", "likelihood", "poisson"), r'likelihood = "poisson"'),
    "sigma NaN": (set_("model", "sigma", float("nan")), r"sigma = NaN, which must be a finite"),
    "sigma negative": (set_("model", "sigma", -1.0), r"sigma = -1.0"),
    "model dtype float16": (set_("model", "dtype", "float16"), r'dtype = "float16"'),
    "seed negative": (set_("model", "seed", -1), r"seed = -1"),
    "unknown model setting": (set_("model", "depth", 3), r"unknown settings depth"),
    "two-layer type, one-layer sizes": (set_("model", "type", "TwoLayerVAE"),
                                        r"lacks the TwoLayerVAE's 'h1_dim'"),
    # the optimizer section
    "optimizer not an object": (set_(None, "optimizer", "adam"),
                                r'optimizer "adam", not an object'),
    "optimizer type unknown": (set_("optimizer", "type", "RMSprop"),
                               r'optimizer type "RMSprop", which this minivae does not know'),
    "optimizer t missing": (set_("optimizer", "t", DELETE), r"optimizer section without t"),
    "optimizer unknown entry": (set_("optimizer", "lr", 1.0), r"with unknown entries lr"),
    "t a string": (set_("optimizer", "t", "3"), r"step count t must be an integer .* got '3'"),
    "t negative": (set_("optimizer", "t", -1), r"step count t must be an integer .* got -1"),
    "t fractional": (set_("optimizer", "t", 2.5), r"step count t .* got 2.5"),
    "hyper not an object": (set_("optimizer", "hyper", [1e-3]), r"hyperparameters \[0.001\]"),
    "unknown hyperparameter": (edit(lambda m, a: m["optimizer"]["hyper"].update(momentum=0.9)),
                               r"Adam has no hyperparameter 'momentum'"),
    "lr negative": (edit(lambda m, a: m["optimizer"]["hyper"].update(lr=-1e-3)),
                    r"Adam's lr must be a finite number above 0, got -0.001"),
    "eps NaN": (edit(lambda m, a: m["optimizer"]["hyper"].update(eps=float("nan"))),
                r"Adam's eps must be a finite number"),
    "beta1 of 1": (edit(lambda m, a: m["optimizer"]["hyper"].update(beta1=1.0)),
                   r"beta1 must be a finite number in \[0, 1\)"),
    "Adam arrays missing": (edit(drop_optim), r"Adam state after 3 steps lacks .*as if fresh"),
    "one Adam array missing": (set_array("optim/v/decoder.0.b", DELETE),
                               r"lacks 1 of its arrays \(v/decoder.0.b\)"),
    "Adam array wrong shape": (set_array("optim/m/encoder.0.W", lambda a: a.T.copy()),
                               r"optim/m/encoder.0.W has shape \(6, 10\) but its config.json, "
                               r"a VAE with Adam state, needs \(10, 6\)"),
    "Adam array NaN": (set_array("optim/v/encoder.0.W", lambda a: a * np.nan),
                       r"non-finite values in optim/v/encoder.0.W"),
    "Adam array of ints": (set_array("optim/m/encoder.0.W", lambda a: a.astype(np.int64)),
                           r"optim/m/encoder.0.W in .* is an array of int64"),
    "Adam slot unknown": (set_array("optim/velocity/encoder.0.W", np.zeros((10, 6), np.float32)),
                          r"holds an array 'optim/velocity/encoder.0.W' that its config"),
    "Adam state, no optimizer section": (set_(None, "optimizer", None),
                                         r"holds an array 'optim/m/.*' that its config.json, "
                                         r"a VAE, does"),
    # the parameters
    "parameter of strings": (set_array(W, lambda a: a.astype(str)), r"encoder.0.W .* of strings"),
    "parameter of ints": (set_array(W, lambda a: (a * 100).astype(np.int32)),
                          r"encoder.0.W .* is an array of int32, but minivae stores it as float32"),
    "parameter of float16": (set_array(W, lambda a: a.astype(np.float16)),
                             r"is an array of float16"),
    "parameter of bools": (set_array(W, lambda a: a > 0), r"is an array of bool"),
    "parameter of complex": (set_array(W, lambda a: a.astype(np.complex64)), r"of complex64"),
    "parameter of objects": (set_array(W, lambda a: a.astype(object)), r"of Python objects"),
    "parameter wrong shape": (set_array(W, lambda a: a[:, :5].copy()),
                              r"params/encoder.0.W has shape \(10, 5\) .*architecture differs"),
    "parameter a scalar": (set_array(W, np.float32(1.0)), r"has shape \(\) but"),
    "parameter missing": (set_array("params/decoder.1.b", DELETE),
                          r"lacks the parameters params/decoder.1.b"),
    "parameter extra": (set_array("params/encoder.9.W", np.zeros(3, np.float32)),
                        r"holds an array 'params/encoder.9.W'"),
    "architecture in config differs": (set_("model", "latent_dim", 4), r"architecture differs"),
    "parameter NaN": (set_array("params/decoder.0.W", lambda a: a * np.nan),
                      r"non-finite values in decoder.0.W"),
    "parameter infinite": (set_array("params/decoder.1.b", lambda a: a - np.inf),
                           r"non-finite values in decoder.1.b"),
    "float64 parameter too large for float32": (
        set_array(W, lambda a: np.full(a.shape, 1e300)), r"too large for the model's float32"),
    # the train section
    "train not an object": (set_(None, "train", [1]), r"has train \[1\], not an object"),
    "train epoch a string": (set_("train", "epoch", "3"), r'train epoch = "3", which must be'),
    "history not a list": (set_("train", "history", {}), r"train history = \{\}"),
    "history without seconds": (set_("train", "history", [{"epoch": 1}]), r"train history"),
    "training config epochs 0": (set_train_config("epochs", 0),
                                 r"training configuration .*epochs must be at least 1"),
    "training config unknown": (set_train_config("momentum", 0.9),
                                r"training settings this minivae does not know: momentum"),
    "training config objective": (set_train_config("objective", "foo"),
                                  r"Unknown objective 'foo'"),
}


# ---------------------------------------------------------------- files written from scratch

def _members(good):
    with zipfile.ZipFile(good) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def plain_member(path, good):
    write_zip(path, {**_members(good), "notes.txt": b"hello"})


def member_not_npy(path, good):
    write_zip(path, {**_members(good), "params/encoder.0.W.npy": b"PK this is not an array"})


def lone_npy(path, good):
    with open(path, "wb") as f:
        np.save(f, np.zeros((10, 6), np.float32))


def huge_header(path, good):
    """encoder.0.W's header declares (2^20, 2^20) float32 items: 4 TiB."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (2 ** 20, 2 ** 20)}
    write_zip(path, {**_members(good), "params/encoder.0.W.npy": npy_bytes(header=header)})


def huge_architecture(path, good):
    """A config.json whose architecture is 2^20 wide, and headers that agree with it, every one
    declaring terabytes that the file does not hold."""
    meta, _ = contents(good)
    meta["model"].update(x_dim=2 ** 20, encoder_hidden=[2 ** 20], decoder_hidden=[2 ** 20])
    meta["optimizer"] = None
    shapes = parameter_shapes(meta["model"])
    members = {f"params/{n}.npy": npy_bytes(header={"descr": "<f4", "fortran_order": False,
                                                    "shape": s}) for n, s in shapes.items()}
    write_zip(path, {**members, "config.json.npy": npy_bytes(as_bytes_array(json.dumps(meta)))})


def huge_config_header(path, good):
    header = {"descr": "|u1", "fortran_order": False, "shape": (2 ** 40,)}
    write_zip(path, {**_members(good), "config.json.npy": npy_bytes(header=header, data=b"{}")})


def short_data(path, good):
    header = {"descr": "<f4", "fortran_order": False, "shape": (10, 6)}
    write_zip(path, {**_members(good), "params/encoder.0.W.npy": npy_bytes(header=header,
                                                                           data=bytes(40))})


def npy_version_3(path, good):
    text = b"{'descr': '<f4', 'fortran_order': False, 'shape': (10, 6), }".ljust(118) + b"\n"
    data = b"\x93NUMPY\x03\x00" + len(text).to_bytes(4, "little") + text + bytes(240)
    write_zip(path, {**_members(good), "params/encoder.0.W.npy": data})


def duplicate_member(path, good):
    members = _members(good)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                      # zipfile warns: "Duplicate name"
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
            zf.writestr("params/encoder.0.W.npy", members["params/encoder.0.W.npy"])


def bzip2_member(path, good):
    write_zip(path, _members(good), zipfile.ZIP_BZIP2)


def truncated(path, good):
    path.write_bytes(good.read_bytes()[:1000])


def empty(path, good):
    path.write_bytes(b"")


def text_file(path, good):
    path.write_text("epoch,loss\n1,100\n")


def folder(path, good):
    path.mkdir()


RAW = {
    "zip member not .npy": (plain_member, r"holds 'notes.txt', which is not a NumPy array"),
    ".npy member not an array": (member_not_npy, r"encoder.0.W in .* is not a valid NumPy array"),
    "lone .npy under the .npz name": (lone_npy, r"is a single NumPy array \(.npy\)"),
    "header declaring 2^40 items": (huge_header,
                                    r"encoder.0.W has shape \(1048576, 1048576\) but its config"),
    "2^40 items in a matching architecture": (
        huge_architecture, r"encoder.0.W in .* is damaged: its header declares shape "
                           r"\(1048576, 1048576\) \(4,398,046,511,104 bytes\) but it holds 0"),
    "config.json header declaring 2^40 bytes": (huge_config_header,
                                                r"config.json in .* is damaged: its header"),
    "data shorter than the header says": (short_data, r"holds 40 bytes of data; the file is"),
    ".npy format version 3": (npy_version_3, r"format version 3.0 \(minivae reads 1.0 and 2.0\)"),
    "member twice": (duplicate_member, r"holds 'params/encoder.0.W.npy' twice"),
    "bzip2-compressed members": (bzip2_member, r"compressed with zip method 12"),
    "truncated file": (truncated, r"is not a readable checkpoint .*truncated or corrupt"),
    "empty file": (empty, r"is not a readable checkpoint"),
    "a text file": (text_file, r"is not a readable checkpoint"),
    "a folder": (folder, r"is a folder, not a checkpoint file"),
}
CASES = {**EDITS, **RAW}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_checkpoint_is_one_sentence_naming_the_file_and_the_problem(tmp_path, case):
    make, problem = CASES[case]
    good = good_checkpoint(tmp_path / "good.npz")
    path = tmp_path / "damaged.npz"
    make(path, good)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert str(path) in message, message
    assert "\n" not in message and "Traceback" not in message
    assert __import__("re").search(problem, message), message
    assert peak < 20 * 2 ** 20 and seconds < 2.0, (peak, seconds)   # nothing large allocated


@pytest.mark.parametrize("case", ["model null", "t a string", "Adam arrays missing",
                                  "header declaring 2^40 items", "lone .npy under the .npz name",
                                  "parameter of ints"])
def test_the_evaluate_command_says_the_same_sentence_and_exits_2(tmp_path, case, capsys):
    make, problem = CASES[case]
    path = tmp_path / "damaged.npz"
    make(path, good_checkpoint(tmp_path / "good.npz"))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert evaluate_main([str(path), "--offline", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {info.value}\n"


def test_good_checkpoints_load_whatever_numpy_wrote(tmp_path):
    good = good_checkpoint(tmp_path / "good.npz")
    meta, arrays = contents(good)
    arrays["config.json"] = as_bytes_array(json.dumps(meta))
    np.savez_compressed(tmp_path / "compressed.npz", **arrays)                 # deflated members
    arrays[W] = np.asfortranarray(arrays[W])
    np.savez(tmp_path / "fortran.npz", **arrays)                               # column-major
    reference, ref_opt, ref_train = load_checkpoint(good)
    for name in ("compressed.npz", "fortran.npz"):
        model, opt, train = load_checkpoint(tmp_path / name)
        assert train == ref_train and opt.t == ref_opt.t == 3
        for n, p in reference.params.items():
            np.testing.assert_array_equal(model.params[n], p)
    _, optimizer, _ = load_checkpoint(good, with_optimizer=False)
    assert optimizer is None


@pytest.mark.parametrize("model", [
    VAE(x_dim=7, latent_dim=2, encoder_hidden=(5, 4), decoder_hidden=(3,),
        likelihood="gaussian_learned"),
    VAE(x_dim=7, latent_dim=2, encoder_hidden=(), decoder_hidden=()),
    TwoLayerVAE(x_dim=9, h1_dim=4, h2_dim=3, x_hidden=(8, 6), h_hidden=(5,)),
], ids=["vae-gaussian-learned", "vae-no-hidden", "two-layer"])
def test_parameter_shapes_are_the_models_own_without_building_it(model):
    shapes = parameter_shapes({"type": type(model).__name__, **model.config})
    assert shapes == {n: p.shape for n, p in model.params.items()}
    assert list(shapes) == list(model.params)


def test_read_checkpoint_checks_as_much_as_load_checkpoint(tmp_path):
    path = tmp_path / "damaged.npz"
    EDITS["Adam arrays missing"][0](path, good_checkpoint(tmp_path / "good.npz"))
    with pytest.raises(CheckpointError, match="as if fresh"):
        read_checkpoint(path)

"""CIFAR-10 from its binary version: known answers, the search path, the archive, damage, no pickle.

CIFAR-10 cannot be downloaded here, so the tests write small files in the real format: five
training batches and a test batch of 3 records each (the real ones hold 10,000), extracted or in a
small ``cifar-10-binary.tar.gz``.  As for MNIST's generated files (tests/test_data.py), the data
set's spec is swapped for one that knows their MD5 and record count.  The real files, where
``$MINIVAE_DATA/cifar10`` holds them, are checked too; elsewhere that test skips.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from minivae import data
from tests.offline import isolate
from minivae.data import (CIFAR_ARCHIVE, CIFAR_DIR, CIFAR_RECORD, DataError, find_dataset,
                          load_dataset, parse_cifar_batch, read_cifar_archive)

_ENV_DATA = os.environ.get("MINIVAE_DATA")
TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
FILES = TRAIN + ["test_batch.bin"]
N = 3                                                             # records per generated batch file


def batch_bytes(labels, images) -> bytes:
    """Records written the long way: a label byte, then the R, G and B planes, each row by row."""
    out = bytearray()
    for label, image in zip(labels, images):                      # image (3, 32, 32) uint8
        out.append(int(label))
        for plane in image:
            for row in plane:
                out += bytes(row.tolist())
    return bytes(out)


def write_tar(path: Path, members: dict[str, bytes], symlinks=()) -> str:
    """A tar.gz of regular files (and symlink members); return its MD5."""
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        for name in symlinks:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A fresh HOME, no XDG_CACHE_HOME / MINIVAE_DATA, a fake /usr/share/datasets, no network."""
    return isolate(tmp_path, monkeypatch)


def one_sentence(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and text.endswith("."), f"not one sentence: {text!r}"
    return text


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    """Six small batch files (3 records each) in src/cifar-10-batches-bin/ and in src.tar.gz."""
    rng = np.random.default_rng(0)
    images = {name: rng.integers(0, 256, (N, 3, 32, 32), dtype=np.uint8) for name in FILES}
    labels = {name: rng.integers(0, 10, N).astype(np.uint8) for name in FILES}
    # one known image: the first of the test batch, label 7
    known = np.zeros((3, 32, 32), np.uint8)
    known[0] += 10
    known[1] += 20
    known[2] += 30
    known[0, 2, 5], known[1, 0, 31], known[2, 31, 0] = 200, 255, 1    # red, green, blue (row, col)
    images["test_batch.bin"][0], labels["test_batch.bin"][0] = known, 7
    blobs = {name: batch_bytes(labels[name], images[name]) for name in FILES}
    batches = tmp_path / "src" / CIFAR_DIR
    batches.mkdir(parents=True)
    for name, blob in blobs.items():
        (batches / name).write_bytes(blob)
    members = {f"{CIFAR_DIR}/{name}": blob for name, blob in blobs.items()}
    members[f"{CIFAR_DIR}/batches.meta.txt"] = b"airplane\nautomobile\n"   # present, ignored
    members["../escape.bin"] = b"must never be written"                   # a path-traversal member
    archive = tmp_path / "archive" / CIFAR_ARCHIVE
    archive.parent.mkdir()
    md5 = write_tar(archive, members)
    no_mirror = (tmp_path / "no-mirror").as_uri() + "/"
    spec = dataclasses.replace(data.DATASETS["cifar10"], md5={CIFAR_ARCHIVE: md5},
                               records_per_file=N, mirrors=(no_mirror,))
    monkeypatch.setitem(data.DATASETS, "cifar10", spec)
    return SimpleNamespace(src=tmp_path / "src", batches=batches, archive=archive, blobs=blobs,
                           members=members, images=images, labels=labels,
                           mirror=archive.parent.as_uri() + "/")


def check_known_answer(ds, cifar):
    assert ds.name == "cifar10" and ds.image_shape == (3, 32, 32) and ds.classes[7] == "horse"
    assert ds.x_train.shape == (5 * N, 3072) and ds.x_test.shape == (N, 3072)
    assert ds.x_train.dtype == ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == ds.y_test.dtype == np.int64
    # the test batch's first image, by hand: CHW order, row-major planes, pixel k as k/255
    x = ds.x_test[0]
    assert ds.y_test[0] == 7
    assert x[0 * 1024 + 2 * 32 + 5] == np.float32(200) / np.float32(255)      # red, row 2, col 5
    assert x[1 * 1024 + 0 * 32 + 31] == 1.0                                 # green, row 0, col 31
    assert x[2 * 1024 + 31 * 32 + 0] == np.float32(1) / np.float32(255)       # blue, row 31, col 0
    assert x[0] == np.float32(10) / 255 and x[1024] == np.float32(20) / 255
    assert x[3071] == np.float32(30) / 255
    np.testing.assert_array_equal(ds.x_test.reshape(-1, 3, 32, 32)[0, :, 2, 5],
                                  np.array([200, 20, 30], np.float32) / np.float32(255))
    # everything else: the five training batches in order, then the test batch
    train = np.concatenate([cifar.images[name] for name in TRAIN])             # (15, 3, 32, 32)
    np.testing.assert_array_equal(ds.x_train, train.reshape(5 * N, 3072) / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, np.concatenate([cifar.labels[n] for n in TRAIN]))
    np.testing.assert_array_equal(ds.y_test, cifar.labels["test_batch.bin"])
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1


# ---------------------------------------------------------------- known answers

def test_extracted_files_load_with_known_pixels_labels_and_order(cifar):
    ds = load_dataset("cifar10", data_dir=cifar.src, offline=True)
    assert ds.source == cifar.src
    check_known_answer(ds, cifar)


def test_a_folder_of_bare_batch_files_works_too(cifar):
    ds = load_dataset("cifar10", data_dir=cifar.batches, offline=True)    # the batches' own folder
    assert ds.source == cifar.batches
    check_known_answer(ds, cifar)


def test_the_archive_is_read_without_extracting_anything(cifar, tmp_path):
    before = sorted(tmp_path.rglob("*"))
    ds = load_dataset("cifar10", data_dir=cifar.archive.parent, offline=True)
    assert ds.source == cifar.archive.parent
    check_known_answer(ds, cifar)
    assert sorted(tmp_path.rglob("*")) == before             # nothing written, not ../escape.bin
    assert not (tmp_path / "escape.bin").exists()
    assert set(read_cifar_archive(cifar.archive)) == set(FILES)  # only the six batches are read


def test_parse_cifar_batch_on_one_record():
    image = np.arange(3072, dtype=np.uint64).astype(np.uint8).reshape(3, 32, 32)
    images, labels = parse_cifar_batch(batch_bytes([9], [image]), n_records=1)
    assert images.shape == (1, 3072) and images.dtype == np.uint8 and labels.tolist() == [9]
    np.testing.assert_array_equal(images[0], image.ravel())      # CHW, as stored
    images[0, 0] = 1                                              # a writable copy


def test_the_spec_of_the_real_data_set():
    spec = data.DATASETS["cifar10"]
    assert spec.md5 == {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"}
    assert spec.image_shape == (3, 32, 32) and spec.records_per_file == 10_000
    assert spec.format == "cifar" and CIFAR_RECORD == 3073 and len(spec.classes) == 10
    assert spec.classes[0] == "airplane" and spec.classes[9] == "truck"


# ---------------------------------------------------------------- the search path

def test_search_order_and_archive_or_files(cifar, tmp_path, monkeypatch, isolated):
    places = {"data-dir": tmp_path / "dd", "minivae-data": tmp_path / "md" / "cifar10",
              "cache": isolated.home / ".cache" / "minivae" / "cifar10",
              "system": data.SYSTEM_DATA_DIR / "cifar10"}
    for key, place in places.items():
        place.mkdir(parents=True)
        if key in ("data-dir", "cache"):
            (place / CIFAR_ARCHIVE).symlink_to(cifar.archive)              # the archive
        else:
            (place / CIFAR_DIR).symlink_to(cifar.batches, target_is_directory=True)  # extracted
    monkeypatch.setenv("MINIVAE_DATA", str(tmp_path / "md"))
    for place in places.values():
        assert find_dataset("cifar10", data_dir=tmp_path / "dd", offline=True) == place
        check_known_answer(load_dataset("cifar10", data_dir=tmp_path / "dd", offline=True), cifar)
        for entry in place.iterdir():
            entry.unlink()
    with pytest.raises(DataError) as err:
        find_dataset("cifar10", data_dir=tmp_path / "dd", offline=True)
    msg = str(err.value)
    assert "cifar10 not found: no folder holds cifar-10-binary.tar.gz or cifar-10-batches-bin/ " \
           "with data_batch_1.bin .. data_batch_5.bin and test_batch.bin" in msg
    assert all(str(place) in msg for place in places.values()) and "--data-dir" in msg


def test_an_incomplete_batch_folder_is_passed_over(cifar, tmp_path):
    partial = tmp_path / "partial"
    (partial / CIFAR_DIR).mkdir(parents=True)
    for name in FILES[:-1]:                                       # no test_batch.bin
        (partial / CIFAR_DIR / name).write_bytes(cifar.blobs[name])
    with pytest.raises(DataError, match="missing cifar-10-binary.tar.gz or cifar-10-batches-bin"):
        find_dataset("cifar10", data_dir=partial, offline=True)


# ---------------------------------------------------------------- damaged files: one clear sentence

@pytest.mark.parametrize("damage,message", [
    ("truncated", r"test_batch.bin is truncated: it has 9218 bytes but a CIFAR-10 batch file holds "
                  r"3 records of 3073 bytes \(9219 bytes\); delete it and download it again"),
    ("one more record", r"test_batch.bin has 12292 bytes but a CIFAR-10 binary batch holds 3 "
                        r"records of 3073 bytes: it is not one"),
    ("CIFAR-100 records", r"test_batch.bin has 9222 bytes but a CIFAR-10 binary batch holds"),
    ("label 10", r"test_batch.bin holds label 10 but CIFAR-10's labels are 0-9"),
    ("empty", r"test_batch.bin is truncated: it has 0 bytes")])
def test_a_damaged_batch_file_is_one_clear_error(cifar, damage, message):
    blob = cifar.blobs["test_batch.bin"]
    blob = {"truncated": blob[:-1], "one more record": blob + blob[:CIFAR_RECORD],
            "CIFAR-100 records": blob + b"\0\0\0", "label 10": b"\x0a" + blob[1:],
            "empty": b""}[damage]
    (cifar.batches / "test_batch.bin").write_bytes(blob)
    with pytest.raises(DataError, match=message) as err:
        load_dataset("cifar10", data_dir=cifar.src, offline=True)
    assert str(cifar.batches / "test_batch.bin") in one_sentence(err)


def test_the_real_record_count_is_enforced():
    with pytest.raises(DataError, match=r"truncated: it has 30729999 bytes .* \(30730000 bytes\)"):
        parse_cifar_batch(bytes(10_000 * CIFAR_RECORD - 1), "data_batch_1.bin", n_records=10_000)


def test_an_archive_with_the_wrong_md5_is_refused(cifar, monkeypatch):
    spec = dataclasses.replace(data.DATASETS["cifar10"], md5={CIFAR_ARCHIVE: "0" * 32})
    monkeypatch.setitem(data.DATASETS, "cifar10", spec)
    with pytest.raises(DataError, match=f"{cifar.archive} has MD5 [0-9a-f]{{32}} but 0{{32}} was "
                                        "expected; delete it and download it again") as err:
        load_dataset("cifar10", data_dir=cifar.archive.parent, offline=True)
    one_sentence(err)


@pytest.mark.parametrize("damage", ["cut", "not gzip"])
def test_a_broken_archive_is_one_clear_error(cifar, monkeypatch, damage):
    blob = cifar.archive.read_bytes()
    blob = blob[: len(blob) // 2] if damage == "cut" else b"PK\x03\x04" + blob[4:]
    cifar.archive.write_bytes(blob)                        # its MD5 known, so the tar is read
    monkeypatch.setitem(data.DATASETS, "cifar10", dataclasses.replace(
        data.DATASETS["cifar10"], md5={CIFAR_ARCHIVE: hashlib.md5(blob).hexdigest()}))
    with pytest.raises(DataError, match=f"{cifar.archive} is not a valid tar.gz archive") as err:
        load_dataset("cifar10", data_dir=cifar.archive.parent, offline=True)
    one_sentence(err)


@pytest.mark.parametrize("how", ["missing", "symlink", "wrong folder"])
def test_an_archive_without_a_batch_as_a_regular_file_is_refused(cifar, monkeypatch, how):
    members = dict(cifar.members)
    blob = members.pop(f"{CIFAR_DIR}/test_batch.bin")
    if how == "wrong folder":
        members["cifar-10-batches-py/test_batch.bin"] = blob
    md5 = write_tar(cifar.archive, members,
                    symlinks=[f"{CIFAR_DIR}/test_batch.bin"] if how == "symlink" else ())
    monkeypatch.setitem(data.DATASETS, "cifar10",
                        dataclasses.replace(data.DATASETS["cifar10"], md5={CIFAR_ARCHIVE: md5}))
    with pytest.raises(DataError, match=f"{cifar.archive} lacks cifar-10-batches-bin/test_batch"
                                        ".bin: it is not the CIFAR-10 binary archive") as err:
        load_dataset("cifar10", data_dir=cifar.archive.parent, offline=True)
    one_sentence(err)


def test_a_damaged_member_names_the_archive_and_member(cifar, monkeypatch):
    members = dict(cifar.members)
    members[f"{CIFAR_DIR}/data_batch_2.bin"] = members[f"{CIFAR_DIR}/data_batch_2.bin"][:-5]
    md5 = write_tar(cifar.archive, members)
    monkeypatch.setitem(data.DATASETS, "cifar10",
                        dataclasses.replace(data.DATASETS["cifar10"], md5={CIFAR_ARCHIVE: md5}))
    with pytest.raises(DataError, match=f"{cifar.archive} member cifar-10-batches-bin/"
                                        "data_batch_2.bin is truncated"):
        load_dataset("cifar10", data_dir=cifar.archive.parent, offline=True)


# ---------------------------------------------------------------- downloads (file:// mirrors only)

def leftovers(folder: Path) -> list[str]:
    """Files in ``folder`` other than the archive (temp files of a download)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != CIFAR_ARCHIVE)


def test_download_puts_the_archive_in_the_cache_atomically(cifar, isolated):
    cache = isolated.home / ".cache" / "minivae" / "cifar10"
    ds = load_dataset("cifar10", mirrors=((cifar.src / "nothing").as_uri() + "/", cifar.mirror))
    assert ds.source == cache and leftovers(cache) == []
    assert (cache / CIFAR_ARCHIVE).read_bytes() == cifar.archive.read_bytes()
    check_known_answer(ds, cifar)
    assert find_dataset("cifar10", offline=True) == cache        # found there next time


def test_a_bad_download_is_refused_and_not_left_behind(cifar, tmp_path, isolated):
    bad = tmp_path / "bad-mirror"
    bad.mkdir()
    (bad / CIFAR_ARCHIVE).write_bytes(cifar.archive.read_bytes()[:-10])     # a partial download
    with pytest.raises(DataError) as err:
        find_dataset("cifar10", mirrors=(bad.as_uri() + "/",))
    msg = str(err.value)
    assert f"{bad.as_uri()}/{CIFAR_ARCHIVE}" in msg and "has MD5" in msg and "--data-dir" in msg
    cache = isolated.home / ".cache" / "minivae" / "cifar10"
    assert not (cache / CIFAR_ARCHIVE).exists() and leftovers(cache) == []
    assert find_dataset("cifar10", mirrors=(bad.as_uri() + "/", cifar.mirror)) == cache


def test_offline_never_downloads(cifar, monkeypatch, isolated):
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(DataError, match="drop --offline"):
        load_dataset("cifar10", offline=True, mirrors=(cifar.mirror,))


# ---------------------------------------------------------------- no pickle, anywhere

def test_the_loader_never_uses_pickle(cifar, monkeypatch):
    tree = ast.parse(Path(data.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    risky = {"pickle", "_pickle", "cPickle", "dill", "joblib", "shelve", "marshal"}
    assert not imported & risky and not names & (risky | {"load", "allow_pickle"})
    # and at run time: every way into pickle raises while both kinds of source are loaded
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")
    for attr in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, attr, refuse)
    check_known_answer(load_dataset("cifar10", data_dir=cifar.src, offline=True), cifar)
    check_known_answer(load_dataset("cifar10", data_dir=cifar.archive.parent, offline=True), cifar)


# ---------------------------------------------------------------- the real files, where present

def test_the_real_files_where_present(monkeypatch, tmp_path):
    root = Path(_ENV_DATA) if _ENV_DATA else None
    if root is None or not (root / "cifar10").is_dir():
        pytest.skip("no cifar10/ under $MINIVAE_DATA: the real CIFAR-10 files are not here")
    monkeypatch.setenv("MINIVAE_DATA", str(root))
    ds = load_dataset("cifar10", offline=True)
    assert ds.x_train.shape == (50000, 3072) and ds.x_test.shape == (10000, 3072)
    assert np.bincount(ds.y_train, minlength=10).tolist() == [5000] * 10
    assert np.bincount(ds.y_test, minlength=10).tolist() == [1000] * 10
    assert ds.x_train.min() == 0 and ds.x_train.max() == 1

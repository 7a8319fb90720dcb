"""Tests for minivae.data: IDX parsing, the search order, downloads, loading, binarisation.

The real MNIST / Fashion-MNIST files are found through ``MINIVAE_DATA`` (a folder holding
``mnist/`` and ``fashion-mnist/``; a relative path is taken from the repository root; CI sets
it).  Without them these tests fail under CI and skip elsewhere.
Everything else runs on small IDX files written here.  No test touches the network: downloads
use ``file://`` mirrors, and sockets are switched off for every test.
"""
from __future__ import annotations

import ast
import dataclasses
import gzip
import hashlib
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minivae import data
from tests.offline import isolate
from minivae.data import (DataError, binarize, binarize_fixed, candidate_dirs, find_dataset,
                          load_dataset, parse_idx, read_idx)

REPO = Path(__file__).resolve().parents[1]
REAL = ("mnist", "fashion-mnist")
_ENV_DATA = os.environ.get("MINIVAE_DATA")      # read before any test changes the environment

# Hypothesis tests below use no fixture state per example; the autouse isolation is shared safely.
FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


# ---------------------------------------------------------------- helpers

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
             np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as IDX: 00 00 <type> <ndim> | big-endian uint32 sizes | big-endian items."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    header += b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> str:
    """Write ``array`` as IDX (gzip if ``path`` ends in .gz); return the MD5 of the IDX bytes."""
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw, mtime=0) if path.suffix == ".gz" else raw)
    return hashlib.md5(raw).hexdigest()


def copy_files(src: Path, dst: Path, names=data.FILES, link=False) -> Path:
    """Copy (or symlink) ``<name>.gz`` for each name from ``src`` into ``dst``; return ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        if link:
            (dst / f"{name}.gz").symlink_to(src / f"{name}.gz")
        else:
            shutil.copyfile(src / f"{name}.gz", dst / f"{name}.gz")
    return dst


def leftovers(folder: Path) -> list[str]:
    """Files in ``folder`` other than the final IDX names (temp files of a download)."""
    final = {f"{name}.gz" for name in data.FILES}
    return sorted(p.name for p in folder.iterdir() if p.name not in final) if folder.is_dir() else []


# ---------------------------------------------------------------- fixtures

@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A fresh HOME, no XDG_CACHE_HOME / MINIVAE_DATA, a fake /usr/share/datasets, no network, no download mirror."""
    return isolate(tmp_path, monkeypatch, no_mirrors=True)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """Register a data set "tiny" (6 train, 4 test 28x28 images, 3 classes) written to src/."""
    rng = np.random.default_rng(0)
    src = tmp_path / "tiny-src"
    src.mkdir()
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": np.array([0, 1, 2, 0, 1, 2], dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": np.array([2, 1, 0, 0], dtype=np.uint8)}
    md5 = {name: write_idx(src / f"{name}.gz", a) for name, a in arrays.items()}
    spec = data.DatasetSpec("tiny", md5, mirrors=((tmp_path / "no-mirror").as_uri() + "/",),
                            classes=("a", "b", "c"))
    monkeypatch.setitem(data.DATASETS, "tiny", spec)
    return SimpleNamespace(src=src, arrays=arrays, md5=md5, mirror=src.as_uri() + "/")


@pytest.fixture(scope="module")
def real_root() -> Path:
    """The folder holding the real mnist/ and fashion-mnist/; fail under CI if it is missing."""
    if not _ENV_DATA:
        msg = "MINIVAE_DATA is not set: point it to the folder holding mnist/ and fashion-mnist/"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    root = REPO / _ENV_DATA
    if all((root / ds / f"{name}.gz").is_file() for ds in REAL for name in data.FILES):
        return root
    msg = (f"the real MNIST / Fashion-MNIST files are not under {root}: set MINIVAE_DATA to the "
           "folder holding mnist/ and fashion-mnist/")
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def real(real_root, tmp_path_factory) -> dict[str, data.Dataset]:
    """Both real data sets, loaded once per module through $MINIVAE_DATA, offline."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINIVAE_DATA", str(real_root))
        mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        mp.delenv("XDG_CACHE_HOME", raising=False)
        mp.setattr(data, "SYSTEM_DATA_DIR", tmp_path_factory.mktemp("usr-share-datasets"))
        return {name: load_dataset(name, offline=True) for name in REAL}


# ---------------------------------------------------------------- the real files

@pytest.mark.parametrize("name", REAL)
def test_real_dataset_shapes_dtypes_and_ranges(real, real_root, name):
    ds = real[name]
    assert ds.name == name and ds.source == real_root / name and len(ds.classes) == 10
    for x, y, n in ((ds.x_train, ds.y_train, 60000), (ds.x_test, ds.y_test, 10000)):
        assert x.shape == (n, 784) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        assert x.min() == 0.0 and x.max() == 1.0
        assert y.min() == 0 and y.max() == 9


# Counts per class: MNIST's are the published ones; Fashion-MNIST is balanced.
CLASS_COUNTS = {
    "mnist": ([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
              [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
    "fashion-mnist": ([6000] * 10, [1000] * 10),
}
MEAN_INTENSITY = {"mnist": 0.1307, "fashion-mnist": 0.2860}   # the usual normalisation constants


@pytest.mark.parametrize("name", REAL)
def test_real_class_counts_and_mean_intensity(real, name):
    ds = real[name]
    train, test = CLASS_COUNTS[name]
    assert np.bincount(ds.y_train, minlength=10).tolist() == train
    assert np.bincount(ds.y_test, minlength=10).tolist() == test
    assert abs(ds.x_train.mean(dtype=np.float64) - MEAN_INTENSITY[name]) < 5e-4


@pytest.mark.parametrize("name", REAL)
def test_real_pixels_are_the_idx_bytes_over_255(real, real_root, name):
    raw = read_idx(real_root / name / "t10k-images-idx3-ubyte.gz")           # (10000, 28, 28) uint8
    assert raw.shape == (10000, 28, 28) and raw.dtype == np.uint8
    np.testing.assert_array_equal(real[name].x_test, raw.reshape(10000, 784) / np.float32(255))
    labels = read_idx(real_root / name / "t10k-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(real[name].y_test, labels)


@pytest.mark.parametrize("name", REAL)
def test_search_order_on_real_files(real_root, tmp_path, monkeypatch, isolated, name):
    """data_dir beats $MINIVAE_DATA beats $XDG_CACHE_HOME beats ~/.cache beats /usr/share."""
    src = real_root / name
    places = [copy_files(src, tmp_path / "data-dir", link=True),
              copy_files(src, tmp_path / "minivae-data" / name, link=True),
              copy_files(src, tmp_path / "xdg" / "minivae" / name, link=True),
              copy_files(src, isolated.home / ".cache" / "minivae" / name, link=True),
              copy_files(src, data.SYSTEM_DATA_DIR / name, link=True)]
    monkeypatch.setenv("MINIVAE_DATA", str(tmp_path / "minivae-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for place in places:
        assert find_dataset(name, data_dir=tmp_path / "data-dir", offline=True) == place
        shutil.rmtree(place)
        if place == places[2]:
            monkeypatch.delenv("XDG_CACHE_HOME")          # ~/.cache is the cache only without it
    with pytest.raises(DataError, match="not found"):
        find_dataset(name, data_dir=tmp_path / "data-dir", offline=True)


@pytest.mark.parametrize("name", REAL)
def test_data_dir_may_hold_the_dataset_folder(real_root, name):
    assert find_dataset(name, data_dir=real_root, offline=True) == real_root / name
    assert find_dataset(name, data_dir=real_root / name, offline=True) == real_root / name


def test_table_matches_the_datasets_readme():
    for name, spec in data.DATASETS.items():
        files = data.FILES if spec.format == "idx" else (data.CIFAR_ARCHIVE,)
        assert set(spec.md5) == set(files) and len(spec.classes) == 10
        assert all(len(d) == 32 and int(d, 16) >= 0 for d in spec.md5.values())
    assert data.DATASETS["mnist"].md5["train-images-idx3-ubyte"] == "6bbc9ace898e44ae57da46a324031adb"
    assert data.DATASETS["fashion-mnist"].classes[9] == "Ankle boot"
    assert data.DATASETS["mnist"].image_shape == (1, 28, 28)        # CIFAR-10's: tests/test_cifar10.py


def test_module_imports_only_numpy_and_the_standard_library():
    tree = ast.parse(Path(data.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0}
    relative = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]
    assert not relative and "cupy" not in imported and "minivae" not in imported
    assert imported - {"numpy"} <= set(__import__("sys").stdlib_module_names)


# ---------------------------------------------------------------- the search order, on small files

def test_candidate_dirs_order(tmp_path, monkeypatch, isolated):
    monkeypatch.setenv("MINIVAE_DATA", str(tmp_path / "md"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert candidate_dirs("mnist", tmp_path / "dd") == [
        tmp_path / "dd", tmp_path / "dd" / "mnist", tmp_path / "md" / "mnist",
        tmp_path / "xdg" / "minivae" / "mnist", data.SYSTEM_DATA_DIR / "mnist"]
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")       # the XDG spec says: ignore it
    monkeypatch.delenv("MINIVAE_DATA")
    assert candidate_dirs("fashion-mnist") == [
        isolated.home / ".cache" / "minivae" / "fashion-mnist", data.SYSTEM_DATA_DIR / "fashion-mnist"]


def test_load_reads_the_first_folder_that_holds_the_files(tiny, tmp_path, monkeypatch):
    copy_files(tiny.src, tmp_path / "md" / "tiny")
    copy_files(tiny.src, data.SYSTEM_DATA_DIR / "tiny")
    copy_files(tiny.src, tmp_path / "dd", names=data.FILES[:3])    # incomplete: skipped
    monkeypatch.setenv("MINIVAE_DATA", str(tmp_path / "md"))
    ds = load_dataset("tiny", data_dir=tmp_path / "dd", offline=True)
    assert ds.source == tmp_path / "md" / "tiny" and ds.classes == ("a", "b", "c")
    assert ds.x_train.shape == (6, 784) and ds.x_test.shape == (4, 784)
    expected = tiny.arrays["train-images-idx3-ubyte"].reshape(6, 784) / np.float32(255)
    np.testing.assert_array_equal(ds.x_train, expected)
    np.testing.assert_array_equal(ds.y_test, [2, 1, 0, 0])
    assert "tiny" in repr(ds)


def test_load_accepts_uncompressed_files(tiny, tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in data.FILES:
        (folder / name).write_bytes(gzip.decompress((tiny.src / f"{name}.gz").read_bytes()))
    assert load_dataset("tiny", data_dir=folder, offline=True).source == folder


def test_not_found_lists_every_place_and_the_fixes(tiny, tmp_path, monkeypatch):
    copy_files(tiny.src, tmp_path / "dd", names=data.FILES[:3])
    monkeypatch.setenv("MINIVAE_DATA", str(tmp_path / "md"))
    with pytest.raises(DataError) as err:
        load_dataset("tiny", data_dir=tmp_path / "dd", offline=True)
    msg = str(err.value)
    for place in candidate_dirs("tiny", tmp_path / "dd"):
        assert str(place) in msg
    assert "missing t10k-labels-idx1-ubyte.gz" in msg and "does not exist" in msg
    assert "--data-dir" in msg and "MINIVAE_DATA" in msg and "--offline" in msg


def test_unknown_dataset_names_the_known_ones():
    for call in (lambda: load_dataset("svhn"), lambda: candidate_dirs("svhn")):
        with pytest.raises(DataError, match="unknown dataset 'svhn'.*cifar10, fashion-mnist, mnist"):
            call()


# ---------------------------------------------------------------- IDX files

dtypes = st.sampled_from(sorted(IDX_CODES, key=str))
shapes = st.lists(st.integers(0, 4), min_size=1, max_size=4).map(tuple)


@FIXTURE_OK
@given(dtype=dtypes, shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_parse_idx_round_trips_every_type(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    back = parse_idx(idx_bytes(array))
    assert back.dtype == dtype and back.dtype.isnative and back.shape == shape
    np.testing.assert_array_equal(back, array)
    back[...] = 0                                                   # a writable copy


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_reads_raw_and_gzip_and_checks_md5(tmp_path, suffix):
    labels = np.arange(10, dtype=np.uint8)
    path = tmp_path / f"labels{suffix}"
    md5 = write_idx(path, labels)
    np.testing.assert_array_equal(read_idx(path, expected_md5=md5), labels)
    np.testing.assert_array_equal(read_idx(str(path)), labels)


@pytest.mark.parametrize("magic", [b"\x01\x00\x08\x01", b"\x00\x01\x08\x01",
                                   b"\x00\x00\x07\x01", b"\x00\x00\x08\x00", b"PK\x03\x04"])
def test_bad_magic_names_the_file(tmp_path, magic):
    path = tmp_path / "bad-magic"
    path.write_bytes(magic + (3).to_bytes(4, "big") + bytes(3))
    with pytest.raises(DataError, match=f"{path} is not an IDX file.*magic number"):
        read_idx(path)


@FIXTURE_OK
@given(n=st.integers(1, 20), data_=st.data())
def test_any_truncation_is_reported(n, data_):
    raw = idx_bytes(np.arange(3 * n, dtype=np.int16).reshape(n, 3))
    cut = data_.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(DataError, match="labels.idx is truncated"):
        parse_idx(raw[:cut], "labels.idx")


def test_truncated_payload_and_extra_bytes_name_the_file(tmp_path):
    raw = idx_bytes(np.zeros((5, 28, 28), np.uint8))
    short, long = tmp_path / "short", tmp_path / "long.gz"
    short.write_bytes(raw[:-1])
    long.write_bytes(gzip.compress(raw + b"\x00\x00"))
    with pytest.raises(DataError, match=f"{short} is truncated.*3920 bytes.*3919"):
        read_idx(short)
    with pytest.raises(DataError, match=f"{long} has 2 extra bytes"):
        read_idx(long)


@pytest.mark.parametrize("damage", ["cut", "flip", "header-only"])
def test_corrupt_gzip_names_the_file(tmp_path, damage):
    gz = gzip.compress(idx_bytes(np.arange(4000, dtype=np.int32)), mtime=0)
    gz = {"cut": gz[: len(gz) // 2], "header-only": gz[:10],
          "flip": gz[:40] + bytes(b ^ 0xFF for b in gz[40:60]) + gz[60:]}[damage]
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gz)
    with pytest.raises(DataError, match=f"{path} is not a valid gzip stream"):
        read_idx(path)


def test_checksum_mismatch_names_file_both_digests_and_fix(tmp_path):
    path = tmp_path / "x.gz"
    md5 = write_idx(path, np.arange(7, dtype=np.uint8))
    with pytest.raises(DataError) as err:
        read_idx(path, expected_md5="0" * 32)
    msg = str(err.value)
    assert str(path) in msg and md5 in msg and "0" * 32 in msg and "download it again" in msg


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match=f"cannot read {tmp_path / 'nope.gz'}"):
        read_idx(tmp_path / "nope.gz")


def test_image_and_label_counts_must_agree(tiny, tmp_path, monkeypatch):
    folder = copy_files(tiny.src, tmp_path / "dd")
    md5 = dict(tiny.md5, **{"train-labels-idx1-ubyte": write_idx(
        folder / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))})
    monkeypatch.setitem(data.DATASETS, "tiny", dataclasses.replace(data.DATASETS["tiny"], md5=md5))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz holds 6 images but .*"
                                        "train-labels-idx1-ubyte.gz holds 5 labels"):
        load_dataset("tiny", data_dir=folder, offline=True)


def test_load_rejects_a_file_with_the_wrong_checksum(tiny, tmp_path):
    folder = copy_files(tiny.src, tmp_path / "dd")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.array([2, 1, 0, 1], np.uint8))
    with pytest.raises(DataError, match=f"{folder / 't10k-labels-idx1-ubyte.gz'} has MD5"):
        load_dataset("tiny", data_dir=folder, offline=True)


# ---------------------------------------------------------------- downloads (file:// mirrors only)

def test_download_fills_the_cache_from_the_first_good_mirror(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = tmp_path / "xdg" / "minivae" / "tiny"
    empty = (tmp_path / "empty").as_uri() + "/"
    ds = load_dataset("tiny", mirrors=(empty, tiny.mirror))
    assert ds.source == cache and leftovers(cache) == []
    for name in data.FILES:
        assert (cache / f"{name}.gz").read_bytes() == (tiny.src / f"{name}.gz").read_bytes()
    assert find_dataset("tiny", offline=True) == cache            # found there next time


def test_download_fetches_only_the_missing_files(tiny, tmp_path, isolated):
    cache = copy_files(tiny.src, isolated.home / ".cache" / "minivae" / "tiny", names=data.FILES[:2])
    mirror = copy_files(tiny.src, tmp_path / "half-mirror", names=data.FILES[2:])
    assert find_dataset("tiny", mirrors=(mirror.as_uri() + "/",)) == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in data.FILES)


@pytest.mark.parametrize("damage", ["wrong-content", "truncated-gzip"])
def test_bad_download_is_rejected_and_not_left_behind(tiny, tmp_path, isolated, damage):
    bad = copy_files(tiny.src, tmp_path / "bad-mirror")
    target = bad / "t10k-images-idx3-ubyte.gz"
    if damage == "wrong-content":
        write_idx(target, np.zeros((4, 28, 28), np.uint8))
    else:
        target.write_bytes(target.read_bytes()[:-100])
    with pytest.raises(DataError) as err:
        find_dataset("tiny", mirrors=(bad.as_uri() + "/",))
    msg = str(err.value)
    assert f"{bad.as_uri()}/t10k-images-idx3-ubyte.gz" in msg and "--data-dir" in msg
    assert ("has MD5" if damage == "wrong-content" else "not a valid gzip stream") in msg
    cache = isolated.home / ".cache" / "minivae" / "tiny"
    assert not (cache / "t10k-images-idx3-ubyte.gz").exists() and leftovers(cache) == []
    # a good second mirror rescues it
    assert find_dataset("tiny", mirrors=(bad.as_uri() + "/", tiny.mirror)) == cache


def test_offline_never_downloads(tiny, isolated, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("offline=True must not download")
    monkeypatch.setattr(data.urllib.request, "urlopen", no_download)
    with pytest.raises(DataError, match="drop --offline"):
        load_dataset("tiny", offline=True, mirrors=(tiny.mirror,))
    assert not (isolated.home / ".cache").exists()


# ---------------------------------------------------------------- binarisation

@FIXTURE_OK
@given(shape=st.lists(st.integers(1, 5), max_size=3).map(tuple),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_binarize_gives_zeros_and_ones_of_the_same_dtype(shape, dtype, seed):
    x = np.random.default_rng(seed).random(shape).astype(dtype)
    x_before = x.copy()
    xb = binarize(x, np.random.default_rng(seed + 1))
    assert xb.shape == x.shape and xb.dtype == dtype
    assert np.isin(xb, [0, 1]).all()
    np.testing.assert_array_equal(x, x_before)                     # input not modified


def test_binarize_mean_equals_intensity():
    x = np.linspace(0, 1, 11, dtype=np.float32)                    # (11,)
    draws = binarize(np.broadcast_to(x, (40000, 11)).copy(), np.random.default_rng(0))
    np.testing.assert_allclose(draws.mean(axis=0), x, atol=0.01)   # 4 sigma <= 0.01 at n = 40000
    assert draws[:, 0].max() == 0 and draws[:, -1].min() == 1     # u in [0, 1): 0 never, 1 always


def test_binarize_uses_only_generator_random_with_shape_and_dtype():
    class MinimalGenerator:                 # what NumPy's and CuPy's Generators both offer
        def random(self, size, dtype):
            return np.full(size, 0.5, dtype=dtype)
    x = np.array([[0.2, 0.5, 0.8]], dtype=np.float32)
    np.testing.assert_array_equal(binarize(x, MinimalGenerator()), [[0, 0, 1]])


def test_binarize_fixed_is_deterministic():
    x = np.random.default_rng(1).random((50, 784), dtype=np.float32)
    a, b = binarize_fixed(x), binarize_fixed(x)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, binarize(x, np.random.default_rng(0)))
    assert a.dtype == np.float32 and not np.array_equal(a, binarize_fixed(x, seed=1))

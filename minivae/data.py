r"""MNIST, Fashion-MNIST and CIFAR-10: find the files, check them, load them, binarise them.

MNIST and Fashion-MNIST ship as four IDX files (LeCun's format, http://yann.lecun.com/exdb/mnist/):

    train-images-idx3-ubyte.gz  (60000, 28, 28) uint8     train-labels-idx1-ubyte.gz  (60000,) uint8
    t10k-images-idx3-ubyte.gz   (10000, 28, 28) uint8     t10k-labels-idx1-ubyte.gz   (10000,) uint8

An IDX file is a 4-byte magic number ``00 00 <type code> <ndim>``, then ``ndim`` big-endian
uint32 sizes, then ``prod(sizes)`` big-endian items of the type, and nothing after.

CIFAR-10 is read from its *binary* version (https://www.cs.toronto.edu/~kriz/cifar.html), never
from the pickled "python version": ``cifar-10-binary.tar.gz`` holds ``cifar-10-batches-bin/``
with ``data_batch_1.bin`` .. ``data_batch_5.bin`` (training) and ``test_batch.bin``, each 10,000
records of 3,073 bytes: a label byte 0-9, then 1,024 red, 1,024 green and 1,024 blue bytes, each
plane a 32x32 image row by row.  A row of x is that record's 3,072 pixels in this CHW order
(``x.reshape(-1, 3, 32, 32)`` gives the images; ``Dataset.image_shape`` says so).

Where the files are looked for, in order (:func:`candidate_dirs`):

    1. ``data_dir`` (``--data-dir``): a folder holding the files, or one holding ``<dataset>/``
    2. ``$MINIVAE_DATA/<dataset>``
    3. ``$XDG_CACHE_HOME/minivae/<dataset>``, else ``~/.cache/minivae/<dataset>`` (downloads land here)
    4. ``/usr/share/datasets/<dataset>`` (Debian's ``dataset-fashion-mnist`` installs there)

Every IDX file is checked against the MD5 of its *decompressed* bytes, so a re-compressed ``.gz``
with the right content passes.  A folder holds CIFAR-10 when it has the six ``.bin`` files (in
``cifar-10-batches-bin/`` or bare) or the archive; extracted files are checked by size (the MD5s
of the single ``.bin`` files are not published), the archive by its published MD5, and its six
members are read straight out of it (nothing is extracted, no other member is touched).  Any
problem raises :class:`DataError` saying what is wrong and how to fix it.  This module uses NumPy
only; :func:`binarize` follows its input's array module.

    >>> ds = load_dataset("mnist")                 # Dataset(x_train (60000, 784) float32 in [0, 1], ...)
    >>> xb = binarize(ds.x_train[:100], np.random.default_rng(0))   # a fresh 0/1 draw each epoch
    >>> xt = binarize_fixed(ds.x_test)             # the test set, binarised once, same every time
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import math
import os
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------- the data sets

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


CIFAR_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR_DIR = "cifar-10-batches-bin"
CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST = "test_batch.bin"
CIFAR_RECORD = 1 + 3 * 32 * 32           # bytes per record: the label, then R, G, B planes of 32x32


@dataclass(frozen=True)
class DatasetSpec:
    """What minivae knows about one data set.

    ``format`` is ``"idx"`` (four IDX files, MNIST's layout) or ``"cifar"`` (CIFAR-10's binary
    batches).  For ``"idx"``, ``md5`` maps each name in :data:`FILES` to the MD5 of its
    decompressed bytes and ``<mirror><file>.gz`` is downloaded; for ``"cifar"``, ``md5`` maps
    :data:`CIFAR_ARCHIVE` to the MD5 of the archive as downloaded, ``<mirror>`` +
    :data:`CIFAR_ARCHIVE` is downloaded, and every batch file must hold exactly
    ``records_per_file`` records.  ``mirrors`` are URL prefixes ending in ``/``; ``image_shape``
    is (channels, height, width) of one image, the order of a row of x.
    """
    name: str
    md5: dict[str, str]
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int] = (1, 28, 28)
    format: str = "idx"
    records_per_file: int = 10_000


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        md5={"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
             "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
             "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
             "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"},
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        classes=tuple("0123456789"),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        md5={"train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
             "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
             "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
             "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965"},
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        md5={CIFAR_ARCHIVE: "c32a1d4ab5d03f1284b67883e8d87530"},     # 170,052,171 bytes
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        classes=("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"),
        image_shape=(3, 32, 32),
        format="cifar",
    ),
}

# Read at call time, so tests can point it at a temporary folder.
SYSTEM_DATA_DIR = Path("/usr/share/datasets")
DOWNLOAD_TIMEOUT_S = 60


class DataError(ValueError):
    """A data file is missing, damaged or inconsistent; the message names it and the fix."""


def _spec(dataset: str) -> DatasetSpec:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise DataError(f"unknown dataset {dataset!r}: choose one of "
                        f"{', '.join(sorted(DATASETS))}.") from None


# ---------------------------------------------------------------- IDX files

# type code -> big-endian dtype of the items (the IDX format's full table)
IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    r"""Decode the (decompressed) bytes of an IDX file into an array.

    ``raw`` = magic ``00 00 <type> <ndim>`` | ndim x uint32 sizes (big-endian) | payload.
    The payload must be exactly prod(sizes) * itemsize bytes.  ``source`` names the file
    in error messages.  Returns a writable array of shape ``sizes`` in native byte order.
    """
    if len(raw) < 4:
        raise DataError(f"{source} is truncated: it has {len(raw)} bytes, fewer than the "
                        "4-byte IDX magic number; delete it and download it again.")
    zero0, zero1, code, ndim = raw[:4]
    if zero0 != 0 or zero1 != 0 or code not in IDX_TYPES or ndim == 0:
        raise DataError(f"{source} is not an IDX file: its magic number is {raw[:4].hex(' ')}, "
                        "expected 00 00 <type 08/09/0b/0c/0d/0e> <ndim >= 1>; point minivae at "
                        "the original MNIST-format files.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{source} is truncated: its header needs {header} bytes but the file "
                        f"has {len(raw)}; delete it and download it again.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_TYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    got = len(raw) - header
    if got < expected:
        raise DataError(f"{source} is truncated: its header declares shape {shape} of "
                        f"{dtype.name} ({expected} bytes) but only {got} bytes follow; "
                        "delete it and download it again.")
    if got > expected:
        raise DataError(f"{source} has {got - expected} extra bytes after the {expected}-byte "
                        f"payload its header declares (shape {shape}); delete it and "
                        "download it again.")
    array = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header)
    return array.reshape(shape).astype(dtype.newbyteorder("="))   # a native, writable copy


def _check_md5(blob: bytes, source: str, expected_md5: str | None, of: str = "") -> None:
    """Nothing if ``expected_md5`` is None or the MD5 of ``blob`` equals it, else one DataError."""
    if expected_md5 is not None:
        digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
        if digest != expected_md5:
            raise DataError(f"{source} has MD5 {digest}{of} but {expected_md5} was expected; "
                            "delete it and download it again, or point --data-dir / MINIVAE_DATA "
                            "at a good copy.")


def _decode(blob: bytes, source: str, expected_md5: str | None) -> np.ndarray:
    """Decompress ``blob`` if it is gzip (starts 1f 8b), check its MD5, parse it as IDX."""
    if blob[:2] == b"\x1f\x8b":
        try:
            blob = gzip.decompress(blob)
        except (OSError, EOFError, zlib.error) as err:   # BadGzipFile is an OSError
            raise DataError(f"{source} is not a valid gzip stream ({type(err).__name__}: "
                            f"{err}), probably a partial download; delete it and download "
                            "it again.") from None
    _check_md5(blob, source, expected_md5, " (of its decompressed bytes)")
    return parse_idx(blob, source)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror or err}); check the path or "
                        "pass --data-dir.") from None


def read_idx(path: str | os.PathLike, expected_md5: str | None = None) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw (told apart by its first two bytes).

    If ``expected_md5`` is given, the MD5 of the decompressed bytes must equal it.
    Returns e.g. ``(N, 28, 28)`` uint8 for images, ``(N,)`` uint8 for labels.
    """
    path = Path(path)
    return _decode(_read_bytes(path), str(path), expected_md5)


# ---------------------------------------------------------------- CIFAR-10 binary batches

CIFAR_FILES = (*CIFAR_TRAIN, CIFAR_TEST)


def parse_cifar_batch(raw: bytes, source: str = "<bytes>",
                      n_records: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Decode one CIFAR-10 binary batch: images (N, 3072) uint8 in CHW order, labels (N,) uint8.

    ``raw`` = N records of 3,073 bytes: label | 1,024 red | 1,024 green | 1,024 blue, each plane
    32x32 row by row, so a record's pixels are already one (3, 32, 32) image flattened.  With
    ``n_records`` the file must hold exactly that many (10,000 in the real files: 30,730,000
    bytes); without, any whole number.  Labels must be 0-9.  ``source`` names the file in errors.
    Returns writable copies.
    """
    size = len(raw)
    if n_records is not None and size < n_records * CIFAR_RECORD:
        raise DataError(f"{source} is truncated: it has {size} bytes but a CIFAR-10 batch file "
                        f"holds {n_records} records of {CIFAR_RECORD} bytes "
                        f"({n_records * CIFAR_RECORD} bytes); delete it and download it again.")
    if size % CIFAR_RECORD or (n_records is not None and size != n_records * CIFAR_RECORD):
        want = (f"{n_records} records of {CIFAR_RECORD} bytes" if n_records is not None
                else f"whole {CIFAR_RECORD}-byte records")
        raise DataError(f"{source} has {size} bytes but a CIFAR-10 binary batch holds {want}: it "
                        "is not one (CIFAR-100 and the python version differ); point minivae at "
                        f"the files of {CIFAR_ARCHIVE}.")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels, images = records[:, 0].copy(), records[:, 1:].copy()
    if labels.size and labels.max() > 9:
        raise DataError(f"{source} holds label {labels.max()} but CIFAR-10's labels are 0-9: it "
                        f"is not a CIFAR-10 batch; point minivae at the files of {CIFAR_ARCHIVE}.")
    return images, labels


def _archive_members(blob: bytes, source: str, expected_md5: str | None) -> dict[str, bytes]:
    """The six batch files' bytes by file name, read in one pass out of the tar.gz ``blob``."""
    _check_md5(blob, source, expected_md5)
    wanted = {f"{CIFAR_DIR}/{name}": name for name in CIFAR_FILES}
    found = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r|gz") as tar:    # a stream: one pass
            for member in tar:
                name = wanted.get(member.name)
                if name is not None and member.isfile():                 # nothing else is read
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{source} is not a valid tar.gz archive ({type(err).__name__}: {err}), "
                        "probably a partial download; delete it and download it again.") from None
    missing = [f"{CIFAR_DIR}/{name}" for name in CIFAR_FILES if name not in found]
    if missing:
        raise DataError(f"{source} lacks {', '.join(missing)}: it is not the CIFAR-10 binary "
                        f"archive; download {CIFAR_ARCHIVE} again.")
    return found


def read_cifar_archive(path: str | os.PathLike,
                       expected_md5: str | None = None) -> dict[str, bytes]:
    """The bytes of the six batch files in ``cifar-10-binary.tar.gz``, by file name.

    If ``expected_md5`` is given, the archive's MD5 must equal it.  Only the regular-file
    members named exactly ``cifar-10-batches-bin/<batch>.bin`` are read, straight out of the
    stream: nothing is extracted to disk, so no member's path can point anywhere.
    """
    path = Path(path)
    return _archive_members(_read_bytes(path), str(path), expected_md5)


# ---------------------------------------------------------------- finding the files

def cache_dir(dataset: str) -> Path:
    """Where downloads go: ``$XDG_CACHE_HOME/minivae/<dataset>``, else ``~/.cache/minivae/<dataset>``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"  # XDG spec: ignore relative
    return root / "minivae" / dataset


def candidate_dirs(dataset: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders that may hold ``dataset``'s four files, in the order they are tried.

    ``data_dir`` and ``data_dir/<dataset>``; ``$MINIVAE_DATA/<dataset>``; :func:`cache_dir`;
    ``SYSTEM_DATA_DIR/<dataset>``.  Folders that repeat an earlier one are dropped.
    """
    _spec(dataset)
    dirs = []
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        dirs += [data_dir, data_dir / dataset]
    if os.environ.get("MINIVAE_DATA"):
        dirs.append(Path(os.environ["MINIVAE_DATA"]).expanduser() / dataset)
    dirs += [cache_dir(dataset), Path(SYSTEM_DATA_DIR) / dataset]
    return list(dict.fromkeys(dirs))


def _file_in(folder: Path, name: str) -> Path | None:
    """``folder/name.gz`` if it exists, else ``folder/name`` (an unzipped copy), else None."""
    for path in (folder / f"{name}.gz", folder / name):
        if path.is_file():
            return path
    return None


def _cifar_batches(folder: Path) -> Path | None:
    """``folder/cifar-10-batches-bin``, else ``folder``, if it holds all six batch files."""
    for batches in (folder / CIFAR_DIR, folder):
        if all((batches / name).is_file() for name in CIFAR_FILES):
            return batches
    return None


def _missing(folder: Path, spec: DatasetSpec) -> list[str]:
    """What ``folder`` lacks of ``spec``'s files: [] when it holds the data set."""
    if spec.format == "cifar":
        found = _cifar_batches(folder) is not None or (folder / CIFAR_ARCHIVE).is_file()
        return [] if found else [f"{CIFAR_ARCHIVE} or {CIFAR_DIR}/*.bin"]
    return [f"{name}.gz" for name in FILES if _file_in(folder, name) is None]


def _wanted(spec: DatasetSpec) -> str:
    """The files a folder must hold, for the not-found message."""
    if spec.format == "cifar":
        return (f"{CIFAR_ARCHIVE} or {CIFAR_DIR}/ with {CIFAR_TRAIN[0]} .. {CIFAR_TRAIN[-1]} and "
                f"{CIFAR_TEST}")
    return f"all of {', '.join(f + '.gz' for f in FILES)}"


def _download_file(url_prefixes, filename: str, verify, folder: Path) -> list[str]:
    """Fetch ``<prefix><filename>`` from the first mirror that serves a good copy.

    The bytes are verified by ``verify(blob, url)`` (MD5, then the format: gzip and IDX, or the
    tar's members) before they touch the disk, written to a hidden temp file in ``folder`` and
    moved into place with ``os.replace``, so a partial or bad download never sits under the final
    name.  Returns one line per failed mirror, or [] on success.
    """
    failures = []
    for prefix in url_prefixes:
        url = f"{prefix}{filename}"
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                blob = response.read()
            verify(blob, url)
        except (OSError, ValueError, http.client.HTTPException) as err:  # URLError, DataError, ...
            failures.append(f"{url}: {err}")
            continue
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, folder / filename)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return []
    return failures


def find_dataset(dataset: str, data_dir: str | os.PathLike | None = None,
                 offline: bool = False, mirrors: tuple[str, ...] | None = None) -> Path:
    """Return the first folder from :func:`candidate_dirs` that holds the data set's files.

    If none does and ``offline`` is False, download the missing files (CIFAR-10: the archive)
    into :func:`cache_dir` from ``mirrors`` (URL prefixes tried in turn; default
    ``DATASETS[dataset].mirrors``).
    Otherwise raise one :class:`DataError` listing every folder looked in and the fixes.
    Only presence is checked here; :func:`load_dataset` verifies the contents.
    """
    spec = _spec(dataset)
    looked = []
    for folder in candidate_dirs(dataset, data_dir):
        try:
            missing = _missing(folder, spec)
        except OSError as err:                       # e.g. a folder without search permission
            raise DataError(f"cannot look into {folder} ({err.strerror or err}): give yourself "
                            f"read and search permission on it (chmod u+rx {folder}) or pass "
                            "another --data-dir.") from None
        if not missing:
            return folder
        state = "does not exist" if not folder.is_dir() else f"missing {', '.join(missing)}"
        looked.append(f"  {folder}  ({state})")
    cache = cache_dir(dataset)
    fixes = (f"pass --data-dir DIR (a folder holding the files or {dataset}/), "
             f"set MINIVAE_DATA to a folder holding {dataset}/")
    header = (f"{dataset} not found: no folder holds {_wanted(spec)}. "
              "Looked in:\n" + "\n".join(looked))
    if offline:
        raise DataError(f"{header}\nFix: {fixes}, or drop --offline to download into {cache}.")

    failures = []
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if spec.format == "cifar":                   # one archive, checked whole before it lands
            failures = _download_file(mirrors or spec.mirrors, CIFAR_ARCHIVE, lambda blob, url:
                                      _archive_members(blob, url, spec.md5[CIFAR_ARCHIVE]), cache)
        else:
            for name in FILES:
                if _file_in(cache, name) is None:
                    failures = _download_file(mirrors or spec.mirrors, f"{name}.gz",
                                              lambda blob, url: _decode(blob, url, spec.md5[name]),
                                              cache)
                    if failures:
                        break               # the mirrors are down or bad: don't wait on the rest
    except OSError as err:
        failures.append(f"{cache}: {err}")
    if failures:
        raise DataError(f"{header}\nDownloading into {cache} failed:\n  " + "\n  ".join(failures)
                        + f"\nFix: {fixes}, or download the files by hand into {cache}.")
    return cache


# ---------------------------------------------------------------- loading

@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A loaded data set.  x: float32 (N, C*H*W) in [0, 1]; y: int64 (N,) class indices.

    A row of x is one image of ``image_shape`` = (C, H, W) flattened in that order:
    ``x.reshape(-1, *image_shape)`` gives the images ((1, 28, 28) for MNIST, (3, 32, 32) for
    CIFAR-10)."""
    x_train: np.ndarray      # (60000, 784) float32; CIFAR-10 (50000, 3072)
    y_train: np.ndarray      # (60000,) int64
    x_test: np.ndarray       # (10000, 784) float32; CIFAR-10 (10000, 3072)
    y_test: np.ndarray       # (10000,) int64
    name: str
    source: Path             # the folder the files were read from
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int] = (1, 28, 28)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
                f"source={str(self.source)!r})")


def _read_split(folder: Path, spec: DatasetSpec, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``<split>-images`` (N, H, W) uint8 and ``<split>-labels`` (N,); return x (N, H*W), y (N,)."""
    images_name, labels_name = f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"
    images_path, labels_path = _file_in(folder, images_name), _file_in(folder, labels_name)
    if images_path is None or labels_path is None:
        raise DataError(f"{folder} lacks {images_name}.gz or {labels_name}.gz; "
                        "restore the file or pass another --data-dir.")
    images = read_idx(images_path, spec.md5[images_name])
    labels = read_idx(labels_path, spec.md5[labels_name])
    if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{images_path} and {labels_path} should hold (N, H, W) and (N,) uint8 "
                        f"but hold {images.shape} {images.dtype} and {labels.shape} {labels.dtype}; "
                        "point minivae at the original files.")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                        f"{len(labels)} labels; the two files come from different sources, "
                        "so restore both from the same download.")
    if labels.size and labels.max() >= len(spec.classes):
        raise DataError(f"{labels_path} holds label {labels.max()} but {spec.name} has only "
                        f"{len(spec.classes)} classes; point minivae at the original files.")
    x = images.reshape(len(images), -1).astype(np.float32) / np.float32(255)   # (N, H*W) in [0, 1]
    return x, labels.astype(np.int64)


def _read_cifar(folder: Path, spec: DatasetSpec) -> tuple[np.ndarray, ...]:
    """x_train (50000, 3072), y_train, x_test (10000, 3072), y_test from the batch files in
    ``folder`` (extracted, checked by size) or from its archive (checked by MD5 first)."""
    batches = _cifar_batches(folder)
    if batches is not None:
        blobs = {name: _read_bytes(batches / name) for name in CIFAR_FILES}
        sources = {name: str(batches / name) for name in CIFAR_FILES}
    else:
        archive = folder / CIFAR_ARCHIVE
        blobs = read_cifar_archive(archive, spec.md5[CIFAR_ARCHIVE])
        sources = {name: f"{archive} member {CIFAR_DIR}/{name}" for name in CIFAR_FILES}
    parsed = {name: parse_cifar_batch(blobs.pop(name), sources[name], spec.records_per_file)
              for name in CIFAR_FILES}                                 # bytes freed as they go
    splits = []
    for names in (CIFAR_TRAIN, (CIFAR_TEST,)):
        images = np.concatenate([parsed[name][0] for name in names])   # (N, 3072) uint8, CHW
        x = images.astype(np.float32)
        x /= np.float32(255)                                           # k/255 in [0, 1]
        splits += [x, np.concatenate([parsed[name][1] for name in names]).astype(np.int64)]
    return tuple(splits)


def load_dataset(dataset: str = "mnist", data_dir: str | os.PathLike | None = None,
                 offline: bool = False, mirrors: tuple[str, ...] | None = None) -> Dataset:
    """Find (see :func:`find_dataset`), verify and load ``dataset`` as float32 pixels in [0, 1].

    MNIST and Fashion-MNIST: every file's decompressed MD5 is checked and the image and label
    counts must agree; x_train (60000, 784), y_train (60000,), x_test (10000, 784), y_test
    (10000,).  CIFAR-10: the archive's MD5, or each extracted batch file's size, is checked;
    x_train (50000, 3072) and x_test (10000, 3072), each row an image in CHW order, pixel k as
    k/255.  Returns a :class:`Dataset` whose ``image_shape`` is (C, H, W).
    """
    spec = _spec(dataset)
    folder = find_dataset(dataset, data_dir, offline=offline, mirrors=mirrors)
    if spec.format == "cifar":
        x_train, y_train, x_test, y_test = _read_cifar(folder, spec)
    else:
        x_train, y_train = _read_split(folder, spec, "train")
        x_test, y_test = _read_split(folder, spec, "t10k")
    return Dataset(x_train, y_train, x_test, y_test, name=dataset, source=folder,
                   classes=spec.classes, image_shape=spec.image_shape)


# ---------------------------------------------------------------- binarisation

def binarize(x, rng):
    r"""Dynamic binarisation: x_b = 1[u < x] with u ~ U[0, 1), so E[x_b] = x.

    ``x``: float array of intensities in [0, 1], any shape, NumPy or CuPy; ``rng``: a
    NumPy or CuPy ``Generator`` on the same device as ``x``.  Returns 0/1 values of
    ``x``'s shape and dtype.  Draw a fresh binarisation for every training batch.
    """
    u = rng.random(x.shape, dtype=x.dtype)          # same shape/dtype/device as x
    return (u < x).astype(x.dtype)


def binarize_fixed(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """The test set's binarisation: done once on host with ``np.random.default_rng(seed)``.

    ``x``: NumPy float array in [0, 1]; the same ``x`` and ``seed`` give the same result
    on every call and every machine, so test-set scores are comparable.
    """
    return binarize(x, np.random.default_rng(seed))

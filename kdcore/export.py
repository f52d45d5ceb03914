"""Getting models out of the app and teachers into it: student downloads (ONNX, safetensors, model card) and
teacher-zoo zips an instructor can train once and hand out.

Student downloads: `student_files(result, role)` gives {file name: bytes} for `<name>.onnx`,
`<name>.safetensors` and `model_card.json`; `student_bundle_zip` packs the same three files into one
zip (one download button). The ONNX graph takes "image", float32 N x C x H x W with pixel values scaled
to [0, 1] and then normalised per channel as (x - mean) / std, and returns "logits", N x 10.

Teacher zoo: `export_zoo(keys)` zips cached teachers' weights (`teachers/<key>.safetensors`) with a
`manifest.json`; cached logits are left out and recomputed on first use after import.
`import_zoo(zip_bytes)` reads only JSON and safetensors (never pickle, never code), validates every
entry before writing any, and writes them into the teacher cache in the cache's own format. Any failure
to read the zip, foreseen or not (a manifest nested too deeply, text that is not UTF-8, a number too large),
is a ZooImportError that says nothing was imported; a cache path made from an imported key must pass
kdcore.store.inside_folder, so a cache file that links outside the cache is never written through.

A cache key hashes a fingerprint of the images the teacher was trained on, which the importer can
only recompute with that dataset loaded. So import always checks a key's form against its
manifest entry (`<dataset>-<arch>-s<seed>-<16 hex digits>`) and the weights' names, shapes and
dtypes against the local zoo; the full key is recomputed only for datasets passed in `datasets`.
A key computed from other data is harmless: the app never looks it up and trains its own teacher.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import re
import statistics
import threading
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import torch
from filelock import FileLock
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from . import __version__, metrics, models, teachers
from . import data as kdata
from .experiments import RunResult
from .store import inside_folder
from .train import TrainSettings

ONNX_OPSET = 17
STUDENT_ROLES = ("scratch", "distilled")
PREPROCESSING = "pixel values scaled to [0,1] then (x-mean)/std per channel"

ZOO_FORMAT = "kd-playground-teacher-zoo"
ZOO_VERSION = 1
ZOO_MANIFEST = "manifest.json"
MAX_ZOO_BYTES = 500 * 1024 * 1024  # uncompressed total, checked before anything is extracted
MAX_ZOO_MEMBERS = 1000
MAX_MANIFEST_BYTES = 10 * 1024 * 1024

_KEY = re.compile(r"[a-z0-9][a-z0-9-]*-s[0-9]+-[0-9a-f]{16}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".npy", ".npz", ".joblib")
# The TorchScript exporter keeps global state while tracing, so two sessions must not export at once.
_export_lock = threading.Lock()


class ZooImportError(ValueError):
    """A teacher-zoo file was refused; the message names the problem and nothing was written."""

    user_facing = True


# --------------------------------------------------------------------------- student downloads


def student_onnx_bytes(model: nn.Module, dataset_name: str) -> bytes:
    """The model as an ONNX graph: input "image" (N x C x H x W float32, normalised), output "logits" (N x 10).

    The batch axis is dynamic. A CPU copy in eval mode is exported, so the caller's model keeps its
    device and training flag. Uses torch's TorchScript exporter (dynamo=False): the newer exporter
    needs the onnxscript package, which the app does not install.
    """
    shape = models.image_shape(dataset_name)
    export_model = copy.deepcopy(model).cpu().eval()
    # Batch 2, not 1, so the tracer cannot mistake the batch size for a constant.
    example = torch.zeros((2, *shape), dtype=torch.float32)
    buf = io.BytesIO()
    try:
        with _export_lock, torch.no_grad():
            torch.onnx.export(
                export_model,
                (example,),
                buf,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
    except RuntimeError as exc:
        raise ValueError(
            f"model does not accept {dataset_name} images of shape {shape} (choose the dataset it was built for): {exc}"
        ) from None
    return buf.getvalue()


def student_safetensors_bytes(model: nn.Module, *, metadata: dict[str, str] | None = None) -> bytes:
    """The model's state dict in safetensors format (loadable with safetensors.torch.load, no pickle)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_safetensors(state, metadata=metadata)


def _student(result: RunResult, role: str) -> nn.Module:
    if role not in STUDENT_ROLES:
        raise ValueError(f"role must be one of {STUDENT_ROLES}, got {role!r}")
    model = result.students.get(role)
    if model is None:
        raise ValueError(
            f"this run has no {role} student to export (only runs trained in this session keep "
            "their models); run the distillation again"
        )
    return model


def student_name(result: RunResult, role: str) -> str:
    """The base file name of a student's downloads, e.g. "mnist-sample-mlp-medium-distilled"."""
    if role not in STUDENT_ROLES:
        raise ValueError(f"role must be one of {STUDENT_ROLES}, got {role!r}")
    return f"{result.config.dataset}-{result.config.student}-{role}"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def model_card(result: RunResult, role: str = "distilled", *, data: kdata.Dataset | None = None) -> dict:
    """What someone needs to use the exported student: config, its metrics, classes and input normalisation.

    `data` supplies mean and std; by default the run's dataset is loaded (already in memory after a
    run in this process; never downloaded).
    """
    model = _student(result, role)
    data = data or kdata.load(result.config.dataset, download=False)
    row = result.row(role)
    c, h, w = models.image_shape(result.config.dataset)
    return {
        "name": student_name(result, role),
        "role": role,
        "architecture": result.config.student,
        "dataset": result.config.dataset,
        "params": metrics.param_count(model),
        "config": result.config.to_dict(),
        "metrics": row.to_json() if row is not None else None,
        "kd_gain": result.kd_gain,
        "partial": result.partial,
        "classes": list(result.classes),
        "normalisation": {
            "mean": list(data.mean),
            "std": list(data.std),
            "input_shape": ["N", c, h, w],
            "dtype": "float32",
            "preprocessing": PREPROCESSING,
        },
        "onnx": {
            "input": "image",
            "output": "logits",
            "opset": ONNX_OPSET,
            "output_meaning": "unnormalised class scores; softmax gives probabilities in `classes` order",
        },
        "kdcore_version": __version__,
        "created": _utc_now(),
    }


def student_files(result: RunResult, role: str = "distilled", *, data: kdata.Dataset | None = None) -> dict[str, bytes]:
    """{file name: bytes} for the student's ONNX graph, safetensors weights and model_card.json.

    The card written here also lists each file's sha256 under "files".
    """
    model = _student(result, role)
    name = student_name(result, role)
    card = model_card(result, role, data=data)
    files = {
        f"{name}.onnx": student_onnx_bytes(model, result.config.dataset),
        f"{name}.safetensors": student_safetensors_bytes(
            model, metadata={"architecture": result.config.student, "dataset": result.config.dataset, "role": role}
        ),
    }
    card["files"] = {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    files["model_card.json"] = json.dumps(card, indent=1).encode()
    return files


def student_bundle_zip(result: RunResult, role: str = "distilled", *, data: kdata.Dataset | None = None) -> bytes:
    """One zip (download file name: `student_name(result, role) + ".zip"`) holding the files of `student_files`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in student_files(result, role, data=data).items():
            zf.writestr(name, blob)
    return buf.getvalue()


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_latency(
    onnx_bytes: bytes, input_shape: tuple[int, int, int], *, warmup: int = 5, repeats: int = 30, repeats_b256: int = 5
) -> metrics.Latency | None:
    """Median ms at batch 1 and images/s at batch 256 of an ONNX graph under onnxruntime, or None without it.

    Same method as metrics.measure_latency (same inputs, warm-up, medians, LATENCY_THREADS threads),
    so the numbers sit next to PyTorch's in one table.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)
    ):
        raise ValueError(f"input_shape must be three positive ints (channels, height, width), got {input_shape!r}")
    for value, name, minimum in ((warmup, "warmup", 0), (repeats, "repeats", 1), (repeats_b256, "repeats_b256", 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = metrics.LATENCY_THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(bytes(onnx_bytes), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn((1, *input_shape), generator=gen).numpy()
    x256 = torch.randn((256, *input_shape), generator=gen).numpy()

    def median_seconds(x, count: int) -> float:
        for _ in range(warmup):
            session.run(None, {input_name: x})
        times = []
        for _ in range(count):
            start = time.perf_counter()
            session.run(None, {input_name: x})
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    s1 = median_seconds(x1, repeats)
    s256 = median_seconds(x256, repeats_b256)
    return metrics.Latency(ms_batch1=s1 * 1000.0, throughput_b256=256 / s256, threads=metrics.LATENCY_THREADS)


# --------------------------------------------------------------------------- teacher zoo: export


def _shape_signature(shapes: dict[str, list[int]]) -> str:
    # The same hash as teachers.architecture_signature, taken over the file's own shapes.
    return hashlib.sha256(json.dumps(shapes, sort_keys=True).encode()).hexdigest()[:16]


def _read_manifest(key: str) -> dict | None:
    try:
        manifest = json.loads((teachers.cache_dir() / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("kind") == "teacher" else None


def cached_teachers() -> list[dict]:
    """Every teacher in the cache (manifest fields plus "key", "member" and "size_bytes"), sorted by key.

    Reads manifests only; an entry whose weights turn out damaged is skipped by `export_zoo`.
    """
    out = []
    for path in sorted(teachers.cache_dir().glob("*.json")):
        key = path.name[: -len(".json")]
        manifest = _read_manifest(key) if _KEY.fullmatch(key) else None
        weights = path.with_name(f"{key}.safetensors")
        if manifest is None or not isinstance(manifest.get("seed"), int) or not weights.is_file():
            continue
        member = teachers.Member(str(manifest.get("arch")), manifest["seed"])
        out.append({**manifest, "key": key, "member": member.name, "size_bytes": weights.stat().st_size})
    return out


def export_zoo(keys: Iterable[str] | None = None) -> bytes:
    """A zip of cached teachers (all, or the given cache keys): `teachers/<key>.safetensors` and `manifest.json`.

    A requested key that is missing or damaged in the cache raises ValueError; with keys=None damaged
    entries are left out. Raises ValueError when there is nothing to export.
    """
    requested = None if keys is None else list(dict.fromkeys(keys))
    available = [t["key"] for t in cached_teachers()]
    if requested is not None:
        unknown = [k for k in requested if k not in available]
        if unknown:
            raise ValueError(f"keys {unknown} are not cached teachers; choose from: {', '.join(available) or 'none'}")
    entries, blobs = [], {}
    for key in available if requested is None else requested:
        base = teachers.cache_dir() / key
        with FileLock(str(base) + ".lock"):
            manifest = _read_manifest(key)
            try:
                blob = base.with_name(f"{key}.safetensors").read_bytes()
            except OSError:
                blob = None
        fields = ("arch", "seed", "dataset", "settings", "sha256", "shapes")
        if (
            manifest is None
            or blob is None
            or not all(f in manifest for f in fields)
            or hashlib.sha256(blob).hexdigest() != manifest["sha256"]
        ):
            if requested is not None:
                raise ValueError(
                    f"cached teacher {key} is damaged (its weights do not match its manifest); "
                    "use it once in the app to retrain it, then export again"
                )
            continue
        entries.append(
            {
                "key": key,
                "arch": manifest["arch"],
                "seed": manifest["seed"],
                "dataset": manifest["dataset"],
                "settings": manifest["settings"],
                "train_seconds": manifest.get("train_seconds", 0.0),
                "sha256": manifest["sha256"],
                "shapes": manifest["shapes"],
                "architecture_signature": _shape_signature(manifest["shapes"]),
                "file": f"teachers/{key}.safetensors",
            }
        )
        blobs[entries[-1]["file"]] = blob
    if not entries:
        raise ValueError("there are no cached teachers to export; train some on the Teachers page first")
    manifest = {
        "format": ZOO_FORMAT,
        "version": ZOO_VERSION,
        "cache_version": teachers.CACHE_VERSION,
        "kdcore_version": __version__,
        "created": _utc_now(),
        "teachers": entries,
    }
    buf = io.BytesIO()
    # Stored, not deflated: float weights barely compress and a hand-out zip should build fast.
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(ZOO_MANIFEST, json.dumps(manifest, indent=1))
        for name, blob in blobs.items():
            zf.writestr(name, blob)
    return buf.getvalue()


# --------------------------------------------------------------------------- teacher zoo: import


def _refuse(problem: str) -> ZooImportError:
    return ZooImportError(f"This teacher zoo file was refused and nothing was imported: {problem}")


def _source(zip_bytes) -> BinaryIO:
    if isinstance(zip_bytes, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(zip_bytes))
    if hasattr(zip_bytes, "read") and hasattr(zip_bytes, "seek"):
        return zip_bytes
    raise ValueError(f"zip_bytes must be bytes or a seekable binary file, got {type(zip_bytes).__name__}")


def _open_zip(source: BinaryIO) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise _refuse("it is not a zip file. Upload the .zip made by the app's teacher-zoo export.") from None


def _check_members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Every member's name is safe and expected, sizes are bounded: checked from the directory, before reading."""
    infos = zf.infolist()
    if len(infos) > MAX_ZOO_MEMBERS:
        raise _refuse(f"it holds {len(infos)} files; a teacher zoo holds at most {MAX_ZOO_MEMBERS}.")
    total = sum(i.file_size for i in infos)
    if total > MAX_ZOO_BYTES:
        raise _refuse(f"it would unpack to {total / 1e6:.0f} MB; the limit is {MAX_ZOO_BYTES / 1e6:.0f} MB.")
    files: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name).parts
        if name.startswith(("/", "\\")) or "\\" in name or ".." in parts or ":" in name or "\x00" in name:
            raise _refuse(f"it contains an unsafe path {name!r} (absolute, or leading outside the folder).")
        if info.flag_bits & 0x1:
            raise _refuse(f"{name!r} is encrypted; export the zoo again without a password.")
        if info.is_dir():
            if name != "teachers/":
                raise _refuse(
                    f"it contains an unexpected folder {name!r}; a teacher zoo holds only "
                    f"{ZOO_MANIFEST} and teachers/<key>.safetensors."
                )
            continue
        if name.lower().endswith(_PICKLE_SUFFIXES):
            raise _refuse(
                f"it contains {name!r}, a pickle-style file. Only safetensors weights are accepted, "
                "because loading pickled files can run code."
            )
        is_weights = (
            name.startswith("teachers/")
            and name.endswith(".safetensors")
            and _KEY.fullmatch(name[len("teachers/") : -len(".safetensors")])
        )
        if name != ZOO_MANIFEST and not is_weights:
            raise _refuse(
                f"it contains an unexpected file {name!r}; a teacher zoo holds only "
                f"{ZOO_MANIFEST} and teachers/<key>.safetensors."
            )
        if name in files:
            raise _refuse(f"it contains {name!r} twice.")
        files[name] = info
    if ZOO_MANIFEST not in files:
        raise _refuse(f"it has no {ZOO_MANIFEST}, so it is not a teacher zoo made by this app.")
    if files[ZOO_MANIFEST].file_size > MAX_MANIFEST_BYTES:
        raise _refuse(f"{ZOO_MANIFEST} is larger than {MAX_MANIFEST_BYTES // (1024 * 1024)} MB.")
    return files


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        with zf.open(info) as f:
            blob = f.read(info.file_size + 1)  # never more than the directory promised
    except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError, EOFError, ValueError) as exc:
        raise _refuse(f"{info.filename!r} cannot be read ({exc}); the zip is damaged.") from None
    if len(blob) != info.file_size:
        raise _refuse(f"{info.filename!r} is not the size the zip's directory says; the zip is damaged.")
    return blob


def _parse_manifest(blob: bytes) -> list[dict]:
    # Decoded here, not by json.loads, which would also take UTF-16 and UTF-32; the app writes UTF-8 only.
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(f"{ZOO_MANIFEST} is not UTF-8 text.") from None
    try:
        manifest = json.loads(text)
    except RecursionError:
        raise _refuse(f"{ZOO_MANIFEST} is nested too deeply to be a teacher zoo manifest.") from None
    except ValueError:
        raise _refuse(f"{ZOO_MANIFEST} is not valid JSON.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ZOO_FORMAT:
        raise _refuse(f'{ZOO_MANIFEST} does not describe a teacher zoo (its "format" is not {ZOO_FORMAT!r}).')
    version = manifest.get("version")
    if version != ZOO_VERSION:
        raise _refuse(
            f"it is zoo format version {version!r}, but this app reads version {ZOO_VERSION}; "
            "export it again with the same app version you import it into."
        )
    entries = manifest.get("teachers")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise _refuse(f"{ZOO_MANIFEST} lists no teachers.")
    return entries


def _check_entry(entry: dict) -> tuple[str, TrainSettings]:
    """The manifest fields of one teacher, checked for type, allowed values and agreement with its key."""
    key = entry.get("key")
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise _refuse(f"a teacher has an invalid key {key!r}.")
    arch, dataset, seed = entry.get("arch"), entry.get("dataset"), entry.get("seed")
    zoo = [m.name for m in models.available("teacher")]
    if arch not in zoo:
        raise _refuse(
            f"teacher {key} has architecture {arch!r}, which is not in this app's teacher zoo ({', '.join(zoo)})."
        )
    if dataset not in kdata.DATASETS:
        raise _refuse(f"teacher {key} is for dataset {dataset!r}; this app knows {', '.join(kdata.DATASETS)}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _refuse(f"teacher {key} has an invalid seed {seed!r} (a whole number >= 0).")
    prefix = f"{dataset}-{arch}-s{seed}-"
    if not (key.startswith(prefix) and re.fullmatch(r"[0-9a-f]{16}", key[len(prefix) :])):
        raise _refuse(
            f"teacher key {key} does not match its dataset, architecture and seed (expected {prefix}<16 hex digits>)."
        )
    raw = entry.get("settings")
    try:
        settings = TrainSettings(**raw)
        if asdict(settings) != raw:
            raise ValueError("settings changed type")
    except (TypeError, ValueError, OverflowError):  # OverflowError: epochs of Infinity or 1e999
        raise _refuse(f"teacher {key} has invalid training settings {raw!r}.") from None
    if not isinstance(entry.get("sha256"), str) or not _HEX64.fullmatch(entry["sha256"]):
        raise _refuse(f"teacher {key} has no valid sha256 in {ZOO_MANIFEST}.")
    shapes = entry.get("shapes")
    if not isinstance(shapes, dict) or not all(
        isinstance(v, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in v) for v in shapes.values()
    ):
        raise _refuse(f"teacher {key} has no valid tensor shapes in {ZOO_MANIFEST}.")
    seconds = entry.get("train_seconds", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        raise _refuse(f"teacher {key} has an invalid train_seconds {seconds!r}.")
    if entry.get("file", f"teachers/{key}.safetensors") != f"teachers/{key}.safetensors":
        raise _refuse(f"teacher {key} points at {entry.get('file')!r} instead of teachers/{key}.safetensors.")
    return key, settings


def _check_weights(entry: dict, blob: bytes) -> dict[str, torch.Tensor]:
    """Hash, then safetensors parsing, then names/shapes/dtypes against a freshly built model of the zoo."""
    key, arch, dataset = entry["key"], entry["arch"], entry["dataset"]
    if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
        raise _refuse(
            f"the weights of teacher {key} do not match their sha256 in {ZOO_MANIFEST} "
            "(the file was changed or damaged)."
        )
    try:
        tensors = load_safetensors(blob)
    except Exception as exc:
        raise _refuse(f"the weights of teacher {key} are not a valid safetensors file ({exc}).") from None
    if {k: list(v.shape) for k, v in tensors.items()} != entry["shapes"]:
        raise _refuse(f"the tensor shapes of teacher {key} differ from those listed in {ZOO_MANIFEST}.")
    expected = models.build(arch, dataset).state_dict()
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise _refuse(
            f"teacher {key} does not fit architecture {arch!r} on {dataset}: "
            f"missing tensors {missing}, unexpected tensors {extra}."
        )
    for name, ref in expected.items():
        got = tensors[name]
        if got.shape != ref.shape or got.dtype != ref.dtype:
            raise _refuse(
                f"teacher {key} does not fit architecture {arch!r} on {dataset}: tensor {name!r} is "
                f"{got.dtype} {list(got.shape)}, expected {ref.dtype} {list(ref.shape)}."
            )
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise _refuse(f"teacher {key} has NaN or infinite values in {name!r}.")
    if entry.get("architecture_signature") != teachers.architecture_signature(arch, dataset):
        raise _refuse(
            f"teacher {key} records architecture signature {entry.get('architecture_signature')!r}, "
            f"but its weights have {teachers.architecture_signature(arch, dataset)!r}."
        )
    return tensors


def import_zoo(zip_bytes, *, datasets: Sequence[kdata.Dataset] = ()) -> list[str]:
    """Validate a zoo zip completely, then write its teachers into the cache; returns the imported keys.

    Raises ZooImportError (message for the user) and writes nothing if any part is wrong. For a
    teacher whose dataset is among `datasets`, its key must equal teachers.teacher_key (same images,
    architecture, seed and settings); other keys are checked for form only (see module docstring).
    A teacher already cached under the same key is replaced, and its cached logits are dropped so
    they are recomputed from the imported weights.
    """
    source = _source(zip_bytes)
    try:
        checked = _read_zoo(source, {d.name: d for d in datasets})
    except ZooImportError:
        raise
    # The checks name every problem they foresee; whatever else goes wrong, the file was not readable and
    # nothing has been written yet, which is what the user needs to hear.
    except RecursionError:
        raise _refuse("it is nested too deeply to read.") from None
    except MemoryError:
        raise _refuse("it is too large to read into memory.") from None
    except Exception as exc:
        raise _refuse(f"it could not be read ({type(exc).__name__}: {exc}).") from None
    _write_entries(checked)
    return [key for key, _, _, _ in checked]


def _cache_base(key: str) -> Path:
    """Where teacher `key` goes in the cache, if every file the import writes there stays inside the cache."""
    cache = teachers.cache_dir()
    base = cache / key
    for path in (*teachers._entry_paths(base), *teachers._entry_paths(base.with_name(f"{key}.logits"))):
        if inside_folder(cache, path) is None:
            raise _refuse(
                f"the teacher cache already has {path}, which links outside {cache}. Remove that link, "
                "then import again."
            )
    return base


def _read_zoo(
    source: BinaryIO, by_name: dict[str, kdata.Dataset]
) -> list[tuple[str, Path, dict, dict[str, torch.Tensor]]]:
    """Every teacher of the zip, checked: (key, cache base path, cache manifest fields, tensors)."""
    with _open_zip(source) as zf:
        files = _check_members(zf)
        entries = _parse_manifest(_read_member(zf, files[ZOO_MANIFEST]))
        checked: list[tuple[str, Path, dict, dict[str, torch.Tensor]]] = []
        for entry in entries:
            key, settings = _check_entry(entry)
            if any(key == k for k, _, _, _ in checked):
                raise _refuse(f"teacher {key} is listed twice in {ZOO_MANIFEST}.")
            name = f"teachers/{key}.safetensors"
            if name not in files:
                raise _refuse(f"{ZOO_MANIFEST} lists teacher {key}, but the zip has no {name}.")
            data = by_name.get(entry["dataset"])
            if data is not None:
                local = teachers.teacher_key(data, teachers.Member(entry["arch"], entry["seed"]), settings)
                if local != key:
                    raise _refuse(
                        f"teacher {key} was trained on other {data.name} images or with another app "
                        f"version than this one (this app's key would be {local})."
                    )
            tensors = _check_weights(entry, _read_member(zf, files[name]))
            info = {
                "kind": "teacher",
                "dataset": entry["dataset"],
                "arch": entry["arch"],
                "seed": entry["seed"],
                "settings": asdict(settings),
                "train_seconds": float(entry.get("train_seconds", 0.0)),
                "sha256": entry["sha256"],
            }
            checked.append((key, _cache_base(key), info, tensors))
        listed = {f"teachers/{k}.safetensors" for k, _, _, _ in checked}
        unlisted = sorted(n for n in files if n != ZOO_MANIFEST and n not in listed)
        if unlisted:
            raise _refuse(f"it contains {unlisted[0]!r}, which {ZOO_MANIFEST} does not list.")
    return checked


def _write_entries(checked: list[tuple[str, Path, dict, dict[str, torch.Tensor]]]) -> None:
    """Each entry atomically (weights, then manifest) under the cache's lock; on a disk error, undo this import."""
    written = []
    try:
        for key, base, info, tensors in checked:
            with FileLock(str(base) + ".lock"):
                current = teachers._load_entry(base)
                if current is not None and current[1].get("sha256") == info["sha256"]:
                    continue  # the very same weights: keep them and their cached logits
                teachers._remove_entry(base.with_name(f"{key}.logits"))  # computed from other weights
                teachers._save_entry(base, tensors, {k: v for k, v in info.items() if k != "sha256"})
            written.append(base)
    except OSError as exc:
        for base in written:
            teachers._remove_entry(base)
        raise ZooImportError(
            f"Could not write the imported teachers to {teachers.cache_dir()} "
            f"({exc.strerror or exc}); free some disk space or set KD_DATA_DIR to a "
            "writable folder, then import again."
        ) from None

"""Exports: students as ONNX/safetensors with a model card, and teacher-zoo zips that import safely or not at all."""

import hashlib
import io
import json
import pickle
import sys
import zipfile

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from kdcore import data as kdata
from kdcore import events as ev
from kdcore import export, models, teachers
from kdcore.experiments import ModelRow, RunConfig, RunResult
from kdcore.teachers import Member
from kdcore.train import TrainSettings
from tests.synthetic import synthetic

SETTINGS = TrainSettings(epochs=1)
MEMBERS = (Member("mlp-wide"), Member("cnn-deep", 1))  # cnn-deep has batch-norm buffers (an int64 tensor too)


@pytest.fixture(scope="module")
def data():
    return synthetic(n_train=256)


@pytest.fixture(scope="module")
def zoo(data, tmp_path_factory):
    """Two teachers trained for one epoch in a data dir of their own, exported as a zoo zip."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KD_DATA_DIR", str(tmp_path_factory.mktemp("instructor")))
        trained = [teachers.get_teacher(data, m, SETTINGS, device=torch.device("cpu")) for m in MEMBERS]
        return export.export_zoo(), trained


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty data dir: the importing learner's machine."""
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    return teachers.cache_dir()


def cache_files(cache_dir):
    return sorted(p.name for p in cache_dir.iterdir() if not p.name.endswith(".lock"))


def unzip(blob):
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def rezip(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, blob in files.items():
            zf.writestr(name, blob)
    return buf.getvalue()


def tamper(zoo_bytes, edit_manifest=None, edit_files=None):
    files = unzip(zoo_bytes)
    manifest = json.loads(files["manifest.json"])
    if edit_files:
        edit_files(files, manifest)
    if edit_manifest:
        edit_manifest(manifest)
    files["manifest.json"] = json.dumps(manifest).encode()
    return rezip(files)


def run_result(student, dataset, model):
    config = RunConfig(dataset=dataset, teachers=("mlp-wide",), student=student, epochs=1)
    row = ModelRow(
        name=f"distilled ({student})",
        role="distilled",
        accuracy=0.91,
        params=1,
        size_bytes=1,
        latency_ms_b1=0.2,
        throughput_b256=5000.0,
        agreement=0.95,
        kl_to_teacher=0.1,
        ece=0.02,
        per_class=[0.9] * 10,
    )
    return RunResult(
        config,
        [row],
        {"scratch": [], "distilled": []},
        False,
        1.0,
        tuple(str(i) for i in range(10)),
        students={"distilled": model},
    )


# --------------------------------------------------------------------------- students


@pytest.mark.parametrize("student, dataset", [("mlp-small", "mnist-sample"), ("cnn-small", "cifar10")])
def test_onnx_student_gives_the_same_logits_as_pytorch_for_any_batch_size(student, dataset):
    model = models.build(student, dataset, seed=0).train()
    blob = export.student_onnx_bytes(model, dataset)
    assert model.training, "exporting must not change the caller's model mode"
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    model.eval()
    for batch in (1, 7):
        x = torch.randn((batch, *models.image_shape(dataset)), generator=torch.Generator().manual_seed(batch))
        (onnx_logits,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            expected = model(x).numpy()
        assert onnx_logits.shape == (batch, 10)
        np.testing.assert_allclose(onnx_logits, expected, atol=1e-4, rtol=0)


def test_onnx_export_for_the_wrong_dataset_says_which_shape_failed():
    with pytest.raises(ValueError, match=r"cifar10 images of shape \(3, 32, 32\)"):
        export.student_onnx_bytes(models.build("mlp-small", "mnist-sample"), "cifar10")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        export.student_onnx_bytes(models.build("mlp-small", "mnist-sample"), "imagenet")


def test_model_card_says_how_to_prepare_inputs_and_how_good_the_student_is(data):
    result = run_result("mlp-tiny", "mnist-sample", models.build("mlp-tiny", "mnist-sample", seed=0))
    card = export.model_card(result, "distilled", data=data)
    assert {"config", "metrics", "classes", "normalisation", "kdcore_version", "created"} <= set(card)
    assert card["normalisation"]["mean"] == list(data.mean) and card["normalisation"]["std"] == list(data.std)
    assert card["normalisation"]["input_shape"] == ["N", 1, 28, 28]
    assert "(x-mean)/std" in card["normalisation"]["preprocessing"]
    assert card["metrics"]["accuracy"] == 0.91 and card["classes"] == [str(i) for i in range(10)]
    assert card["config"]["student"] == "mlp-tiny"
    json.dumps(card)  # must be writable as model_card.json
    with pytest.raises(ValueError, match="no scratch student"):
        export.model_card(result, "scratch", data=data)
    with pytest.raises(ValueError, match="role must be one of"):
        export.model_card(result, "teacher", data=data)


def test_student_bundle_holds_onnx_weights_and_card_that_describe_the_same_model(data):
    model = models.build("cnn-tiny", "mnist-sample", seed=3)
    result = run_result("cnn-tiny", "mnist-sample", model)
    files = unzip(export.student_bundle_zip(result, "distilled", data=data))
    name = export.student_name(result, "distilled")
    assert name == "mnist-sample-cnn-tiny-distilled"
    assert set(files) == {f"{name}.onnx", f"{name}.safetensors", "model_card.json"}
    card = json.loads(files["model_card.json"])
    for fname in (f"{name}.onnx", f"{name}.safetensors"):
        assert card["files"][fname] == hashlib.sha256(files[fname]).hexdigest()
    reloaded = models.build("cnn-tiny", "mnist-sample")
    reloaded.load_state_dict(load_safetensors(files[f"{name}.safetensors"]))
    x = kdata.normalize(data.test_x[:5], card["normalisation"]["mean"], card["normalisation"]["std"])
    (onnx_logits,) = ort.InferenceSession(files[f"{name}.onnx"]).run(None, {"image": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(onnx_logits, reloaded.eval()(x).numpy(), atol=1e-4, rtol=0)


def test_onnx_latency_is_measured_and_absent_without_onnxruntime(monkeypatch):
    blob = export.student_onnx_bytes(models.build("mlp-tiny", "mnist-sample"), "mnist-sample")
    lat = export.onnx_latency(blob, (1, 28, 28), warmup=1, repeats=3, repeats_b256=1)
    assert lat.ms_batch1 > 0 and lat.throughput_b256 > 0 and lat.threads == export.metrics.LATENCY_THREADS
    with pytest.raises(ValueError, match="input_shape"):
        export.onnx_latency(blob, (28, 28))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    assert export.onnx_latency(blob, (1, 28, 28)) is None
    assert not export.onnx_available()


# --------------------------------------------------------------------------- teacher zoo


def test_zoo_round_trip_gives_cached_teachers_without_training(zoo, data, cache):
    zoo_bytes, trained = zoo
    files = unzip(zoo_bytes)
    assert set(files) == {"manifest.json"} | {f"teachers/{t.key}.safetensors" for t in trained}
    assert not any("logits" in name for name in files)

    keys = export.import_zoo(zoo_bytes)
    assert sorted(keys) == sorted(t.key for t in trained)
    for t in trained:
        events = []
        loaded = teachers.get_teacher(data, t.member, SETTINGS, on_event=events.append, device=torch.device("cpu"))
        assert loaded.cached and loaded.key == t.key
        assert not [e for e in events if isinstance(e, ev.Epoch) or getattr(e, "status", None) == "training"]
        for a, b in zip(loaded.model.state_dict().values(), t.model.state_dict().values()):
            assert torch.equal(a.cpu(), b.cpu())
        torch.testing.assert_close(loaded.test_logits, t.test_logits)
    assert [c["key"] for c in export.cached_teachers()] == sorted(keys)


def test_importing_the_same_zoo_twice_keeps_the_recomputed_logits(zoo, data, cache):
    zoo_bytes, trained = zoo
    export.import_zoo(zoo_bytes)
    teachers.get_teacher(data, trained[0].member, SETTINGS, device=torch.device("cpu"))
    logits_file = cache / f"{trained[0].key}.logits.safetensors"
    before = logits_file.stat().st_mtime_ns
    export.import_zoo(zoo_bytes)
    assert logits_file.stat().st_mtime_ns == before


def test_zoo_key_is_checked_against_local_data_when_given(zoo, data, cache):
    zoo_bytes, _ = zoo
    assert export.import_zoo(zoo_bytes, datasets=[data])
    other_settings = tamper(zoo_bytes, lambda m: m["teachers"][0]["settings"].update(epochs=2))
    with pytest.raises(export.ZooImportError, match="this app's key would be"):
        export.import_zoo(other_settings, datasets=[data])
    with pytest.raises(export.ZooImportError, match="this app's key would be"):
        export.import_zoo(zoo_bytes, datasets=[synthetic(n_train=256, seed=1)])


def test_export_of_chosen_keys_holds_only_those(zoo, tmp_path, monkeypatch):
    zoo_bytes, trained = zoo
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="no cached teachers"):
        export.export_zoo()
    export.import_zoo(zoo_bytes)
    one = unzip(export.export_zoo([trained[1].key]))
    assert set(one) == {"manifest.json", f"teachers/{trained[1].key}.safetensors"}
    with pytest.raises(ValueError, match="not cached teachers"):
        export.export_zoo(["mnist-sample-mlp-wide-s9-0123456789abcdef"])


def _flip_a_weight_byte(files, manifest):
    name = manifest["teachers"][0]["file"]
    blob = bytearray(files[name])
    blob[-5] ^= 0xFF
    files[name] = bytes(blob)


def _wrong_shapes_with_fresh_hash(files, manifest):
    entry = manifest["teachers"][0]
    tensors = load_safetensors(files[entry["file"]])
    # A 0-dim buffer (batch-norm's step count) cannot be cut short, so cut the first real weight.
    first = next(k for k, v in tensors.items() if v.dim() > 0)
    tensors[first] = tensors[first][:-1].clone()
    blob = save_safetensors(tensors)
    files[entry["file"]] = blob
    entry["sha256"] = hashlib.sha256(blob).hexdigest()
    entry["shapes"] = {k: list(v.shape) for k, v in tensors.items()}


def _add(name, blob):
    def edit(files, manifest):
        files[name] = blob

    return edit


TAMPERED = {
    "modified tensor bytes": (dict(edit_files=_flip_a_weight_byte), "do not match their sha256"),
    "wrong shapes, hash recomputed": (dict(edit_files=_wrong_shapes_with_fresh_hash), "does not fit architecture"),
    "unknown arch": (
        dict(edit_manifest=lambda m: m["teachers"][0].update(arch="resnet-152")),
        "'resnet-152', which is not in this app's teacher zoo",
    ),
    "unknown dataset": (
        dict(edit_manifest=lambda m: m["teachers"][0].update(dataset="imagenet")),
        "dataset 'imagenet'",
    ),
    "key of another seed": (
        dict(edit_manifest=lambda m: m["teachers"][0].update(seed=7)),
        "does not match its dataset, architecture and seed",
    ),
    "path traversal": (dict(edit_files=_add("../evil", b"x")), "unsafe path '../evil'"),
    "a pickle inside": (dict(edit_files=_add("teachers/model.pt", pickle.dumps({"w": 1}))), "pickle"),
    "an unlisted extra file": (dict(edit_files=_add("run.sh", b"rm -rf /")), "unexpected file 'run.sh'"),
    "an unlisted teacher": (
        dict(edit_files=_add("teachers/mnist-sample-mlp-wide-s5-0123456789abcdef.safetensors", b"x")),
        "does not list",
    ),
    "newer format": (dict(edit_manifest=lambda m: m.update(version=99)), "format version 99"),
    "a key leading outside the cache": (
        dict(edit_manifest=lambda m: m["teachers"][0].update(key="../../../home/me/.bashrc-s0-0123456789abcdef")),
        "invalid key",
    ),
    "an absolute member name": (dict(edit_files=_add("/etc/cron.d/evil", b"x")), "unsafe path '/etc/cron.d/evil'"),
    "a member name with .. inside": (
        dict(edit_files=_add("teachers/../../evil.safetensors", b"x")),
        "unsafe path 'teachers/../../evil.safetensors'",
    ),
    # json.loads reads Infinity (and 1e999) as a float that no whole number of epochs can be.
    "infinite epochs": (
        dict(edit_manifest=lambda m: m["teachers"][0]["settings"].update(epochs=float("inf"))),
        "invalid training settings",
    ),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_zoo_is_refused_with_a_clear_message_and_nothing_written(zoo, cache, case):
    kwargs, message = TAMPERED[case]
    bad = tamper(zoo[0], **kwargs)
    with pytest.raises(export.ZooImportError, match=message) as info:
        export.import_zoo(bad)
    assert str(info.value).startswith("This teacher zoo file was refused and nothing was imported")
    assert info.value.user_facing
    assert cache_files(cache) == []


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"PK\x03\x04 this is not really a zip", "not a zip file"),
        (pickle.dumps({"weights": [1, 2, 3]}), "not a zip file"),
        (rezip({"teachers/x.safetensors": b""}), "unexpected file"),
        (rezip({"readme.txt": b"hi"}), "unexpected file 'readme.txt'"),
        (rezip({"manifest.json": b"{not json"}), "not valid JSON"),
        (rezip({"manifest.json": b"[]"}), "does not describe a teacher zoo"),
    ],
)
def test_files_that_are_not_zoos_are_refused(blob, message, cache):
    with pytest.raises(export.ZooImportError, match=message):
        export.import_zoo(blob)
    assert cache_files(cache) == []


def test_a_zip_without_manifest_or_too_large_is_refused_before_extracting(zoo, cache, monkeypatch):
    files = unzip(zoo[0])
    del files["manifest.json"]
    with pytest.raises(export.ZooImportError, match="no manifest.json"):
        export.import_zoo(rezip(files))
    monkeypatch.setattr(export, "MAX_ZOO_BYTES", 1000)
    with pytest.raises(export.ZooImportError, match="would unpack to .* the limit is"):
        export.import_zoo(zoo[0])
    assert cache_files(cache) == []


def test_one_bad_teacher_keeps_the_good_ones_out_too(zoo, cache):
    # The second teacher is the broken one, so the first is fully validated before the refusal.
    def break_second(files, manifest):
        name = manifest["teachers"][1]["file"]
        files[name] = files[name][:-4] + b"\0\0\0\0"

    with pytest.raises(export.ZooImportError, match="do not match their sha256"):
        export.import_zoo(tamper(zoo[0], edit_files=break_second))
    assert cache_files(cache) == []


def with_manifest(zoo_bytes, blob):
    files = unzip(zoo_bytes)
    files["manifest.json"] = blob
    return rezip(files)


def assert_refused(zip_bytes, message, cache):
    with pytest.raises(export.ZooImportError, match=message) as info:
        export.import_zoo(zip_bytes)
    assert str(info.value).startswith("This teacher zoo file was refused and nothing was imported")
    assert cache_files(cache) == []


UNREADABLE_MANIFESTS = {
    "a list nested 100,000 deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "an object nested 100,000 deep": (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    "Latin-1 text": ('{"format": "kd-playground-teacher-zoo", "by": "Zoë"}'.encode("latin-1"), "not UTF-8"),
    "random bytes": (bytes(range(128, 256)), "not UTF-8"),
}


@pytest.mark.parametrize("case", list(UNREADABLE_MANIFESTS))
def test_a_manifest_that_cannot_be_read_is_refused_not_crashed_on(zoo, cache, case):
    blob, message = UNREADABLE_MANIFESTS[case]
    assert_refused(with_manifest(zoo[0], blob), message, cache)


def test_a_manifest_in_another_encoding_than_utf8_is_refused_even_if_its_content_is_right(zoo, cache):
    text = unzip(zoo[0])["manifest.json"].decode()
    assert_refused(with_manifest(zoo[0], text.encode("utf-16")), "not UTF-8", cache)


def test_a_huge_manifest_is_refused_from_its_declared_size_before_it_is_read(zoo, cache, monkeypatch):
    monkeypatch.setattr(export, "MAX_MANIFEST_BYTES", 100)
    monkeypatch.setattr(export, "_read_member", None)  # reading anything would fail loudly
    assert_refused(zoo[0], "manifest.json is larger than", cache)


def test_a_zip_holding_one_name_twice_is_refused(zoo, cache):
    files = unzip(zoo[0])
    buf = io.BytesIO()
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(buf, "w") as zf:
        for name, blob in files.items():
            zf.writestr(name, blob)
        zf.writestr("manifest.json", b"{}")
    assert_refused(buf.getvalue(), "'manifest.json' twice", cache)


@pytest.mark.parametrize("error", [MemoryError, RecursionError, OverflowError, KeyError])
def test_any_other_failure_while_reading_a_zoo_is_the_same_clear_refusal(zoo, cache, monkeypatch, error):
    def fail(*args, **kwargs):
        raise error("unforeseen")

    monkeypatch.setattr(teachers, "architecture_signature", fail)
    assert_refused(zoo[0], "refused and nothing was imported", cache)


def test_an_import_never_writes_through_a_cache_file_that_links_outside_the_cache(zoo, cache, tmp_path_factory):
    zoo_bytes, trained = zoo
    victim = tmp_path_factory.mktemp("elsewhere") / "notes.json"
    victim.write_text("mine")
    link = cache / f"{trained[0].key}.json"
    link.symlink_to(victim)
    with pytest.raises(export.ZooImportError, match="outside") as info:
        export.import_zoo(zoo_bytes)
    assert str(link) in str(info.value)
    assert victim.read_text() == "mine" and link.is_symlink()
    assert cache_files(cache) == [link.name]

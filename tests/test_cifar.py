"""CIFAR-10's recipe: airbench-style teachers, their cached logits for fixed views, and consistent teaching."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from kdcore import data as kdata
from kdcore import events as ev
from kdcore import experiments, models, teachers
from kdcore.train import Trainer, TrainSettings, predict_logits, student_settings, teacher_settings
from tests.synthetic import synthetic

SHARED = Path(__file__).resolve().parents[2] / "shared"
CIFAR_TOOL = SHARED / "tools" / "cifar10_jpeg_to_python.py"


@pytest.fixture(scope="module")
def cifar_like():
    return synthetic(n_train=256, n_test=64, shape=(3, 32, 32), name="cifar10")


def test_the_whitening_layer_decorrelates_the_images_patches(cifar_like):
    net = models.build("air-slim", "cifar10", seed=0)
    x = kdata.normalize(cifar_like.train_x, cifar_like.mean, cifar_like.std)
    net.init_from_data(x)
    conv = net[0]
    out = nn.functional.conv2d(x, conv.weight[: conv.out_channels // 2])  # the + half of the +/- pairs
    flat = out.permute(1, 0, 2, 3).reshape(out.shape[1], -1).double()
    cov = flat @ flat.T / flat.shape[1]
    assert torch.allclose(cov, torch.eye(len(cov), dtype=torch.float64), atol=0.05)
    assert not conv.weight.requires_grad  # frozen: only its bias learns, and only early


def test_the_whitening_bias_learns_only_in_the_first_epochs():
    net = models.build("air-wide", "cifar10", seed=0)
    net.start_epoch(0)
    assert net[0].bias.requires_grad
    net.start_epoch(models.AirNet.WHITEN_BIAS_EPOCHS)
    assert not net[0].bias.requires_grad


def test_the_cifar_teacher_recipe_trains_with_its_schedule_average_and_mixed_precision(cifar_like):
    settings = TrainSettings(**{**teacher_settings("cifar10").__dict__, "epochs": 4, "batch_size": 64})
    model = models.build("air-slim", "cifar10", seed=0)
    model.init_from_data(kdata.normalize(cifar_like.train_x, cifar_like.mean, cifar_like.std))
    trainer = Trainer(model, cifar_like, settings, seed=0, device=torch.device("cpu"), progress_every_s=0.0)
    lrs = []
    while not trainer.finished:
        trainer.run_epoch()
        lrs.append(trainer.opt.param_groups[0]["lr"])
    assert [e.epoch for e in trainer.history] == [1, 2, 3, 4]
    assert trainer.ema is not None  # the lookahead average started in epoch 3 and ended in the weights
    # The triangle: up to its peak in the first quarter, then down to 7 % of the peak.
    assert lrs[0] > lrs[-1] and lrs[-1] == pytest.approx(settings.lr * 0.07, rel=0.05)
    groups = trainer.opt.param_groups
    assert groups[1]["lr"] == pytest.approx(groups[0]["lr"] * settings.bias_lr_scale)


def test_each_augmented_image_is_taught_by_the_teachers_logits_for_that_very_view(cifar_like):
    n, views = len(cifar_like.train_y), len(kdata.VIEWS["cifar10"])
    # Logits that say which image and which view they belong to.
    codes = torch.zeros(n, views, 10)
    codes[:, :, 0] = torch.arange(n, dtype=torch.float32).view(n, 1)
    codes[:, :, 1] = torch.arange(views, dtype=torch.float32).view(1, views)
    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3 * 32 * 32, 10)

        def forward(self, x):
            seen.append(x.detach().clone())
            return self.linear(x.flatten(1))

    taught = []

    def loss(student, teacher, y):
        taught.append(teacher.clone())
        hard = nn.functional.cross_entropy(student, y)
        return hard, hard, hard * 0

    trainer = Trainer(
        Recorder(),
        cifar_like,
        TrainSettings(epochs=1, batch_size=64),
        seed=3,
        teacher_logits=codes[:, 0],
        alpha=0.5,
        loss_fn=loss,
        view_logits=codes,
        device=torch.device("cpu"),
    )
    trainer.run_epoch()
    for x, teacher in zip(seen[:-1], taught):  # the last forward is the test-set evaluation
        image, view = teacher[:, 0].long(), teacher[:, 1].long()
        expected = kdata.normalize(kdata.views(cifar_like.train_x[image], view, "cifar10"), trainer.mean, trainer.std)
        assert torch.equal(x, expected)
    assert len({int(v) for t in taught for v in t[:, 1]}) == views  # every view is used


def test_a_photos_teacher_answers_for_the_image_and_its_mirror(cifar_like):
    model = models.build("cnn-deep", "cifar10", seed=0).eval()
    plain = predict_logits(model, cifar_like.test_x, cifar_like.mean, cifar_like.std)
    mirrored = predict_logits(model, cifar_like.test_x.flip(-1), cifar_like.mean, cifar_like.std)
    both = predict_logits(model, cifar_like.test_x, cifar_like.mean, cifar_like.std, mirror=True)
    assert torch.allclose(both, (plain + mirrored) / 2, atol=1e-5)


def test_moved_test_views_weigh_half_as_much_as_the_unmoved_image(cifar_like):
    model = models.build("cnn-deep", "cifar10", seed=0).eval()
    x, mean, std = cifar_like.test_x, cifar_like.mean, cifar_like.std

    def mirrored(images):
        return predict_logits(model, images, mean, std, mirror=True)

    moved = [mirrored(kdata.translate(x, d, d, "cifar10")) for d in (-1, 1)]
    expected = mirrored(x) / 2 + (moved[0] + moved[1]) / 4
    assert torch.allclose(predict_logits(model, x, mean, std, mirror=True, shift="cifar10"), expected, atol=1e-5)
    # A move by (1, 1) shows each pixel's lower-right neighbour; the last row and column reflect back inside.
    assert torch.equal(kdata.translate(x, 1, 1, "cifar10")[..., :-1, :-1], x[..., 1:, 1:])
    assert torch.equal(kdata.translate(x, 1, 1, "cifar10")[..., -1, :-1], x[..., -2, 1:])


def test_a_photo_teachers_older_test_logits_are_scored_again_with_the_moved_views(cifar_like, tmp_path, monkeypatch):
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    member, settings = teachers.Member("cnn-deep", 2), TrainSettings(epochs=1, batch_size=64)
    teacher = teachers.get_teacher(cifar_like, member, settings, device=torch.device("cpu"))
    manifest = next(teachers.cache_dir().glob("*.logits.json"))
    info = json.loads(manifest.read_text())
    assert info["test_views"] == teachers.PHOTO_TEST_VIEWS
    del info["test_views"]  # as written before the moved views existed: the mirror alone
    manifest.write_text(json.dumps(info))
    calls = []
    real = teachers.predict_logits
    monkeypatch.setattr(teachers, "predict_logits", lambda *a, **k: calls.append(k) or real(*a, **k))
    again = teachers.get_teacher(cifar_like, member, settings, device=torch.device("cpu"))
    assert [k.get("shift") for k in calls] == [None, "cifar10"]  # train logits plain, test logits with the views
    assert torch.allclose(again.test_logits, teacher.test_logits)
    calls.clear()
    teachers.get_teacher(cifar_like, member, settings, device=torch.device("cpu"))
    assert calls == []  # scored once, then cached


def test_view_logits_are_computed_once_and_cached(cifar_like, tmp_path, monkeypatch):
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    member = teachers.Member("cnn-deep", 1)
    settings = TrainSettings(epochs=1, batch_size=64)
    teacher = teachers.get_teacher(cifar_like, member, settings, device=torch.device("cpu"))
    events = []
    first = teachers.view_logits(teacher, cifar_like, events.append)
    assert first.shape == (len(cifar_like.train_y), len(kdata.VIEWS["cifar10"]), 10)
    assert [e.status for e in events] == [ev.TeacherStatus.VIEWS]
    # View 0 is the image itself: its logits are the teacher's plain ones (float16 on disk).
    assert torch.allclose(first[:, 0], teacher.train_logits, atol=0.05)

    def no_scoring(*args, **kwargs):
        raise AssertionError("cached view logits were computed again")

    monkeypatch.setattr(teachers, "predict_logits", no_scoring)
    assert torch.equal(teachers.view_logits(teacher, cifar_like), first)


def test_the_cifar_preset_uses_the_measured_recipe():
    c = experiments.default_config("cifar10")
    assert c.teachers == ("air-slim", "air-wide@1", "air-wide@2") and c.student == "bn-small"
    assert (c.temperature, c.alpha, c.epochs, c.fraction, c.augment) == (1.0, 0.9, 20, 0.2, True)
    assert student_settings("cifar10", 20).schedule == "onecycle"
    # Off by default elsewhere, and configs without it keep the keys they had before it existed.
    assert "augment" not in experiments.default_config("mnist-sample").to_dict()
    assert experiments.default_config("mnist-sample", augment=True).to_dict()["augment"] is True
    with pytest.raises(ValueError, match="augment works with the methods kd, dkd"):
        experiments.default_config("mnist-sample", augment=True, method="self")


@pytest.fixture(scope="module")
def real_cifar(tmp_path_factory):
    """200 + 200 real CIFAR-10 images (JPEG re-encoded) in the standard layout, from ../shared/data."""
    if not CIFAR_TOOL.exists():
        pytest.skip(f"the real CIFAR-10 sample needs {CIFAR_TOOL} (../shared/data is absent)")
    root = tmp_path_factory.mktemp("kd-cifar")
    subprocess.run(
        [sys.executable, str(CIFAR_TOOL), str(root / "cifar10"), "--limit-per-class", "20"],
        check=True,
        capture_output=True,
    )
    return root


def test_a_cifar_distillation_with_consistent_teaching_runs_end_to_end(real_cifar, monkeypatch):
    monkeypatch.setenv("KD_DATA_DIR", str(real_cifar))
    kdata.load.cache_clear()
    config = experiments.default_config("cifar10", teachers=("air-slim",), teacher_epochs=1, epochs=2)
    events = []
    result = experiments.distill(config, on_event=events.append, measure=False)
    assert [r.role for r in result.rows] == ["ensemble", "scratch", "distilled"]
    assert any(isinstance(e, ev.TeacherUpdate) and e.status is ev.TeacherStatus.VIEWS for e in events)
    assert result.epochs_done == 2 and result.config.augment
    off = experiments.distill(replace(config, augment=False), measure=False)
    assert off.row("scratch").accuracy != result.row("scratch").accuracy  # the views changed what it saw
    kdata.load.cache_clear()

"""The training loop: reproducible runs, progress events, clean cancelling, clear divergence errors."""

import copy
import dataclasses
import math
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from kdcore import data as kdata
from kdcore import events as ev
from kdcore import models
from kdcore import train as train_module
from kdcore.budget import torch_threads
from kdcore.train import (
    Trainer,
    TrainingDiverged,
    TrainSettings,
    default_device,
    predict_logits,
    student_settings,
    teacher_settings,
    train,
    train_side_by_side,
    train_together,
)
from tests.synthetic import synthetic

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_data():
    return synthetic()


def weights(model):
    return [p.detach().clone() for p in model.state_dict().values()]


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))


def same_weights_as(model, saved):
    return all(torch.equal(x, y) for x, y in zip(weights(model), saved))


def numbers(history):
    """Everything in the epoch events except wall-clock time."""
    return [dataclasses.replace(e, t=0.0) for e in history]


def run(data, seed, epochs=2, arch="mlp-small", **settings):
    model = models.build(arch, data.name, seed=0)
    return train(
        model, data, TrainSettings(epochs=epochs, batch_size=64, **settings), seed=seed, device=torch.device("cpu")
    )


# --------------------------------------------------------------------------- reproducibility


def test_same_seed_and_config_give_identical_weights_and_history(tiny_data):
    # Dropout (mlp-wide) and augmentation are the random parts that must also repeat.
    a = run(tiny_data, seed=5, arch="mlp-wide", augment=True)
    b = run(tiny_data, seed=5, arch="mlp-wide", augment=True)
    assert same_weights(a.model, b.model)
    assert numbers(a.history) == numbers(b.history)


def test_different_seed_gives_different_weights(tiny_data):
    a = run(tiny_data, seed=1)
    b = run(tiny_data, seed=2)
    assert not same_weights(a.model, b.model)
    assert numbers(a.history) != numbers(b.history)


def test_scratch_and_distilled_trainers_see_the_same_batches(tiny_data):
    """distill() gives both students one deep-copied model and the same seed and subset; with alpha = 0
    the teacher's logits must not change a single weight, and interleaving epochs must not matter."""
    idx = kdata.subset_indices(tiny_data.train_y, fraction=0.5, seed=3)
    base = models.build("mlp-small", tiny_data.name, seed=3)
    settings = TrainSettings(epochs=2, batch_size=64)
    teacher = torch.randn(len(tiny_data.train_y), 10, generator=torch.Generator().manual_seed(9))
    cpu = torch.device("cpu")
    scratch = Trainer(base, tiny_data, settings, seed=3, train_idx=idx, device=cpu)
    distilled = Trainer(
        copy.deepcopy(base),
        tiny_data,
        settings,
        seed=3,
        train_idx=idx,
        teacher_logits=teacher,
        alpha=0.0,
        temperature=4.0,
        device=cpu,
    )
    assert torch.equal(scratch.gen.get_state(), distilled.gen.get_state())
    assert same_weights(scratch.model, distilled.model)
    while not (scratch.finished and distilled.finished):
        scratch.run_epoch()
        distilled.run_epoch()
    assert same_weights(scratch.model, distilled.model)
    # ... and it is a real training run on the subset, not a no-op.
    assert not same_weights(scratch.model, models.build("mlp-small", tiny_data.name, seed=3))

    alone = Trainer(
        copy.deepcopy(models.build("mlp-small", tiny_data.name, seed=3)),
        tiny_data,
        settings,
        seed=3,
        train_idx=idx,
        device=cpu,
    )
    while not alone.finished:
        alone.run_epoch()
    assert same_weights(alone.model, scratch.model)


# --------------------------------------------------------------------------- events


def test_one_epoch_event_per_epoch_with_losses_accuracy_and_time(tiny_data):
    events = []
    teacher = torch.randn(len(tiny_data.train_y), 10)
    model = models.build("mlp-tiny", tiny_data.name, seed=0)
    result = train(
        model,
        tiny_data,
        TrainSettings(epochs=3, batch_size=64),
        seed=0,
        name="distilled",
        teacher_logits=teacher,
        alpha=0.5,
        temperature=2.0,
        on_event=events.append,
        device=torch.device("cpu"),
    )
    epochs = [e for e in events if isinstance(e, ev.Epoch)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert epochs == result.history and not result.partial
    for e in epochs:
        assert e.model == "distilled" and e.epochs == 3
        assert all(math.isfinite(v) and v >= 0 for v in (e.loss, e.hard, e.soft))
        # alpha = 0.5: the reported total is the blend of the two parts.
        assert e.loss == pytest.approx(0.5 * e.hard + 0.5 * e.soft, rel=1e-4)
        assert 0.0 <= e.test_acc <= 1.0
    assert result.test_acc == epochs[-1].test_acc


def test_without_a_teacher_the_soft_loss_is_none(tiny_data):
    events = []
    train(
        models.build("mlp-tiny", tiny_data.name, seed=0),
        tiny_data,
        TrainSettings(epochs=1),
        seed=0,
        on_event=events.append,
        device=torch.device("cpu"),
    )
    (epoch,) = [e for e in events if isinstance(e, ev.Epoch)]
    assert epoch.soft is None and epoch.loss == epoch.hard


def test_step_events_report_progress_within_an_epoch(tiny_data):
    events = []
    train(
        models.build("mlp-tiny", tiny_data.name, seed=0),
        tiny_data,
        TrainSettings(epochs=2, batch_size=32),
        seed=0,
        name="scratch",
        on_event=events.append,
        progress_every_s=0.0,
        device=torch.device("cpu"),
    )
    steps = [e for e in events if isinstance(e, ev.Step)]
    assert len(steps) >= 2 * (len(tiny_data.train_y) // 32) - 2
    assert all(e.model == "scratch" and e.epochs == 2 and math.isfinite(e.loss) for e in steps)
    # Fractional epochs that only move forward, so a live curve never jumps back.
    positions = [e.epoch for e in steps]
    assert positions == sorted(positions) and 0 < positions[0] < 1 and positions[-1] == pytest.approx(2.0)
    first_epoch = next(i for i, e in enumerate(events) if isinstance(e, ev.Epoch))
    assert any(isinstance(e, ev.Step) for e in events[:first_epoch])


# --------------------------------------------------------------------------- cancelling


def test_cancel_after_an_epoch_stops_cleanly_with_a_partial_result(tiny_data):
    cancel = threading.Event()

    def on_event(e):
        if isinstance(e, ev.Epoch) and e.epoch == 1:
            cancel.set()

    result = train(
        models.build("mlp-tiny", tiny_data.name, seed=0),
        tiny_data,
        TrainSettings(epochs=5),
        seed=0,
        on_event=on_event,
        cancel=cancel,
        device=torch.device("cpu"),
    )
    assert result.partial is True
    assert [e.epoch for e in result.history] == [1]
    assert not result.model.training  # ready for evaluation like a finished model


def test_cancel_mid_epoch_drops_the_unfinished_epoch(tiny_data):
    cancel = threading.Event()

    def on_event(e):
        if isinstance(e, ev.Step) and e.epoch > 1.2:
            cancel.set()

    trainer = Trainer(
        models.build("mlp-tiny", tiny_data.name, seed=0),
        tiny_data,
        TrainSettings(epochs=3, batch_size=32),
        seed=0,
        on_event=on_event,
        cancel=cancel,
        progress_every_s=0.0,
        device=torch.device("cpu"),
    )
    assert trainer.run_epoch() is not None
    assert trainer.run_epoch() is None
    assert trainer.finished
    result = trainer.result()
    assert result.partial is True and len(result.history) == 1


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("lr", [1e30, 1e8])
def test_an_exploding_learning_rate_is_stopped_with_learning_rate_advice(tiny_data, lr):
    # 1e8 does not reach infinity: its losses of 1e28 used to run to the end without a word.
    with pytest.raises(TrainingDiverged) as info:
        run(tiny_data, seed=0, epochs=2, lr=lr, optimizer="sgd")
    message = str(info.value)
    assert "training was stopped" in message and f"learning rate ({lr:g}) is too high" in message
    assert "α" not in message  # no teacher here: T and α are not the cause
    assert isinstance(info.value, ValueError)


def test_a_student_whose_soft_loss_blows_up_gets_advice_about_t_and_alpha(tiny_data):
    teacher = torch.zeros(len(tiny_data.train_y), 10)
    teacher[:, 0] = 1e6  # absurd logits: the soft loss is astronomically large from the first batch
    with pytest.raises(TrainingDiverged, match="smaller α, or T from 1 to 20"):
        train(
            models.build("mlp-tiny", tiny_data.name, seed=0),
            tiny_data,
            TrainSettings(epochs=1),
            seed=0,
            name="distilled",
            teacher_logits=teacher,
            alpha=1.0,
            temperature=100.0,  # T^2 = 10,000 times a KL of about ln 10
            device=torch.device("cpu"),
        )


def test_infinite_teacher_logits_raise_training_diverged(tiny_data):
    teacher = torch.zeros(len(tiny_data.train_y), 10)
    teacher[:, 0] = float("inf")
    with pytest.raises(TrainingDiverged, match="reached nan"):
        train(
            models.build("mlp-tiny", tiny_data.name, seed=0),
            tiny_data,
            TrainSettings(epochs=1),
            seed=0,
            name="distilled",
            teacher_logits=teacher,
            alpha=0.5,
            device=torch.device("cpu"),
        )


def test_alpha_without_teacher_logits_is_rejected(tiny_data):
    with pytest.raises(ValueError, match="teacher_logits"):
        Trainer(models.build("mlp-tiny", tiny_data.name), tiny_data, TrainSettings(epochs=1), seed=0, alpha=0.5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"epochs": 1, "optimizer": "rmsprop"}, "'adam' or 'sgd'"),
        ({"epochs": 1, "schedule": "step"}, "'cosine', 'constant', 'triangle', 'onecycle'"),
    ],
)
def test_train_settings_name_the_bad_value_and_allowed_ones(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainSettings(**kwargs)


# --------------------------------------------------------------------------- defaults and helpers


def test_default_device_is_cpu_on_this_machine():
    assert default_device() == torch.device("cpu")


def test_teacher_settings_per_dataset():
    cifar = teacher_settings("cifar10")
    assert (cifar.optimizer, cifar.augment, cifar.epochs, cifar.schedule) == ("sgd", True, 10, "triangle")
    assert (cifar.batch_size, cifar.label_smoothing, cifar.ema, cifar.bf16) == (1024, 0.2, True, True)
    assert teacher_settings("mnist-sample").epochs == 6
    for name in ("mnist", "fashion-mnist"):
        s = teacher_settings(name)
        assert (s.optimizer, s.augment, s.epochs) == ("adam", True, 5)
    assert teacher_settings("cifar10", epochs=2) == TrainSettings(**{**cifar.__dict__, "epochs": 2})


def test_student_settings_per_dataset_never_augment_at_random():
    # A random augmentation would have no teacher logits; students see fixed views or the plain images.
    for name in kdata.DATASETS:
        s = student_settings(name, 7)
        assert s.epochs == 7 and s.augment is False
    assert student_settings("cifar10", 3).optimizer == "sgd"
    assert student_settings("mnist", 3).optimizer == "adam"


@pytest.mark.parametrize("name,shape", [("mnist-sample", (1, 28, 28)), ("cifar10", (3, 32, 32))])
def test_augmented_training_keeps_image_shapes(name, shape):
    data = synthetic(n_train=96, n_test=16, shape=shape, name=name)
    x = data.train_x[:8]
    out = kdata.augment(x, name, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    arch = "cnn-tiny"
    result = train(
        models.build(arch, name, seed=0),
        data,
        TrainSettings(epochs=1, batch_size=32, augment=True),
        seed=0,
        device=torch.device("cpu"),
    )
    assert len(result.history) == 1


def test_predict_logits_gives_one_row_per_image_and_restores_the_mode(tiny_data):
    model = models.build("mlp-wide", tiny_data.name, seed=0).train()
    a = predict_logits(model, tiny_data.test_x, tiny_data.mean, tiny_data.std, batch_size=10)
    b = predict_logits(model, tiny_data.test_x, tiny_data.mean, tiny_data.std)
    assert a.shape == (len(tiny_data.test_y), 10)
    assert torch.allclose(a, b, atol=1e-5)  # eval mode: dropout off, batching does not matter
    assert model.training


@pytest.mark.parametrize("arch", ["cnn-wide", "cnn-deep"])
def test_predict_logits_on_a_conv_net_matches_plain_eval_and_leaves_the_model_untouched(tiny_data, arch):
    model = models.build(arch, tiny_data.name, seed=0).train()
    before = weights(model)
    fast = predict_logits(model, tiny_data.test_x, tiny_data.mean, tiny_data.std, batch_size=16)
    assert model.training
    model.eval()
    with torch.no_grad():
        plain = model(kdata.normalize(tiny_data.test_x, tiny_data.mean, tiny_data.std))
    assert len(tiny_data.test_x) > 16  # more than one batch, so the channels-last copy is the path taken
    assert torch.allclose(fast, plain, atol=1e-5)
    assert same_weights_as(model, before)
    assert all(p.is_contiguous() for p in model.parameters())  # still saveable as safetensors


# --------------------------------------------------------------------------- training models together


def pair(data, epochs=4, cancel=None, on_event=None):
    base = models.build("mlp-small", data.name, seed=1)
    teacher = torch.randn(len(data.train_y), 10, generator=torch.Generator().manual_seed(2))
    common = dict(seed=1, teacher_logits=teacher, temperature=4.0, device=torch.device("cpu"), cancel=cancel)
    settings = TrainSettings(epochs=epochs, batch_size=32)
    return [
        Trainer(base, data, settings, name="scratch", alpha=0.0, on_event=on_event, progress_every_s=0.0, **common),
        Trainer(copy.deepcopy(base), data, settings, name="distilled", alpha=0.5, **common),
    ]


def test_two_lanes_train_exactly_what_one_lane_trains(tiny_data):
    one, two = pair(tiny_data, epochs=2), pair(tiny_data, epochs=2)
    assert train_together(one, lanes=1) == train_together(two, lanes=2) == 2
    for a, b in zip(one, two):
        assert same_weights(a.model, b.model)
        assert numbers(a.history) == numbers(b.history)


def test_a_stop_between_the_students_epochs_compares_them_after_the_same_epoch(tiny_data):
    """Issue: a Stop after the scratch student's epoch 2 and before the distilled one's compared a student
    trained one epoch longer. Both must be put back to the end of epoch 1, the last one both finished."""
    cancel = threading.Event()

    def stop_during_scratch_epoch_2(e):
        if isinstance(e, ev.Step) and e.model == "scratch" and e.epoch > 1.5:
            cancel.set()

    trainers = pair(tiny_data, cancel=cancel, on_event=stop_during_scratch_epoch_2)
    assert train_together(trainers, lanes=1) == 1
    reference = pair(tiny_data, epochs=4)
    for t in reference:
        t.run_epoch()
    for stopped, one_epoch in zip(trainers, reference):
        assert stopped.epoch == 1 and len(stopped.history) == 1
        assert same_weights(stopped.model, one_epoch.model)


def test_a_stop_after_one_student_finished_its_epoch_rolls_the_other_back_too(tiny_data):
    cancel = threading.Event()
    trainers = pair(tiny_data, cancel=cancel)

    def stop_after_scratch_epoch_2(e):
        if isinstance(e, ev.Epoch) and e.model == "scratch" and e.epoch == 2:
            cancel.set()

    trainers[0].on_event = stop_after_scratch_epoch_2
    assert train_together(trainers, lanes=1) == 1
    assert [t.epoch for t in trainers] == [1, 1]
    assert [len(t.history) for t in trainers] == [1, 1]


def test_three_models_on_two_lanes_each_train_to_their_end_as_they_would_alone(tiny_data):
    three = pair(tiny_data, epochs=3) + pair(tiny_data, epochs=3)[:1]
    alone = pair(tiny_data, epochs=3) + pair(tiny_data, epochs=3)[:1]
    finished = []
    busy = train_side_by_side(three, lanes=2, on_finished=lambda t, seconds: finished.append((t, seconds)))
    with torch_threads(1):
        for t in alone:
            while not t.finished:
                t.run_epoch()
    assert [t.epoch for t in three] == [3, 3, 3] and all(b > 0 for b in busy)
    assert sorted(map(id, (t for t, _ in finished))) == sorted(map(id, three))  # each reported once, when done
    for a, b in zip(three, alone):
        assert same_weights(a.model, b.model)


def test_an_error_in_one_lane_stops_the_other_lanes_and_is_raised(tiny_data):
    trainers = pair(tiny_data, epochs=4) + pair(tiny_data, epochs=4)

    def broken():
        raise RuntimeError("out of memory")

    trainers[1].run_epoch = broken
    with pytest.raises(RuntimeError, match="out of memory"):
        train_side_by_side(trainers, lanes=2)
    assert sum(t.epoch for t in trainers) < 3 * 4  # the others ended instead of training on


def test_a_stop_ends_every_lane_after_its_current_epoch(tiny_data):
    cancel = threading.Event()
    trainers = pair(tiny_data, epochs=4, cancel=cancel) + pair(tiny_data, epochs=4, cancel=cancel)
    trainers[0].on_event = lambda e: cancel.set() if isinstance(e, ev.Epoch) else None
    finished = []
    train_side_by_side(trainers, lanes=2, on_finished=lambda t, s: finished.append(t))
    assert finished == [] and any(t.stopped for t in trainers)
    assert all(t.epoch <= 2 for t in trainers)


def test_with_alternating_flip_each_photo_is_mirrored_in_exactly_one_of_two_epochs(monkeypatch):
    n = 300
    photos = synthetic(n_train=n, n_test=8, shape=(3, 32, 32), name="cifar10")
    photos.train_x[:, 0, 0, 0], photos.train_x[:, 0, 0, 1] = torch.arange(n) // 256, torch.arange(n) % 256
    seen = {0: torch.zeros(n, dtype=torch.bool), 1: torch.zeros(n, dtype=torch.bool)}
    real_augment = kdata.augment

    def recording(x, name, generator, flip=None):
        ids = x[:, 0, 0, 0].long() * 256 + x[:, 0, 0, 1].long()
        seen[trainer.epoch][ids] = flip
        return real_augment(x, name, generator, flip=flip)

    monkeypatch.setattr(kdata, "augment", recording)
    settings = TrainSettings(epochs=2, batch_size=64, augment=True, alternate_flip=True)
    trainer = Trainer(models.build("mlp-tiny", "cifar10", seed=0), photos, settings, seed=0, device=torch.device("cpu"))
    trainer.run_epoch()
    trainer.run_epoch()
    assert torch.equal(seen[0], ~seen[1])
    assert 0.35 < seen[0].float().mean() < 0.65  # which photos start mirrored is a coin toss


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_optimizers_update_exactly_as_torchs_own(tiny_data, monkeypatch, optimizer):
    settings = dict(optimizer=optimizer, bias_lr_scale=4.0, schedule="onecycle")
    ours = run(tiny_data, seed=3, **settings)
    monkeypatch.setattr(train_module, "ADAM", torch.optim.Adam)
    monkeypatch.setattr(train_module, "SGD", torch.optim.SGD)
    theirs = run(tiny_data, seed=3, **settings)
    assert same_weights(ours.model, theirs.model)
    assert numbers(ours.history) == numbers(theirs.history)


def test_training_a_student_does_not_import_the_compiler_stack():
    """PyTorch's own optimizers import torch._dynamo on first use, a second of every fresh CLI run."""
    script = (
        "import sys\n"
        "from kdcore import models\n"
        "from kdcore.train import TrainSettings, train\n"
        "from tests.synthetic import synthetic\n"
        "data = synthetic()\n"
        "for opt in ('adam', 'sgd'):\n"
        "    train(models.build('mlp-small', data.name), data, TrainSettings(epochs=1, optimizer=opt), seed=0)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

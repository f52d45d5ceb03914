"""The model zoo builds every architecture for both image shapes."""

import pytest
import torch

from kdcore import models


@pytest.mark.parametrize("dataset,shape", [("mnist-sample", (1, 28, 28)), ("cifar10", (3, 32, 32))])
@pytest.mark.parametrize("name", list(models.ZOO))
def test_every_model_builds_and_gives_ten_logits(name, dataset, shape):
    net = models.build(name, dataset).eval()
    assert net(torch.randn(2, *shape)).shape == (2, 10)


def test_zoo_has_three_teachers_and_students_from_tiny_to_medium():
    teachers = models.available("teacher")
    students = models.available("student")
    assert len(teachers) >= 3 and all(s.description for s in teachers + students)
    for family in ("mlp", "cnn"):
        sizes = [
            sum(p.numel() for p in models.build(f"{family}-{size}", "mnist").parameters())
            for size in models.STUDENT_SIZES
        ]
        assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    ensemble = sum(sum(p.numel() for p in models.build(t.name, "mnist").parameters()) for t in teachers)
    largest_student = max(sum(p.numel() for p in models.build(s.name, "mnist").parameters()) for s in students)
    assert ensemble > 5 * largest_student


def test_same_seed_gives_same_initial_weights():
    a = models.build("cnn-small", "mnist", seed=3)
    b = models.build("cnn-small", "mnist", seed=3)
    c = models.build("cnn-small", "mnist", seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))


def test_unknown_names_list_the_allowed_values():
    with pytest.raises(ValueError, match="cnn-wide"):
        models.build("resnet-9000", "mnist")
    with pytest.raises(ValueError, match="cifar10"):
        models.build("cnn-wide", "imagenet")

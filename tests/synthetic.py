"""A random-image dataset for tests of loop-level behaviour (training, caching, export): nothing to learn."""

import torch

from kdcore import data as kdata


def synthetic(n_train=320, n_test=64, shape=(1, 28, 28), name="mnist-sample", seed=0) -> kdata.Dataset:
    g = torch.Generator().manual_seed(seed)
    return kdata.Dataset(
        name=name,
        train_x=torch.randint(0, 256, (n_train, *shape), generator=g, dtype=torch.uint8),
        train_y=torch.randint(0, 10, (n_train,), generator=g),
        test_x=torch.randint(0, 256, (n_test, *shape), generator=g, dtype=torch.uint8),
        test_y=torch.randint(0, 10, (n_test,), generator=g),
        classes=tuple(str(i) for i in range(10)),
        mean=(0.5,) * shape[0],
        std=(0.29,) * shape[0],
    )


def run_result(
    dataset="mnist-sample",
    student="mlp-tiny",
    temperature=4.0,
    alpha=0.5,
    scratch=0.80,
    distilled=0.85,
    partial=False,
    epochs=2,
):
    """A hand-built distillation result shaped like distill()'s (a teacher, the ensemble, both students and
    their curves), with real, untrained students so it can be saved, rebuilt and exported."""
    from kdcore import events as ev
    from kdcore import models
    from kdcore.experiments import ModelRow, RunResult, default_config

    config = default_config(dataset, student=student, temperature=temperature, alpha=alpha, epochs=epochs)

    def row(name, role, acc):
        reference = role == "ensemble"
        return ModelRow(
            name=name,
            role=role,
            accuracy=acc,
            params=100,
            size_bytes=400,
            latency_ms_b1=0.1,
            throughput_b256=1e4,
            agreement=None if reference else 0.9,
            kl_to_teacher=None if reference else 0.1,
            ece=0.05,
            per_class=[acc] * 10,
        )

    rows = [
        row("cnn-wide", "teacher", 0.95),
        row("ensemble", "ensemble", 0.96),
        row(f"scratch ({student})", "scratch", scratch),
        row(f"distilled ({student})", "distilled", distilled),
    ]
    curves = {
        role: [
            ev.Epoch(
                model=role,
                epoch=e,
                epochs=epochs,
                loss=1.0 / e,
                hard=0.5 / e,
                soft=None if role == "scratch" else 0.2 / e,
                test_acc=acc - 0.1 / e,
                t=float(e),
            )
            for e in range(1, epochs + 1)
        ]
        for role, acc in (("scratch", scratch), ("distilled", distilled))
    }
    students = {"scratch": models.build(student, dataset, seed=0), "distilled": models.build(student, dataset, seed=1)}
    return RunResult(config, rows, curves, partial, 3.5, tuple(str(i) for i in range(10)), students)

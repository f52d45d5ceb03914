"""Watching a student learn: its probabilities on a fixed probe set of test images after every epoch.

The probe set is stratified (PER_CLASS test images of each class, drawn once with PROBE_SEED, so every
run of a dataset watches the same images). During a distillation each student's softmax (T = 1) on
those images is kept after every epoch, with the teacher ensemble's beside it, so a page can scrub
through training image by image. The students' test logits are computed after every epoch anyway,
so recording costs a slice and a softmax of 100 rows (benchmarks/probe_overhead.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

PER_CLASS = 10
PROBE_SEED = 0


def probe_indices(test_y: torch.Tensor, per_class: int = PER_CLASS, seed: int = PROBE_SEED) -> torch.Tensor:
    """Test-set indices of `per_class` images of each class (fewer if a class has fewer), class by class."""
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(int(test_y.max()) + 1 if len(test_y) else 0):
        members = (test_y == c).nonzero().flatten()
        chosen.append(members[torch.randperm(len(members), generator=gen)[:per_class]].sort().values)
    return torch.cat(chosen) if chosen else torch.empty(0, dtype=torch.long)


@dataclass
class Probes:
    """Per-epoch probabilities of each student on the probe images; `teacher` is the ensemble's.

    students[role][e] holds epoch e + 1's probabilities (float16, [N, K]); kl[role][e] each image's
    KL(teacher || student) and top[role][e] each image's predicted class, both from the exact logits.
    """

    indices: torch.Tensor  # [N] test-set indices
    labels: torch.Tensor  # [N] true classes
    teacher: torch.Tensor  # [N, K] float32
    students: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    kl: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    top: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    @classmethod
    def start(cls, indices: torch.Tensor, test_y: torch.Tensor, teacher_test_logits: torch.Tensor) -> Probes:
        return cls(indices, test_y[indices], torch.softmax(teacher_test_logits[indices].float(), -1))

    def record(self, role: str, test_logits: torch.Tensor) -> None:
        """Keep a student's probabilities after one more epoch, from its logits on the whole test set."""
        log_p = torch.log_softmax(test_logits[self.indices].float(), -1)
        log_t = torch.log(self.teacher)
        self.students.setdefault(role, []).append(log_p.exp().half())
        self.kl.setdefault(role, []).append(torch.where(self.teacher > 0, self.teacher * (log_t - log_p), 0.0).sum(-1))
        self.top.setdefault(role, []).append(log_p.argmax(-1).to(torch.uint8))

    def truncate(self, epochs: int) -> None:
        """Keep the first `epochs` epochs of every student (a stopped run compares them after these)."""
        for store in (self.students, self.kl, self.top):
            for role in store:
                del store[role][epochs:]

    def keep(self, roles: list[str]) -> None:
        """Forget every student not in `roles` (e.g. a generation stopped before it finished)."""
        for store in (self.students, self.kl, self.top):
            for role in set(store) - set(roles):
                del store[role]

    def rename(self, old: str, new: str) -> None:
        for store in (self.students, self.kl, self.top):
            if old in store:
                store[new] = store.pop(old)

    def epochs(self, role: str) -> int:
        return len(self.students.get(role, ()))

    def probs(self, role: str) -> torch.Tensor:
        """[epochs, N, K] float32: the student's probabilities after each epoch."""
        return torch.stack(self.students[role]).float()


def agreement(probes: Probes, role: str) -> list[float]:
    """Per epoch, the share of probe images on which the student's top class is the teacher's."""
    teacher_top = probes.teacher.argmax(-1)
    return [(top.long() == teacher_top).double().mean().item() for top in probes.top.get(role, ())]


def kl_to_teacher(probes: Probes, role: str) -> list[float]:
    """Per epoch, the mean over the probe images of KL(teacher || student), at T = 1."""
    return [kl.double().mean().item() for kl in probes.kl.get(role, ())]

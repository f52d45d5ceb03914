"""Watching a student learn: its probabilities on a fixed probe set of test images after every epoch.

The probe set is stratified (PER_CLASS test images of each class, drawn once with PROBE_SEED, so every
run of a dataset watches the same images). During a distillation each student's softmax (T = 1) on
those images is kept after every epoch, with the teacher ensemble's beside it, so a page can scrub
through training image by image. The students' test logits are computed after every epoch anyway,
so recording costs a slice and a softmax of 100 rows (benchmarks/probe_overhead.py).

The functions after `Probes` shape what the Dark knowledge page scrubs through: which epochs both
students finished, one image's probabilities at an epoch, the agreement and KL curves, and one point
per student and image for a clickable scatter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .dark import telling_images

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


# --- what the Dark knowledge page scrubs through ------------------------------------------------

STUDENTS = ("scratch", "distilled")


def roles(probes: Probes) -> list[str]:
    """The students the probes watched, scratch first (STUDENTS order)."""
    return [r for r in STUDENTS if probes.epochs(r)]


def common_epochs(probes: Probes) -> int:
    """Epochs every watched student finished (0 if none): the range an epoch slider can scrub."""
    counts = [probes.epochs(r) for r in roles(probes)]
    return min(counts) if counts else 0


def check_epoch(probes: Probes, epoch) -> int:
    """epoch as an int from 1 to common_epochs(probes), or a ValueError naming the range."""
    n = common_epochs(probes)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= n:
        raise ValueError(f"epoch must be a whole number from 1 to {n}, got {epoch!r}")
    return epoch


def check_position(probes: Probes, position) -> int:
    n = len(probes.indices)
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < n:
        raise ValueError(f"position must be a probe image's position from 0 to {n - 1}, got {position!r}")
    return position


def position_of(probes: Probes, test_index) -> int | None:
    """The probe position of a test image, or None if it is not a probe image."""
    if test_index is None:
        return None
    hits = (probes.indices == int(test_index)).nonzero().flatten()
    return int(hits[0]) if len(hits) else None


def opening_position(probes: Probes) -> int:
    """The probe image the panel opens on: the one whose teacher shows the clearest runner-up class."""
    return int(telling_images(torch.log(probes.teacher.clamp_min(1e-12)), probes.labels, 1)[0])


def snapshot(probes: Probes, position: int, epoch: int) -> dict[str, torch.Tensor]:
    """One probe image's probabilities [K] at T = 1: the teacher's, and each student's after `epoch`."""
    i, e = check_position(probes, position), check_epoch(probes, epoch)
    out = {"teacher": probes.teacher[i].float()}
    for role in roles(probes):
        out[role] = probes.students[role][e - 1][i].float()
    return out


def learning_curves(probes: Probes) -> dict[str, dict[str, list[float]]]:
    """Per student, its agreement with the teacher and mean KL to it after each of the common epochs."""
    n = common_epochs(probes)
    return {r: {"agreement": agreement(probes, r)[:n], "kl": kl_to_teacher(probes, r)[:n]} for r in roles(probes)}


@dataclass(frozen=True)
class ImagePoint:
    """One student on one probe image after one epoch: how far it is from the teacher and how it answers."""

    role: str
    position: int
    test_index: int
    label: int
    kl: float  # KL(teacher || student) at T = 1
    teacher_class_prob: float  # the student's probability of the teacher's top class
    agrees: bool  # the student's top class is the teacher's


def image_points(probes: Probes, epoch: int) -> list[ImagePoint]:
    """Every student's point for every probe image after `epoch`, students in STUDENTS order."""
    e = check_epoch(probes, epoch)
    teacher_top = probes.teacher.argmax(-1)
    points = []
    for role in roles(probes):
        probs = probes.students[role][e - 1].float()
        kl, top = probes.kl[role][e - 1], probes.top[role][e - 1].long()
        on_teacher = probs.gather(1, teacher_top.unsqueeze(1)).squeeze(1)
        for i in range(len(probes.indices)):
            points.append(
                ImagePoint(
                    role,
                    i,
                    int(probes.indices[i]),
                    int(probes.labels[i]),
                    float(kl[i]),
                    float(on_teacher[i]),
                    bool(top[i] == teacher_top[i]),
                )
            )
    return points


def next_epoch(probes: Probes, epoch: int) -> int | None:
    """The epoch a Play button shows after `epoch`, or None at the last one (playing stops)."""
    e = check_epoch(probes, epoch)
    return e + 1 if e < common_epochs(probes) else None

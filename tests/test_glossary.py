"""The glossary: every term a learner meets resolves, in its usual spellings, to one plain sentence."""

import pytest
import torch

from kdcore import glossary
from kdcore.losses import distillation_loss, soft_targets

# The terms issue 12 lists as used without explanation somewhere in the app.
USED_IN_THE_APP = [
    "logits", "softmax", "temperature T", "T", "α", "alpha", "soft targets", "dark knowledge",
    "hard loss", "cross-entropy", "CE", "soft loss", "KL divergence", "KL", "MLP", "CNN", "ensemble",
    "student", "teacher", "scratch student", "distilled student", "KD gain", "entropy in bits", "agreement",
    "ECE", "calibration", "latency", "throughput", "parameters", "epoch", "data fraction",
    "confidence interval", "test-set noise", "seed",
]  # fmt: skip


@pytest.mark.parametrize("term", USED_IN_THE_APP)
def test_every_term_used_in_the_app_has_a_definition(term):
    assert glossary.define(term)


def test_every_entry_resolves_by_its_name_and_each_alias_to_itself():
    for entry in glossary.ENTRIES:
        for name in (entry.term, *entry.aliases):
            assert glossary.lookup(name) is entry


@pytest.mark.parametrize("spelling", ["KL", "kl", "kl divergence", "KL-Divergence", "  Kullback-Leibler divergence "])
def test_usual_spellings_are_accepted_case_insensitively(spelling):
    assert glossary.define(spelling) == glossary.define("KL divergence")


def test_cross_entropy_spellings_name_the_hard_loss():
    assert glossary.define("Cross entropy (CE)") == glossary.define("ce") == glossary.define("hard loss")


def test_each_definition_is_one_short_sentence():
    for entry in glossary.ENTRIES:
        assert entry.sentence.endswith(".") and ". " not in entry.sentence, entry.term
        assert len(entry.sentence) <= 200, entry.term


def test_an_unknown_term_is_named_with_the_known_terms_listed():
    with pytest.raises(ValueError, match=r"'softmx' is not in the glossary\. Did you mean 'Softmax'\?") as info:
        glossary.define("softmx")
    message = str(info.value)
    assert all(entry.term in message for entry in glossary.ENTRIES)
    with pytest.raises(ValueError, match="term must be a string"):
        glossary.define(None)


def test_tooltip_joins_each_definition_once():
    text = glossary.tooltip("KL", "kl divergence", "temperature")
    assert text == f"**KL divergence**: {glossary.define('KL')}\n\n**Temperature T**: {glossary.define('T')}"
    with pytest.raises(ValueError, match="at least one term"):
        glossary.tooltip()
    with pytest.raises(ValueError, match="'logit scores' is not in the glossary"):
        glossary.tooltip("logits", "logit scores")


def test_markdown_lists_every_entry_in_order():
    lines = glossary.as_markdown().splitlines()
    assert lines == [f"- **{e.term}**: {e.sentence}" for e in glossary.ENTRIES]


def test_t_and_alpha_are_defined_as_the_loss_computes_them():
    # The glossary's formulas, checked against kdcore.losses, the project's one definition.
    assert "softmax(logits / T)" in glossary.define("T")
    assert "total loss = (1 − α) × hard loss + α × soft loss" in glossary.define("α")
    assert "α = 0" in glossary.define("α") and "labels only" in glossary.define("α")
    assert glossary.define("soft targets").count("softmax(teacher logits / T)") == 1
    assert glossary.define("soft loss").startswith("T² × the KL divergence")
    torch.manual_seed(0)
    s, t, y = torch.randn(6, 10), torch.randn(6, 10), torch.randint(0, 10, (6,))
    T, alpha = 3.0, 0.3
    out = distillation_loss(s, t, y, T, alpha)
    assert torch.allclose(out.total, (1 - alpha) * out.hard + alpha * out.soft)
    assert torch.allclose(soft_targets(t, T), torch.softmax(t / T, dim=-1))
    kl = torch.nn.functional.kl_div(torch.log_softmax(s / T, -1), soft_targets(t, T), reduction="batchmean")
    assert torch.allclose(out.soft, T * T * kl)
    assert torch.allclose(distillation_loss(s, t, y, T, 0.0).total, torch.nn.functional.cross_entropy(s, y))

"""The records behind each name (issue #22 §2): an ablation, a metric, a model type is one record.

Torch-free checks of what the records promise: every metric's facts agree with each other and with
the result's ``metric`` section, :func:`circuitdiff.metrics.check_metric` is the one rule the spec,
the service and the engine apply, and every ablation's rule is complete on both paths. The numbers
each record computes are checked against independent references elsewhere (test_metrics,
test_fast_scan, test_influence, test_llama, test_hooks_adapter).
"""

from __future__ import annotations

import pytest

from circuitdiff.errors import MetricError
from circuitdiff.metrics import METRIC_FIX, METRICS, check_metric, metric_info, retained_pct
from circuitdiff.result import MetricInfo


@pytest.mark.parametrize("name", list(METRICS))
def test_a_metric_record_is_consistent(name):
    d = METRICS[name]
    info = metric_info(name)
    assert list(info) == list(MetricInfo.model_fields)  # the result's section, nothing of how it is computed
    assert MetricInfo(**info).name == name
    assert (d.retained is None) == (d.retained_pct is None)
    assert (d.performs_task is None) == (not d.needs_answer)
    assert d.full_vocab or d.needs_answer  # the answer columns exist only with an answer
    assert not (d.all_positions and d.from_residual is not None)
    assert d.attribution in ("first_order", "fisher")
    if d.retained_pct is None:
        assert retained_pct(name, 1.0, 2.0) is None


def test_retained_pct_follows_each_record():
    assert retained_pct("logit_diff", 1.0, 2.0) == 50.0 and retained_pct("logit_diff", 1.0, -2.0) is None
    assert retained_pct("answer_prob", 0.25, 0.5) == 50.0
    assert retained_pct("answer_logprob", -2.0, -1.0) == 50.0 and retained_pct("answer_logprob", 0.0, -1.0) is None
    assert retained_pct("kl", 1.0, 0.0) is None and retained_pct("loss", 3.0, 2.0) is None


@pytest.mark.parametrize("name", [m for m, d in METRICS.items() if d.needs_answer])
def test_an_answer_metric_is_refused_on_plain_text(name):
    check_metric(name, "answers", {"teacher": "masked", "student": "causal"})
    with pytest.raises(MetricError) as e:
        check_metric(name, "text")
    assert e.value.field == "metric" and e.value.fix == METRIC_FIX and "plain text" in e.value.message
    assert "kl or loss" in METRIC_FIX


def test_loss_needs_causal_models_and_plain_text_needs_them_too():
    check_metric("loss", "text", {"teacher": "causal", "student": "causal"})
    check_metric("loss", None, {"teacher": None})  # a family not known yet is not checked
    with pytest.raises(MetricError) as e:
        check_metric("loss", None, {"student": "masked", "teacher": "causal"})
    assert e.value.field == "metric" and "the student is a masked LM" in e.value.message
    assert "loss" not in e.value.fix.split("(")[1]  # the metrics offered instead are ones a masked LM has
    with pytest.raises(MetricError) as e:
        check_metric("kl", "text", {"teacher": "masked", "student": "masked"})
    assert e.value.field == "dataset" and "teacher and student" in e.value.message


def test_the_spec_applies_check_metric_to_the_zoo_families_it_knows():
    from pydantic import ValidationError

    from circuitdiff.spec import ComparisonSpec

    ComparisonSpec(teacher="zoo:bert-teacher", student="zoo:distilbert-student", task="ioi", metric="kl")
    with pytest.raises(ValidationError) as e:
        ComparisonSpec(teacher="zoo:bert-teacher", student="zoo:distilbert-student", task="ioi", metric="loss")
    err = e.value.errors()[0]
    assert err["type"] == "invalid_metric" and err["ctx"]["field"] == "metric"
    assert "teacher and student is a masked LM" in err["msg"]


def test_every_ablation_rule_is_complete_on_both_paths():
    torch = pytest.importorskip("torch")
    from circuitdiff.scan.ablation import ABLATIONS, ablation_rule, replacement

    clean = torch.randn(2, 3, 4, dtype=torch.float64)
    corrupted = torch.randn(2, 5, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    for name, rule in ABLATIONS.items():
        assert (rule.collect is None) == (not rule.uses_corrupted), name
        assert rule.corrupted_length(3, 5) == (5 if rule.whole_corrupted else 3)
        rep = replacement(clean, corrupted if rule.uses_corrupted else None, name, mask)
        assert rep.shape == clean.shape, name
        if rule.uses_corrupted:
            with pytest.raises(ValueError, match="needs the corrupted prompts"):
                replacement(clean, None, name)
    assert torch.allclose(replacement(clean, corrupted, "token_mean", mask)[0, 0],
                       (corrupted[0].sum(0) + corrupted[1, :2].sum(0)) / 7)
    with pytest.raises(ValueError, match="unknown ablation 'noise'; choose one of: zero, mean"):
        ablation_rule("noise")

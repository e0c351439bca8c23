"""The records behind each name (issue #22 §2): an ablation, a metric, a model type is one record.

Checks of what the records promise, without a model: every ablation's rule is complete on both
paths. The numbers each record computes are checked against independent references elsewhere
(test_fast_scan, test_influence, test_llama, test_hooks_adapter).
"""

from __future__ import annotations

import pytest

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

"""bfloat16 scans against float32 on the bundled pairs: the accuracy contract a result states in
``scan.precision`` (circuitdiff.vocabulary.PRECISION_CONTRACTS) holds.

For each model and task: the same scan with the model in float32 and in bfloat16; the largest
influence difference relative to the clean LD scale, the Spearman correlation over components
whose float32 influence exceeds 1% of the largest, and the top-10 as a set (identical up to
components whose influences are tied at bf16's measured error). The screened scan in bf16 is
exercised end to end in tests/engine/test_screened.py.
"""

from __future__ import annotations

import pytest
import torch

from circuitdiff.scan.precision import precision_figures
from circuitdiff.vocabulary import PRECISION_CONTRACTS

BF16 = PRECISION_CONTRACTS["bfloat16"]


def _view(adapter, task: str, n: int):
    from circuitdiff.catalogue import task_items
    from circuitdiff.tasks.dataset import build_task_data

    tok = adapter.tokenizer
    return build_task_data(task_items(task, {}, n, seed=0), {"teacher": tok, "student": tok}, name=task).view("teacher")


def _check(model_id: str, task: str, method: str, n: int = 24) -> dict:
    from circuitdiff.models.loading import load_model
    from circuitdiff.scan import scan

    out = {}
    for dtype in ("float32", "bfloat16"):
        adapter = load_model(model_id, dtype=dtype)
        s = scan(adapter, _view(adapter, task, n), "mean", method=method)
        assert s.clean_ld.dtype == torch.float64
        out[dtype] = s
    ref, low = out["float32"], out["bfloat16"]
    assert low.method == ref.method == method
    scale = float(ref.clean_ld.abs().mean())
    f = precision_figures(ref.influences(), low.influences(), scale)
    print(f"{model_id} {task} {method}: max |dI|/scale {f['max_rel']:.2e}, spearman {f['spearman']:.4f}, "
          f"top-{BF16['top_k_identical']} identical {f['top_k_identical']} (swapped {f['swapped']})", flush=True)
    assert f["max_rel"] <= BF16["max_abs_influence_diff_rel"]
    assert f["spearman"] >= BF16["spearman_min"]
    assert f["top_k_up_to_ties"] and f["meets"]
    return f


@pytest.mark.parametrize("task", ["ioi", "sequence"])
def test_bf16_exact_scan_meets_the_contract_on_the_zoo_pair(zoo_gpt_pair, task):
    for model_id in zoo_gpt_pair:
        _check(model_id, task, "exact", n=16)


def test_logit_differences_are_float32_under_bf16(tiny_gpt_dir):
    from circuitdiff.models.loading import load_model

    stack = load_model(str(tiny_gpt_dir), dtype="bfloat16").functional()
    assert stack.dtype == torch.bfloat16
    x = torch.randn(3, stack.d_model, dtype=torch.bfloat16)
    d = stack.unembed(torch.tensor([1, 2, 3])) - stack.unembed(torch.tensor([4, 5, 6]))
    ld = stack.logit_diff(x, d)
    assert ld.dtype == torch.float32
    ref = (stack.final_norm(x).double() * d.double()).sum(-1)
    assert torch.allclose(ld.double(), ref, rtol=1e-5, atol=1e-5)  # no bf16 rounding of the sum

"""The precision contract evaluated: how a scan in a lower dtype compares with the same scan in
float32 (circuitdiff.vocabulary.PRECISION_CONTRACTS states the bounds; tests/engine/test_precision.py,
benchmarks/scan.py and benchmarks/gpu_check.py all measure with this one function)."""

from __future__ import annotations

from typing import Any

from ..vocabulary import PRECISION_CONTRACTS
from .attribution import spearman


def precision_figures(ref: dict[str, float], low: dict[str, float], scale: float,
                      dtype: str = "bfloat16") -> dict[str, Any]:
    """``ref``/``low``: component -> influence in float32 / in ``dtype``; ``scale``: the clean LD scale
    (mean |LD_clean| in float32). Returns what the contract bounds: ``max_rel`` (max |ΔI| / scale),
    ``spearman`` over components whose float32 influence exceeds ``spearman_over`` of the largest, the
    top-k as a set (``top_k_identical``; ``top_k_up_to_ties``: differing only in components whose
    float32 influences lie within ``top_k_ties_within`` x the largest difference of the k-th largest,
    a tie at this precision), and ``meets``: every bound holds."""
    c = PRECISION_CONTRACTS[dtype]
    big = max(ref.values())
    over = [x for x in ref if ref[x] > c["spearman_over"] * big]
    k = min(c["top_k_identical"], len(ref))
    top = lambda d: set(sorted(d, key=lambda x: -d[x])[:k])  # noqa: E731
    err = max(abs(ref[x] - low[x]) for x in ref)
    kth = sorted(ref.values(), reverse=True)[k - 1]
    swapped = top(ref) ^ top(low)
    out = {
        "max_rel": err / scale if scale > 0 else float("inf"),
        "spearman": spearman([ref[x] for x in over], [low[x] for x in over]) if len(over) > 1 else 1.0,
        "top_k": k,
        "top_k_identical": not swapped,
        "top_k_up_to_ties": all(abs(ref[x] - kth) <= c["top_k_ties_within"] * err for x in swapped),
        "swapped": sorted(swapped),
    }
    out["meets"] = (out["max_rel"] <= c["max_abs_influence_diff_rel"] and out["spearman"] >= c["spearman_min"]
                    and out["top_k_up_to_ties"])
    return out

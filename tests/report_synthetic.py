"""A plausible result dict with the shapes of a 4x4 teacher / 2x4 student IOI comparison.

Input data for the report's fast tests (escaping, optional fields, layout of larger models); the
behaviour tests render the result of a real zoo comparison instead.
"""

from __future__ import annotations

import numpy as np

from circuitdiff.vocabulary import SCHEMA_VERSION

TOKENS = ["<|endoftext|>", "When", " Mary", " and", " John", " went", " to", " the", " store", ",",
          " John", " gave", " a", " drink", " to"]


def _mean_pattern(rng: np.random.Generator, t: int, focus: int | None) -> list[list[float]]:
    """A causal attention pattern: rows sum to 1 over keys <= query; optional focus key."""
    logits = rng.normal(0, 1, (t, t))
    if focus is not None:
        logits[:, focus] += 4.0
    logits[:, 0] += 1.5  # attention sinks on BOS, as in real models
    logits[np.triu_indices(t, 1)] = -np.inf
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).round(4).tolist()


def synthetic_result(teacher_layers: int = 4, student_layers: int = 2, n_heads: int = 4, seed: int = 0,
                     teacher_id: str = "zoo:gpt-teacher", student_id: str = "zoo:gpt-student",
                     prompt: str = "When Mary and John went to the store, John gave a drink to",
                     student_ld: float = 2.1) -> dict:
    rng = np.random.default_rng(seed)
    ld = {"teacher": 3.47, "student": student_ld}
    shapes = {"teacher": teacher_layers, "student": student_layers}
    influence: dict[str, dict] = {}
    for side, n_layers in shapes.items():
        comps: dict[str, dict] = {}
        ids = [f"L{l}H{h}" for l in range(n_layers) for h in range(n_heads)] + [f"L{l}MLP" for l in range(n_layers)]
        for cid in ids:
            scale = 1.2 if cid.endswith("MLP") else 0.35
            delta = float(-abs(rng.gamma(0.6, scale)) + rng.normal(0, 0.05))
            ablated = ld[side] + delta
            comps[cid] = {
                "value": ablated,
                "logit_diff": ablated,
                "delta": delta,
                "influence": abs(delta),
                "retained_pct": 100 * ablated / ld[side] if ld[side] > 0 else None,
            }
        influence[side] = comps

    s_heads = [f"L{l}H{h}" for l in range(student_layers) for h in range(n_heads)]
    t_heads = [f"L{l}H{h}" for l in range(teacher_layers) for h in range(n_heads)]
    s_mlps = [f"L{l}MLP" for l in range(student_layers)]
    t_mlps = [f"L{l}MLP" for l in range(teacher_layers)]
    head_sim = np.clip(rng.normal(0.8, 0.08, (len(s_heads), len(t_heads))), 0, 1)
    for i in range(len(s_heads)):  # each student head has a close teacher twin
        head_sim[i, rng.integers(len(t_heads))] = rng.uniform(0.9, 0.99)
    mlp_sim = np.clip(rng.normal(0.4, 0.25, (len(s_mlps), len(t_mlps))), 0, 1)

    matches = []
    for rows, cols, sim, kind, thr in ((s_heads, t_heads, head_sim, "head", 0.95), (s_mlps, t_mlps, mlp_sim, "mlp", 0.12)):
        for i, s in enumerate(rows):
            j = int(np.argmax(sim[i]))
            matches.append({
                "student": s, "teacher": cols[j], "kind": kind, "similarity": float(sim[i, j]),
                "matched": bool(sim[i, j] >= thr),
                "student_influence": influence["student"][s]["influence"],
                "teacher_influence": influence["teacher"][cols[j]]["influence"],
                "duplicated": False,
            })
    i_s = np.array([m["student_influence"] for m in matches])
    i_t = np.array([m["teacher_influence"] for m in matches])
    sims = np.array([m["similarity"] for m in matches])
    score = float(np.mean(sims * (1 - np.abs(i_s / i_s.sum() - i_t / i_t.sum()))))

    def robustness(side: str) -> dict:
        r = np.array([c["retained_pct"] for c in influence[side].values()], dtype=float)
        m = 100 - np.clip(r, 0, 100)
        sev = np.maximum(0, (np.minimum(100, m) - 20) / 80)
        return {"n_components": len(m), "mean_drop": float(m.mean()), "mean_drop_ci95": [float(m.mean() * 0.6), float(m.mean() * 1.5)],
                "median_drop": float(np.median(m)), "max_drop": float(m.max()), "severity": float(sev.mean())}

    rob_t = robustness("teacher")
    rob_s = robustness("student") if ld["student"] > 0 else None
    p_t, p_s = 861_440, 539_904
    views = []
    for m in sorted((m for m in matches if m["kind"] == "head"), key=lambda m: -m["similarity"])[:3]:
        views.append({"student": m["student"], "teacher": m["teacher"], "similarity": m["similarity"], "tokens": TOKENS,
                      "student_pattern": _mean_pattern(rng, len(TOKENS), 2),
                      "teacher_pattern": _mean_pattern(rng, len(TOKENS), 2)})
    spec = {"teacher": {"id": teacher_id, "revision": None}, "student": {"id": student_id, "revision": None},
            "task": "ioi", "task_options": {"templates": "mixed"}, "dataset": None, "preset": "default",
            "ablation": "mean", "matching": "student_to_teacher", "mlp_similarity": "eigen", "head_threshold": 0.95,
            "mlp_threshold": 0.12, "duplicate_unmatched": False, "n_prompts": 16, "seed": 0, "bos": "prepend",
            "device": "auto", "dtype": "float32", "scan": "exact", "bootstrap": 1000}

    def model(mid: str, n_layers: int, n_params: int) -> dict:
        return {"id": mid, "kind": "zoo", "revision": None, "sha256": "ab" * 32, "architecture": "GPT2LMHeadModel",
                "family": "causal", "adapter": "bridge", "n_layers": n_layers, "n_heads": n_heads, "d_model": 64,
                "n_params": n_params, "vocab_size": 512}

    return {
        "schema_version": SCHEMA_VERSION,
        "created_at": "2026-11-28T17:40:00Z",
        "spec": spec,
        "engine": {"circuitdiff": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0", "transformer_lens": "4.3.0",
                   "numpy": "2.4.6", "python": "3.11.2"},
        "models": {"teacher": model(teacher_id, teacher_layers, p_t), "student": model(student_id, student_layers, p_s)},
        "task": {"name": "ioi", "options": {"templates": "mixed"}, "form": "causal", "n_prompts": 16, "n_rejected": 1,
                 "dataset_sha256": "cd" * 32, "rejected": [{"index": 3, "prompt": prompt + " Zyx", "reason": "answer ' Zyx' is not a single token"}],
                 "example_prompt": prompt, "token_alignment": "shared_vocabulary"},
        "performance": {side: {"metric": "logit_diff", "value": v, "value_std": 0.8, "logit_diff": v, "logit_diff_std": 0.8, "accuracy": 0.94 if v > 0 else 0.31,
                               "performs_task": v > 0} for side, v in ld.items()},
        "influence": influence,
        "similarity": {"heads": {"rows": s_heads, "cols": t_heads, "values": head_sim.round(4).tolist()},
                       "mlps": {"rows": s_mlps, "cols": t_mlps, "values": mlp_sim.round(4).tolist()},
                       "head_method": "attention_row_cosine", "mlp_method": "eigen", "mlps_raw": None},
        "matches": matches,
        "alignment": {"score": score, "ci95": [score - 0.02, min(1.0, score + 0.015)], "n_pairs": len(matches),
                      "mean_similarity": float(sims.mean()), "direction": "student_to_teacher"},
        "robustness": {"teacher": rob_t, "student": rob_s, "compression_ratio": (p_t - p_s) / p_t,
                       "delta_mean_drop": None if rob_s is None else rob_s["mean_drop"] - rob_t["mean_drop"],
                       "delta_mean_drop_ci95": None, "slope_mean": None, "delta_severity": None,
                       "slope_severity": None, "note": None},
        "attention": views,
        "scan": {"method": "exact", "approximate": False, "agreement": None, "cache": {"teacher": "miss", "student": "miss"}},
        "timings": {"load_models": 1.2, "task": 0.1, "influence": 3.4, "similarity": 0.5, "total": 5.3},
        "warnings": [],
    }

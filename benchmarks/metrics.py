"""Every metric on the zoo GPT pair (issue #17): alignment score, top components, exact vs naive time.

Run by hand (not part of `make test`):

    .venv/bin/python benchmarks/metrics.py               # IOI, 100 prompts, mean ablation, CPU
    .venv/bin/python benchmarks/metrics.py --prompts 24  # a quicker run

For each metric (circuitdiff.metrics): one full comparison (exact scan, no cache) gives the alignment
score and each model's top-3 components by influence; then the naive and the exact scans of both
models run side by side in this process, timed (naive_s, exact_s, speedup) and compared
(max |influence_exact - influence_naive| relative to the largest influence). A plain-text run
(metric loss on a few sentences) closes the output. Output: one ``name: value`` line per figure.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from circuitdiff.catalogue import task_items
from circuitdiff.metrics import METRICS
from circuitdiff.models.loading import load_model
from circuitdiff.pipeline import run_comparison
from circuitdiff.scan import scan
from circuitdiff.tasks.dataset import build_task_data

PAIR = ("zoo:gpt-teacher", "zoo:gpt-student")
TEXTS = [
    "Mary and John went to the store. John gave a drink to Mary.",
    "The cat sat on the mat and the dog sat on the rug.",
    "When Tom and Anna arrived at the park, Anna gave a ball to Tom.",
    "Alice and Bob went to the school. Bob gave a book to Alice.",
    "After the meeting, Sarah and James went to the office.",
    "The garden was quiet in the morning and loud at night.",
    "Emma and Paul went to the garden. Paul gave a flower to Emma.",
    "The river ran past the old mill and under the stone bridge.",
]


def top3(influence: dict) -> str:
    return ", ".join(f"{c} {v['influence']:.3g}" for c, v in sorted(influence.items(), key=lambda kv: -kv[1]["influence"])[:3])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--ablation", default="mean")
    args = ap.parse_args()
    adapters = {role: load_model(mid) for role, mid in zip(("teacher", "student"), PAIR)}
    tok = adapters["teacher"].tokenizer
    task = build_task_data(task_items("ioi", {}, args.prompts, seed=0), {"teacher": tok, "student": tok}, name="ioi")
    print(f"prompts: {task.n_prompts}")
    for metric in METRICS:
        if metric == "loss":
            continue  # the next-token loss of IOI prompts is not an IOI measure; see the plain-text run
        r = run_comparison({"teacher": PAIR[0], "student": PAIR[1], "task": "ioi", "n_prompts": args.prompts,
                            "ablation": args.ablation, "metric": metric, "device": "cpu"}, cache=False)
        print(f"{metric}_alignment: {r.alignment.score:.4f} (chance {r.alignment.chance.mean:.4f}, "
              f"above_chance {r.alignment.above_chance})")
        for role in ("teacher", "student"):
            p = r.performance[role]
            print(f"{metric}_{role}_clean: {p.value:.4f} ± {p.value_std:.4f}")
            print(f"{metric}_{role}_top3: {top3(r.influence[role])}")
        t = {"naive": 0.0, "exact": 0.0}
        worst = 0.0
        for role, adapter in adapters.items():
            view = task.view(role)
            out = {}
            for method in ("naive", "exact"):
                start = time.perf_counter()
                out[method] = scan(adapter, view, args.ablation, method=method, metric=metric).influences()
                t[method] += time.perf_counter() - start
            scale = max(out["naive"].values())
            worst = max(worst, max(abs(out["exact"][c] - out["naive"][c]) for c in out["naive"]) / scale)
        print(f"{metric}_naive_s: {t['naive']:.2f}")
        print(f"{metric}_exact_s: {t['exact']:.2f}")
        print(f"{metric}_speedup: {t['naive'] / t['exact']:.2f}")
        print(f"{metric}_max_influence_diff_rel: {worst:.2e}")

    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "texts.jsonl"
        data.write_text("\n".join(json.dumps({"text": s}) for s in TEXTS) + "\n")
        r = run_comparison({"teacher": PAIR[0], "student": PAIR[1], "task": "custom", "dataset": str(data),
                            "n_prompts": len(TEXTS), "ablation": args.ablation, "metric": "loss", "device": "cpu"},
                           cache=False)
    print(f"text_loss_alignment: {r.alignment.score:.4f} (chance {r.alignment.chance.mean:.4f}, "
          f"above_chance {r.alignment.above_chance})")
    for role in ("teacher", "student"):
        p = r.performance[role]
        print(f"text_loss_{role}_clean: {p.value:.4f} nats/token, 95% CI {p.value_ci95}")
        print(f"text_loss_{role}_top3: {top3(r.influence[role])}")


if __name__ == "__main__":
    main()

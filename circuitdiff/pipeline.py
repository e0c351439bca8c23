"""``run_comparison(spec) -> ComparisonResult``: the paper's analysis end to end (PAPER.md §Method).

The single entry point shared by the CLI and the worker. Stages, in order (each timed, each
reported through ``progress(stage, done, total)``):

  load        both models behind the adapter interface (circuitdiff.models)
  task        prompts -> token batches for the pair, rejected prompts reported (circuitdiff.tasks)
  clean       one clean pass per model: per-prompt logit differences and top-1 accuracy, mean
              attention patterns per head, MLP outputs per layer (same batches, same BOS policy)
  influence   every head and MLP ablated alone, per model (circuitdiff.analysis.influence)
  similarity  head row-cosine of mean patterns; MLP eigenvector (rescaled) or linear CKA
  matching    argmax in the spec's direction, thresholds, the paper's duplicated pairs if asked
  alignment   influence-weighted score, bootstrap CI over prompts
  robustness  per-model drop statistics from retained %, compression ratio and slope

``cancelled()`` is polled between stages and between components; when it turns true the run
stops with :class:`~circuitdiff.errors.Cancelled`.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Callable

import numpy as np
import torch

from . import ENGINE_VERSION
from .analysis import alignment as alignment_mod
from .analysis import matching as matching_mod
from .analysis import robustness as robustness_mod
from .analysis import similarity as similarity_mod
from .analysis.components import head_ids, mlp_ids
from .analysis import scan_methods  # noqa: F401  (registers the exact and attribution scans)
from .analysis.influence import SCAN_METHODS, InfluenceScan, scan
from .analysis.word_patterns import word_pass
from .cache import ActivationCache
from .cache.engine import PipelineCache, open_cache
from .errors import Cancelled
from .models import ModelAdapter, load_model, resolve_device
from .result import ComparisonResult
from .spec import ComparisonSpec
from .tasks.dataset import TaskData, TokenizedTask, build_task_data
from .tasks.registry import task_items

Progress = Callable[[str, int, int], None]
ROLES = ("teacher", "student")
N_ATTENTION_VIEWS = 4
BATCH_SIZE = 32


def run_comparison(
    spec: ComparisonSpec | dict,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    *,
    datasets_dir: str | None = None,
    loader: Callable[..., ModelAdapter] = load_model,
    cache: ActivationCache | bool | str | None = None,
) -> ComparisonResult:
    """Compare teacher and student as ``spec`` says.

    datasets_dir: where uploaded custom datasets live (``<id>.jsonl``).
    loader: ``loader(ref, device=, dtype=) -> ModelAdapter``; a worker passes one that keeps
    recently used models loaded (worker/engine.py).
    cache: per-model clean statistics and influence scans are reused from the activation cache
    (circuitdiff.cache): None/True = the default root ($CIRCUITDIFF_CACHE_DIR; off with
    CIRCUITDIFF_CACHE=0), a directory or an ActivationCache, False = off. ``scan.cache`` in the
    result says per model whether it came from the cache.
    """
    if isinstance(spec, dict):
        spec = ComparisonSpec.model_validate(spec)
    spec = spec.resolve()
    run = _Run(spec, progress, cancelled)
    _seed_everything(spec.seed)
    warnings: list[str] = []

    with run.stage("load"):
        device = resolve_device(spec.device)
        adapters: dict[str, ModelAdapter] = {}
        for k, role in enumerate(ROLES):
            adapters[role] = loader(getattr(spec, role), device=device, dtype=spec.dtype)
            run.tick(k + 1, 2)
        teacher, student = adapters["teacher"], adapters["student"]

    with run.stage("task"):
        items = task_items(spec.task, spec.task_options, spec.n_prompts, spec.seed, spec.dataset, datasets_dir)
        task = build_task_data(
            items, {r: adapters[r].tokenizer for r in ROLES}, name=spec.task, options=spec.task_options,
            bos=spec.bos, device=device, forms={r: adapters[r].family for r in ROLES},
        )
        warnings += task.warnings
        if task.word_aligned:
            # issue #4: no shared tokenisation; attention is compared on shared words. The paper
            # compared only the end-query row for its GPT-2 vs DistilBERT control (pitfall 8).
            task.token_alignment = "word_end_row" if spec.preset == "paper" else "word_pooled"

    pcache = PipelineCache(open_cache(cache))
    clean: dict[str, _CleanStats] = {}
    with run.stage("clean"):
        for k, role in enumerate(ROLES):
            clean[role] = pcache.clean(
                role, adapters[role], task.view(role), lambda: clean_pass(adapters[role], task.view(role)), _CleanStats
            )
            run.tick(k + 1, 2)

    scans: dict[str, InfluenceScan] = {}
    method = spec.scan
    if method not in SCAN_METHODS:
        warnings.append(f"scan method {method!r} is not available in this build; ran the naive reference scan")
        method = "naive"
    options = {"check": spec.attribution_check, "seed": spec.seed} if method == "attribution" and spec.attribution_check else {}
    for role in ROLES:
        with run.stage(f"influence:{role}"):
            scans[role] = pcache.scan(
                role, adapters[role], task.view(role), {"method": method, "ablation": spec.ablation, **options},
                lambda: scan(
                    adapters[role], task.view(role), spec.ablation, method=method, batch_size=BATCH_SIZE,
                    progress=progress, cancelled=cancelled, stage=f"influence:{role}", **options,
                ),
                InfluenceScan,
            )
    ran = {scans[r].method for r in ROLES}
    if ran != {method}:  # e.g. exact/attribution on an architecture they do not cover: naive ran instead
        warnings.append(f"scan method {method!r} does not cover every model of this pair; ran: "
                        + ", ".join(f"{r} {scans[r].method}" for r in ROLES))
        method = "naive" if "naive" in ran else method

    compared: dict[str, Any] = clean  # the statistics attention / MLP similarity read
    if task.word_aligned:
        with run.stage("words"):
            w_max = max(len(w) for w in task.words)
            compared = {r: word_pass(adapters[r], task.view(r), w_max, BATCH_SIZE) for r in ROLES}
            warnings.append(
                f"teacher and student do not share a tokenisation ({teacher.family} vs {student.family}): tokens are "
                f"mapped to the words both inputs share by character offsets; attention is compared on "
                + ("the word-aligned end-query row" if task.token_alignment == "word_end_row" else
                   "word-pooled patterns (sum over a word's key tokens, mean over its query tokens)")
                + ", MLP outputs on per-word means"
            )

    with run.stage("similarity"):
        sims = similarity_section(compared["student"], compared["teacher"], student, teacher, spec,
                                  alignment=task.token_alignment, warnings=warnings)

    with run.stage("matching"):
        pairs = matching_mod.match_components(
            sims["heads"], sims["mlps"],
            head_ids(student.n_layers, student.n_heads), head_ids(teacher.n_layers, teacher.n_heads),
            mlp_ids(student.n_layers), mlp_ids(teacher.n_layers),
            direction=spec.matching, head_threshold=spec.head_threshold, mlp_threshold=spec.mlp_threshold,
            duplicate_below_threshold=spec.duplicate_unmatched,
        )
        infl = {r: scans[r].influences() for r in ROLES}

    with run.stage("alignment"):
        alignment = alignment_section(pairs, scans, infl, spec)

    performance = {r: performance_section(scans[r].clean_ld, clean[r].correct) for r in ROLES}
    for r in ROLES:
        if not performance[r]["performs_task"]:
            ld = scans[r].clean_ld.double()
            warnings.append(
                f"the {r} does not perform the task (clean logit difference {performance[r]['logit_diff']:.3f}, "
                f"95% interval lower end {logit_diff_lower_bound(ld):.3f} <= 0): its robustness is not computed"
                + ("" if performance[r]["logit_diff"] > 0 else " and its retained % is undefined")
            )
    with run.stage("robustness"):
        robustness = robustness_section(scans, performance, teacher.n_params, student.n_params)

    result = {
        "schema_version": 1,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spec": spec.model_dump(mode="json"),
        "engine": engine_versions(),
        "models": {r: adapters[r].info for r in ROLES},
        "task": task.info(),
        "performance": performance,
        "influence": {r: scans[r].summary() for r in ROLES},
        "similarity": {
            "heads": _matrix(sims["heads"], head_ids(student.n_layers, student.n_heads),
                             head_ids(teacher.n_layers, teacher.n_heads)),
            "mlps": _matrix(sims["mlps"], mlp_ids(student.n_layers), mlp_ids(teacher.n_layers)),
            "head_method": sims["head_method"],
            "mlp_method": sims["mlp_method"],
            "mlps_raw": None if sims["mlps_raw"] is None else _matrix(
                sims["mlps_raw"], mlp_ids(student.n_layers), mlp_ids(teacher.n_layers)),
        },
        "matches": [
            {
                "student": p.student, "teacher": p.teacher, "kind": p.kind, "similarity": p.similarity,
                "matched": p.matched, "student_influence": infl["student"][p.student],
                "teacher_influence": infl["teacher"][p.teacher], "duplicated": p.duplicated,
            }
            for p in pairs
        ],
        "alignment": alignment,
        "robustness": robustness,
        "attention": attention_views(pairs, infl, compared, task),
        "scan": {
            "method": method, "approximate": method == "attribution",
            "agreement": {r: scans[r].agreement for r in ROLES if scans[r].agreement is not None} or None,
            "cache": pcache.status,
        },
        "timings": run.timings,
        "warnings": warnings,
    }
    run.tick_stage("done", 1, 1)
    return ComparisonResult.model_validate(result)


# ----------------------------------------------------------------------------- stages
class _Run:
    def __init__(self, spec: ComparisonSpec, progress: Progress | None, cancelled: Callable[[], bool] | None):
        self.progress, self.cancelled = progress, cancelled
        self.timings: dict[str, float] = {}
        self.current = ""
        self.t0 = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str):
        if self.cancelled is not None and self.cancelled():
            raise Cancelled(f"cancelled before stage {name}")
        self.current = name
        self.tick_stage(name, 0, 1)
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 4)
        self.timings["total"] = round(time.perf_counter() - self.t0, 4)

    def tick(self, done: int, total: int) -> None:
        self.tick_stage(self.current, done, total)

    def tick_stage(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    # Same numbers on every run of a spec: deterministic kernels where they exist (warn, don't fail,
    # on ops that have none), no cuDNN autotuning.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


class _CleanStats:
    """Per model, from the clean prompts: mean attention pattern per layer [head, T, T] (each query
    row averaged over the prompts that have a real token there), MLP outputs per layer at real
    tokens [n_tokens, d_model], and top-1 correctness per prompt."""

    def __init__(self, patterns: list[torch.Tensor], mlp_rows: list[torch.Tensor], correct: torch.Tensor):
        self.patterns = patterns
        self.mlp_rows = mlp_rows
        self.correct = correct


def clean_pass(adapter: ModelAdapter, view: TokenizedTask, batch_size: int = BATCH_SIZE) -> _CleanStats:
    n, T = view.clean.tokens.shape
    pat_sum = [torch.zeros(adapter.n_heads, T, T, dtype=torch.float64, device=adapter.device) for _ in range(adapter.n_layers)]
    rows_count = torch.zeros(T, dtype=torch.float64, device=adapter.device)
    mlp_rows: list[list[torch.Tensor]] = [[] for _ in range(adapter.n_layers)]
    correct = []
    for s in range(0, n, batch_size):
        b = view.clean.slice(s, s + batch_size)
        out = adapter.run(b, capture=("pattern", "mlp_out"))
        correct.append((out.logits.argmax(-1) == view.answer_ids[s : s + batch_size].to(out.logits.device)).cpu())
        qmask = b.attention_mask.to(adapter.device, torch.float64)  # [b, T]
        rows_count += qmask.sum(0)
        real = b.attention_mask.bool().to(adapter.device)
        for layer in range(adapter.n_layers):
            pat_sum[layer] += torch.einsum("bq,bhqk->hqk", qmask, out.captures["pattern"][layer].double())
            mlp_rows[layer].append(out.captures["mlp_out"][layer][real].float().cpu())  # [tokens, d_model]
    denom = rows_count.clamp(min=1)[None, :, None]
    return _CleanStats(
        [(p / denom).float().cpu() for p in pat_sum],
        [torch.cat(r) for r in mlp_rows],
        torch.cat(correct),
    )


# Two-sided 95% Student-t quantiles t_{0.975, df}; beyond the table the normal 1.96 is within 2%.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def logit_diff_lower_bound(ld: torch.Tensor) -> float:
    """Lower end of the 95% t-interval of the mean clean logit difference over prompts."""
    n = len(ld)
    mean = float(ld.mean())
    if n < 2:
        return mean
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return mean - t * float(ld.std()) / n**0.5


def performance_section(clean_ld: torch.Tensor, correct: torch.Tensor) -> dict[str, Any]:
    """``performs_task``: the mean clean LD is > 0 *and* distinguishable from 0 over the prompts
    (its 95% t-interval lies above 0). A model with LD <= 0 never performs the task (DESIGN.md);
    the interval keeps a random-weight model, whose mean LD over a few prompts is positive half of
    the time, from being reported as performing it, with retained % built on noise."""
    ld = clean_ld.double()
    mean = float(ld.mean())
    return {
        "logit_diff": mean,
        "logit_diff_std": float(ld.std()) if len(ld) > 1 else 0.0,
        "accuracy": float(correct.float().mean()),
        "performs_task": mean > 0 and logit_diff_lower_bound(ld) > 0,
    }


def similarity_section(
    s: _CleanStats, t: _CleanStats, student: ModelAdapter, teacher: ModelAdapter, spec: ComparisonSpec,
    alignment: str = "shared_vocabulary", warnings: list[str] | None = None,
) -> dict:
    s_pat = torch.stack(s.patterns).flatten(0, 1).numpy()  # [Ls*H, T, T]
    t_pat = torch.stack(t.patterns).flatten(0, 1).numpy()
    paper = spec.preset == "paper"
    # The paper averages every query row, including row 0 (trivially identical in a causal model);
    # the default preset leaves it out (paper-notes §7 pitfall 8).
    qmask = None if paper else similarity_mod.query_rows(s_pat.shape[1], exclude_first=True)
    head_method = "row_cosine_all_rows" if paper else "row_cosine_excl_first_row"
    if alignment == "word_end_row":  # word patterns: the last row is the end query (word_patterns.py)
        qmask = np.arange(s_pat.shape[1]) == s_pat.shape[1] - 1
        head_method = "word_end_row_cosine"
    elif alignment == "word_pooled":
        head_method = "word_pooled_" + head_method
    heads = similarity_mod.head_similarity(s_pat, t_pat, qmask)
    mlp_similarity = spec.mlp_similarity
    if mlp_similarity == "eigen" and student.d_model != teacher.d_model:
        # eigenvectors of different widths live in different spaces; CKA compares the same rows
        mlp_similarity = "cka"
        if warnings is not None:
            warnings.append(f"MLP widths differ (student {student.d_model}, teacher {teacher.d_model}): "
                            "MLP similarity is linear CKA instead of eigenvectors")
    if mlp_similarity == "cka":
        mlps, raw, mlp_method = similarity_mod.mlp_similarity_cka(s.mlp_rows, t.mlp_rows), None, "linear_cka"
    else:
        raw = similarity_mod.mlp_similarity_eigen(s.mlp_rows, t.mlp_rows, k=3)
        mlps, mlp_method = similarity_mod.rescale_to_heads(raw, heads), "eigen_top3_rescaled"
    return {
        "heads": heads, "mlps": mlps, "mlps_raw": raw,
        "head_method": head_method,
        "mlp_method": mlp_method,
    }


def alignment_section(pairs, scans: dict[str, InfluenceScan], infl: dict[str, dict], spec: ComparisonSpec) -> dict:
    score = alignment_mod.alignment_score_from_pairs(pairs, infl["student"], infl["teacher"])
    ci = None
    if spec.bootstrap and scans["student"].clean_ld.shape[0] > 1:
        s_row = {c: i for i, c in enumerate(scans["student"].components)}
        t_row = {c: i for i, c in enumerate(scans["teacher"].components)}
        boot = alignment_mod.alignment_bootstrap_ci(
            scans["student"].ablated_ld.numpy(), scans["student"].clean_ld.numpy(),
            scans["teacher"].ablated_ld.numpy(), scans["teacher"].clean_ld.numpy(),
            [s_row[p.student] for p in pairs], [t_row[p.teacher] for p in pairs], [p.similarity for p in pairs],
            n_boot=spec.bootstrap, seed=spec.seed,
        )
        ci = [boot.ci95[0], boot.ci95[1]]
    return {
        "score": score, "ci95": ci, "n_pairs": len(pairs),
        "mean_similarity": float(np.mean([p.similarity for p in pairs])), "direction": spec.matching,
    }


def robustness_section(scans: dict[str, InfluenceScan], performance: dict, t_params: int, s_params: int) -> dict:
    """Drops from retained % in canonical component order. A model that does not perform the task
    has no retained % (LD_clean <= 0), so its statistics are null, with a note."""
    c = robustness_mod.compression_ratio(t_params, s_params)
    ok = {r: performance[r]["performs_task"] for r in ROLES}
    out: dict[str, Any] = {
        "teacher": None, "student": None, "compression_ratio": c, "delta_mean_drop": None,
        "delta_mean_drop_ci95": None, "slope_mean": None, "delta_severity": None, "slope_severity": None,
        "note": None,
    }
    drops = {
        r: robustness_mod.drops_from_retained([v for v in scans[r].retained().values()])
        for r in ROLES if ok[r]
    }
    if ok["teacher"] and ok["student"]:
        st = robustness_mod.robustness_stats(drops["teacher"], drops["student"], t_params, s_params)
        out.update(
            teacher=_model_robustness(st.teacher), student=_model_robustness(st.student),
            delta_mean_drop=st.delta_mean_drop, delta_mean_drop_ci95=_pair(st.delta_mean_drop_ci95),
            slope_mean=st.slope_mean, delta_severity=st.delta_severity, slope_severity=st.slope_severity,
        )
        return out
    for r in ROLES:
        if ok[r]:
            out[r] = _model_robustness(robustness_mod.model_robustness(drops[r]))
    missing = [r for r in ROLES if not ok[r]]
    out["note"] = (
        f"{' and '.join(missing)} does not perform the task (clean logit difference not above 0): "
        "drops in % of the clean logit difference are undefined or noise"
    )
    return out


def _model_robustness(m) -> dict:
    return {
        "n_components": m.n_components, "mean_drop": m.mean_drop, "mean_drop_ci95": _pair(m.mean_drop_ci95),
        "median_drop": m.median_drop, "max_drop": m.max_drop, "severity": m.severity,
    }


def _pair(ci) -> list[float] | None:
    return None if ci is None else [float(ci[0]), float(ci[1])]


def attention_views(pairs, infl: dict[str, dict], clean: dict[str, _CleanStats], task: TaskData) -> list[dict]:
    """Side-by-side mean patterns for the head pairs that matter most to both models (largest
    Î_S + Î_T), labelled with the tokens of the longest prompt."""
    heads = [p for p in pairs if p.kind == "head" and not p.duplicated]
    if not heads:
        return []
    tot = {r: sum(v for c, v in infl[r].items() if not c.endswith("MLP")) or 1.0 for r in ROLES}
    ranked = sorted(heads, key=lambda p: -(infl["student"][p.student] / tot["student"] + infl["teacher"][p.teacher] / tot["teacher"]))
    labels_all = task.words if task.word_aligned else task.view("student").token_labels
    labels = max(labels_all, key=len)
    views, seen = [], set()
    for p in ranked:
        if (p.student, p.teacher) in seen:
            continue
        seen.add((p.student, p.teacher))
        views.append({
            "student": p.student, "teacher": p.teacher, "similarity": p.similarity, "tokens": labels,
            "student_pattern": _pattern(clean["student"], p.student, len(labels)),
            "teacher_pattern": _pattern(clean["teacher"], p.teacher, len(labels)),
        })
        if len(views) == N_ATTENTION_VIEWS:
            break
    return views


def _pattern(stats: _CleanStats, cid: str, T: int) -> list[list[float]]:
    layer, h = (int(x) for x in cid[1:].split("H"))
    return [[round(float(v), 5) for v in row] for row in stats.patterns[layer][h, :T, :T]]


def _matrix(values, rows: list[str], cols: list[str]) -> dict:
    return {"rows": rows, "cols": cols, "values": [[float(v) for v in r] for r in np.asarray(values)]}


def engine_versions() -> dict[str, str]:
    out = {"circuitdiff": ENGINE_VERSION}
    for pkg in ("torch", "transformers", "transformer_lens"):
        try:
            out[pkg] = metadata.version(pkg.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out

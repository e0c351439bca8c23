"""Scores of circuits: the task metric with every component *outside* a set ablated (docs/method.md §Method 7).

Circuit discovery (:func:`circuitdiff.analysis.pruning.find_circuit`) and the transfer of a
circuit onto another model ask one question many times: the mean logit difference over the task's
prompts when a given set of heads and MLPs is ablated at once (heads at ``z``, MLPs at ``mlp_out``,
replaced as :mod:`.ablation` says). :class:`CircuitEvaluator` answers it for one model and task.

Two ways to run one evaluation, one number (tests/engine/test_circuits.py checks them against each other
to 1e-5 of the clean logit difference):

- ``exact`` (architectures with a functional view, :mod:`circuitdiff.models.functional`): the exact
  scan's machinery (:mod:`.exact`). One clean pass keeps every layer's residual stream and ``z``;
  an ablated set whose lowest component sits in layer l starts from the clean residual before
  layer l (nothing below it changes) and reuses the clean ``z`` of layer l itself; the blocks above
  run with each row's own ablations, the last block only at the end positions, and the logit
  difference reads two unembedding rows, never the vocabulary. Several sets go through at once,
  stacked along the batch (set x prompt rows), in micro-batches sized from free memory.
- ``naive`` (every architecture, the reference): one adapter forward per prompt batch with one
  intervention per ablated component; several sets share a forward on a repeated batch.

Evaluations are memoised by the ablated set, so the search's confirming passes and repeated
controls cost nothing. ``progress(stage, done, total)`` is called after every batch of evaluations
and ``cancelled()`` is polled before each, raising :class:`~circuitdiff.errors.Cancelled`.
"""

from __future__ import annotations

import copy

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..analysis.pruning import (
    Circuit, CircuitDiff, FaithfulnessCurve, NullSummary, circuit_diff, curve_sizes, depth_sets, faithfulness_curve,
    find_circuit, null_summary, random_sets,
)
from ..errors import Cancelled, UnsupportedArchitectureError
from ..models.adapter import Intervention, ModelAdapter
from ..models.functional import attention_mask_4d
from ..vocabulary import Ablation, canonical_key, component_ids, parse_component
from .ablation import ablation_values, replacement
from .exact import corrupted_run, run_clean
from .influence import Progress, clean_logit_diffs
from .microbatch import rows_per_microbatch, run_microbatched

NAIVE_ROWS = 128  # rows per adapter forward when several sets share one


class CircuitEvaluator:
    """``score(kept)``: mean LD over the task's prompts with every component not in ``kept`` ablated.

    method: ``exact`` (falls back to ``naive`` without a functional view; ``self.method`` says which
    ran) or ``naive``. ``n_evaluations`` counts the distinct sets actually run.
    """

    def __init__(self, adapter: ModelAdapter, view, ablation: Ablation, *, method: str = "exact",
                 batch_size: int = 32, progress: Progress | None = None,
                 cancelled: Callable[[], bool] | None = None, stage: str = "circuits", max_rows: int | None = None):
        self.adapter, self.task, self.ablation = adapter, view, ablation
        self.n_layers, self.n_heads = adapter.n_layers, adapter.n_heads
        self.components = component_ids(self.n_layers, self.n_heads)
        self.progress, self.cancelled, self.stage = progress, cancelled, stage
        self.batch_size = batch_size
        self.memo: dict[frozenset[str], float] = {}
        self.total_hint = 2 * len(self.components)
        self.method = "naive"
        if method == "exact":
            try:
                self._init_exact(adapter.functional(), max_rows)
                self.method = "exact"
            except UnsupportedArchitectureError:
                pass
        if self.method == "naive":
            self._init_naive()
        self.memo[frozenset()] = self.clean_ld
        # per-prompt metric of every set run: a resample of the prompts re-weights them (WeightedEvaluator)
        self.per_prompt: dict[frozenset[str], torch.Tensor] = {frozenset(): self.clean_lds.double().cpu()}

    # ------------------------------------------------------------------ public
    def for_stage(self, stage: str) -> "CircuitEvaluator":
        """This evaluator (same model, task and memo) reporting its progress as ``stage``."""
        other = copy.copy(self)
        other.stage = stage
        return other

    @property
    def n_evaluations(self) -> int:
        return len(self.memo) - 1  # the clean pass is not an ablated run

    def score(self, kept: frozenset[str] | set[str] | Sequence[str]) -> float:
        return self.score_many([frozenset(kept)])[0]

    def score_many(self, kept_sets: Sequence[frozenset[str]]) -> list[float]:
        everything = set(self.components)
        ablated = [frozenset(everything - set(k)) for k in kept_sets]
        return self.score_ablated(ablated)

    def score_ablated(self, ablated_sets: Sequence[frozenset[str]]) -> list[float]:
        """Mean LD with exactly each set ablated (memoised)."""
        todo = list(dict.fromkeys(s for s in ablated_sets if s not in self.memo))
        for s in todo:
            bad = [c for c in s if c not in set(self.components)]
            if bad:
                raise ValueError(f"{sorted(bad)} are not components of this model "
                                 f"({self.n_layers} layers x {self.n_heads} heads)")
        chunk = max(1, (self.rows or NAIVE_ROWS) // max(1, self.task.n))
        for start in range(0, len(todo), chunk):
            if self.cancelled is not None and self.cancelled():
                raise Cancelled(f"cancelled during {self.stage} after {self.n_evaluations} evaluations")
            part = todo[start:start + chunk]
            lds = self._run_exact(part) if self.method == "exact" else self._run_naive(part)  # [k, n]
            for s, row in zip(part, lds):
                self.memo[s] = float(row.double().mean())
                self.per_prompt[s] = row.double().cpu()
            if self.progress is not None:
                self.total_hint = max(self.total_hint, self.n_evaluations + 1)
                self.progress(self.stage, self.n_evaluations, self.total_hint)
        return [self.memo[s] for s in ablated_sets]

    # ------------------------------------------------------------------ exact machinery
    @torch.no_grad()
    def _init_exact(self, stack, max_rows: int | None) -> None:
        v, dev = self.task, stack.device
        self.stack = stack
        t = int(v.clean.end_pos.max()) + 1  # causal: nothing after the last end position matters
        tokens, mask = v.clean.tokens[:, :t].to(dev), v.clean.attention_mask[:, :t].to(dev)
        self.end = v.clean.end_pos.to(dev)
        self.direction = stack.unembed(v.answer_ids.to(dev)) - stack.unembed(v.distractor_ids.to(dev))  # [n, d]
        self.clean = run_clean(stack, tokens, mask, self.end, self.direction)
        corrupt, c_mask = corrupted_run(stack, self.ablation, v.corrupted.tokens, v.corrupted.attention_mask, t)
        self.z_rep = [replacement(z, corrupt.z[l] if corrupt else None, self.ablation, c_mask)
                      for l, z in enumerate(self.clean.z)]  # [layer][n, t, head, d_head]
        self.m_rep = [replacement(m, corrupt.mlp_out[l] if corrupt else None, self.ablation, c_mask)
                      for l, m in enumerate(self.clean.mlp_out)]  # [layer][n, t, d_model]
        self.mask4 = attention_mask_4d(mask)
        self.rows = max_rows or rows_per_microbatch(stack, t, dev, torch.empty((), dtype=stack.dtype).element_size())
        self.clean_ld = float(self.clean.ld.double().mean())
        self.clean_lds = self.clean.ld.double().cpu()

    @torch.no_grad()
    def _run_exact(self, sets: list[frozenset[str]]) -> torch.Tensor:
        """[len(sets), n] per-prompt LD. Sets are grouped by their lowest ablated layer."""
        L, H, n, dev = self.n_layers, self.n_heads, self.task.n, self.stack.device
        out = torch.empty(len(sets), n, dtype=self.clean.ld.dtype, device=dev)
        head_m = torch.zeros(len(sets), L, H, dtype=torch.bool, device=dev)
        mlp_m = torch.zeros(len(sets), L, dtype=torch.bool, device=dev)
        first: dict[int, list[int]] = {}
        for i, s in enumerate(sets):
            for c in map(parse_component, s):
                if c.head is None:
                    mlp_m[i, c.layer] = True
                else:
                    head_m[i, c.layer, c.head] = True
            first.setdefault(min(parse_component(c).layer for c in s), []).append(i)
        for l0, idx in sorted(first.items()):
            sel = torch.tensor(idx, device=dev)
            hm, mm = head_m[sel], mlp_m[sel]

            def run(sl: slice, l0=l0, hm=hm, mm=mm) -> torch.Tensor:
                r = torch.arange(sl.start, sl.stop, device=dev)
                return self._forward_from(l0, hm[r // n], mm[r // n], r % n)

            lds, self.rows = run_microbatched(len(idx) * n, self.rows, run)
            out[sel] = lds.view(len(idx), n)
        return out.cpu()

    def _forward_from(self, l0: int, hm: torch.Tensor, mm: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Rows (set, prompt b) from the clean residual before layer l0 to the LD.
        hm: [rows, layer, head], mm: [rows, layer] (True = ablated). A circuit keeps few components,
        so most rows replace a layer's whole attention or MLP output: those rows skip computing it."""
        st, c, L = self.stack, self.clean, self.n_layers
        rows = torch.arange(len(b), device=b.device)
        e = self.end[b]
        x = c.resid_pre[l0][b]  # [rows, t, d_model]
        mask = self.mask4[b]
        for l in range(l0, L):
            last = l == L - 1
            z_rep = self.z_rep[l][b, e] if last else self.z_rep[l][b]  # [rows, (t,) head, d_head]
            h_mask = hm[:, l, :, None] if last else hm[:, l, None, :, None]
            if l == l0:
                z = torch.where(h_mask, z_rep, c.z[l][b, e] if last else c.z[l][b])
            else:
                run = _rows_needing(hm[:, l].all(1))
                z = z_rep.clone()
                if run is not None:
                    zr = st.attention(l, x[run], mask[run], e[run]) if last else st.attention(l, x[run], mask[run])
                    z[run] = torch.where(h_mask[run], z_rep[run], zr)
            x = (x[rows, e] if last else x) + st.attn_out(l, z)  # [rows, (t,) d_model]
            m = self.m_rep[l][b, e] if last else self.m_rep[l][b]
            run = _rows_needing(mm[:, l])
            if run is not None:
                m = m.clone()
                m[run] = st.mlp(l, x[run])
            x = x + m
        return st.logit_diff(x, self.direction[b])

    # ------------------------------------------------------------------ naive reference
    @torch.no_grad()
    def _init_naive(self) -> None:
        self.rows = None
        self.values = ablation_values(self.adapter, self.task.corrupted, self.ablation, self.batch_size)
        self.clean_lds = clean_logit_diffs(self.adapter, self.task, self.batch_size)
        self.clean_ld = float(self.clean_lds.mean())

    @torch.no_grad()
    def _run_naive(self, sets: list[frozenset[str]]) -> torch.Tensor:
        v, n = self.task, self.task.n
        ad = v.answer_distractor()
        out = torch.empty(len(sets), n, dtype=torch.float64)
        step = max(1, min(n, NAIVE_ROWS))
        per = max(1, NAIVE_ROWS // step)  # sets per forward
        for s0 in range(0, n, step):
            s1 = min(n, s0 + step)
            b = s1 - s0
            for k0 in range(0, len(sets), per):
                group = sets[k0:k0 + per]
                k = len(group)
                rows_of: dict[str, list[int]] = {}
                for j, s in enumerate(group):
                    for cid in s:
                        rows_of.setdefault(cid, []).extend(range(j * b, (j + 1) * b))
                ivs = []
                for cid, rows in rows_of.items():
                    base = self.values.intervention(parse_component(cid), s0, s1)
                    value = base.value
                    if value is not None and value.dim() == 3:  # resample: one row per batch row
                        value = value.repeat(k, *([1] * (value.dim() - 1)))
                    ivs.append(Intervention(base.component, value, torch.tensor(rows)))
                res = self.adapter.run(v.clean.slice(s0, s1).repeat(k), ivs, token_ids=ad[s0:s1].repeat(k, 1))
                lg = res.logits.double().cpu()
                out[k0:k0 + k, s0:s1] = (lg[:, 0] - lg[:, 1]).view(k, b)
        return out


def _rows_needing(replaced: torch.Tensor) -> torch.Tensor | slice | None:
    """Rows whose output must be computed (not wholly replaced): None, every row, or their index."""
    if bool(replaced.all()):
        return None
    if not bool(replaced.any()):
        return slice(None)
    return (~replaced).nonzero().squeeze(1)


# --------------------------------------------------------------------------- the search and the diff
@dataclass
class ModelSearch:
    """One model's circuits, one per threshold searched, with the score of each circuit ablated alone."""

    circuits: dict[float, Circuit]
    removed_pct: dict[float, float]
    wall_s: float
    method: str


def search(evaluator: CircuitEvaluator, thresholds: Sequence[float], max_passes: int = 50) -> ModelSearch:
    """Iterative node pruning at each threshold; every search shares the evaluator's memo (their first
    trials are the same sets). The full model must perform the task (clean LD > 0)."""
    t0 = time.perf_counter()
    full = evaluator.clean_ld
    circuits, removed = {}, {}
    for t in dict.fromkeys(float(x) for x in thresholds):
        c = find_circuit(evaluator.score, evaluator.n_layers, evaluator.n_heads, threshold=t, full_score=full,
                         max_passes=max_passes, score_many=evaluator.score_many)
        circuits[t] = c
        removed[t] = 100.0 * evaluator.score_ablated([frozenset(c.components)])[0] / full
    return ModelSearch(circuits, removed, time.perf_counter() - t0, evaluator.method)


class WeightedEvaluator:
    """A :class:`CircuitEvaluator` on a resample of the prompts: every score is the weighted mean of
    the per-prompt values (weights: how often each prompt is drawn); a set the parent has not run is
    run once on all prompts and kept, so resamples share every forward pass."""

    def __init__(self, parent: CircuitEvaluator, weights: torch.Tensor):
        self.parent, self.w = parent, weights.double()
        self.n_layers, self.n_heads, self.method = parent.n_layers, parent.n_heads, parent.method
        self.components = parent.components
        self.clean_ld = self._mean(parent.per_prompt[frozenset()])

    def _mean(self, row: torch.Tensor) -> float:
        return float((self.w * row).sum() / self.w.sum())

    def score_ablated(self, ablated_sets: Sequence[frozenset[str]]) -> list[float]:
        missing = [s for s in dict.fromkeys(ablated_sets) if s not in self.parent.per_prompt]
        if missing:
            self.parent.score_ablated(missing)
        return [self._mean(self.parent.per_prompt[s]) for s in ablated_sets]

    def score_many(self, kept_sets: Sequence[frozenset[str]]) -> list[float]:
        everything = set(self.components)
        return self.score_ablated([frozenset(everything - set(k)) for k in kept_sets])

    def score(self, kept) -> float:
        return self.score_many([frozenset(kept)])[0]


def inclusion(evaluator: CircuitEvaluator, threshold: float, n_resamples: int, seed: int) -> dict[str, float]:
    """Each component's inclusion frequency: the share of ``n_resamples`` bootstrap resamples of the
    prompts whose circuit (the same search on the resample) contains it. A resample on which the
    model does not perform the task (weighted clean LD <= 0) counts as including nothing."""
    g = torch.Generator().manual_seed(seed)
    n = evaluator.task.n
    counts = {c: 0 for c in evaluator.components}
    for _ in range(n_resamples):
        w = torch.bincount(torch.randint(0, n, (n,), generator=g), minlength=n)
        weighted = WeightedEvaluator(evaluator, w)
        if weighted.clean_ld <= 0:
            continue
        for c in search(weighted, [threshold]).circuits[threshold].components:  # type: ignore[arg-type]
            counts[c] += 1
    return {c: k / n_resamples for c, k in counts.items()}


@dataclass
class ScoredSet:
    """A component set scored as a circuit on all prompts: kept alone and ablated alone."""

    components: list[str]
    kept_pct: float
    removed_pct: float


def score_set(evaluator: CircuitEvaluator, components: Sequence[str]) -> ScoredSet:
    """100 · LD(only ``components`` kept) / LD_clean and 100 · LD(only they ablated) / LD_clean, on all
    prompts (the same two numbers a search reports for its circuit)."""
    full = evaluator.clean_ld
    kept = evaluator.score(frozenset(components))
    removed = evaluator.score_ablated([frozenset(components)])[0]
    return ScoredSet(list(components), 100.0 * kept / full, 100.0 * removed / full)


@dataclass
class Transfer:
    """The mapped teacher circuit's performance on the student and its null controls (kept_pct)."""

    diff: CircuitDiff
    kept_pct: float
    nulls: dict[str, NullSummary]


def faithfulness(evaluator: CircuitEvaluator, influence: dict[str, float]) -> FaithfulnessCurve:
    """The model's faithfulness curve (circuitdiff.analysis.pruning.FaithfulnessCurve): its components
    ordered by influence (largest first, canonical order on ties), the top k kept for each size k of
    :func:`~circuitdiff.analysis.pruning.curve_sizes`, all sizes in batches through the evaluator."""
    order = sorted(evaluator.components, key=lambda c: (-influence[c], canonical_key(c)))
    sizes = curve_sizes(len(order))
    scores = evaluator.score_many([frozenset(order[:k]) for k in sizes])
    return faithfulness_curve(sizes, scores, len(order))


def transfer(student: CircuitEvaluator, teacher_circuit: Sequence[str], student_circuit: Sequence[str],
             pairs: Sequence[tuple[str, str]], n_teacher_layers: int, n_draws: int, seed: int) -> Transfer:
    """Map the teacher circuit through ``pairs`` (student, teacher), run it on the student, and run
    ``n_draws`` circuits of each null control beside it (one batch per control)."""
    diff = circuit_diff(teacher_circuit, student_circuit, pairs)
    full = student.clean_ld
    pct = lambda sets: [100.0 * v / full for v in student.score_many([frozenset(s) for s in sets])]  # noqa: E731
    kept = pct([diff.mapped])[0]
    L, H = student.n_layers, student.n_heads
    draws = {
        "random": random_sets(diff.mapped, L, H, n_draws, seed),
        "depth": depth_sets(teacher_circuit, n_teacher_layers, L, H, n_draws, seed),
    }
    return Transfer(diff, kept, {k: null_summary(k, kept, pct(v)) for k, v in draws.items()})

"""Exact influence scan for causal pre-LN decoders, without one full forward per component.

The naive scan (docs/method.md §Method 1) ablates each head / MLP alone and reruns the whole model,
computing logits over the whole vocabulary at every position: 156 passes for GPT-2. Almost all of
that work is identical between passes, so this module computes exactly the same numbers with less:

1. One clean pass keeps, per layer l, the residual stream before the attention block
   (``resid_pre[l]``) and after it (``resid_mid[l]``), and the per-head output before W_O
   (``z[l]``). Nothing before layer l depends on an ablation at layer l.
2. A head h at layer l changes only its slice of ``z[l]``; the attention output is linear in z
   (c_proj), so ``resid_mid`` becomes ``resid_mid[l] + (z_abl - z_clean)[:, :, h] @ W_O[h]``.
   Then the MLP of layer l and the blocks above are rerun. An MLP at layer l replaces
   ``mlp_out[l]``: ``resid_post = resid_mid[l] + mlp_abl``, then the blocks above.
3. Causal attention means the answer position never sees a later position, so sequences are cut
   after the last end position, and the last block computes queries, its MLP and the final
   LayerNorm only at each prompt's end position (keys and values still at every position).
4. The metric (:mod:`circuitdiff.metrics`, read by :mod:`.readout`) is computed from only what it
   needs: the logit difference from two unembedding columns, not the vocabulary,
   ``LD = ln_f(x_end) · (W_U[answer] - W_U[distractor])``; ``answer_prob``, ``answer_logprob`` and
   ``kl`` from the end position's full distribution; ``loss`` from every position's (for ``loss``
   step 3's end-only shortcut does not apply: the last block runs at every position).
5. All ablations of one layer go through the blocks above it together, stacked along the batch
   dimension, in micro-batches sized from free memory (halved and retried on out-of-memory).
6. Prompts of different lengths are padded to the longest, and padding after a prompt's end position
   is work no answer reads (a quarter of the positions of the IOI prompts). Prompts are scanned in
   a few groups of similar length (:func:`length_groups`), each cut after its own last end position.

Each step is an algebraic identity, so results equal the naive scan up to float rounding
(tests/engine/test_fast_scan.py checks 1e-5 for zero, mean and resample ablation of heads and MLPs;
tests/engine/test_metrics.py for every metric).
Dropout is inactive (eval). The model is read through its adapter's functional view
(:class:`circuitdiff.models.functional.LayerStack`): the model's own weights and operations, one
implementation per architecture; architectures without one run the naive scan instead, and the
scan then says ``method="naive"``, so a result never claims a method that did not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import Cancelled
from ..models.functional import LayerStack, attention_mask_4d
from ..metrics import DEFAULT_METRIC
from ..vocabulary import Ablation, Component, Metric, component_ids, parse_component
from .ablation import ablation_rule, replacement
from .influence import InfluenceScan, Progress
from .microbatch import rows_per_microbatch, run_microbatched
from .readout import Readout


# ----------------------------------------------------------------------------- the clean pass
@dataclass
class CleanRun:
    """Per-layer activations of one pass. resid_pre / resid_mid: [layer][batch, pos, d_model];
    z: [layer][batch, pos, head, d_head]; mlp_out: [layer][batch, pos, d_model]; ld: [batch];
    final: the residual after the last block [batch, pos, d_model] (before the final norm)."""

    resid_pre: list[torch.Tensor]
    resid_mid: list[torch.Tensor]
    z: list[torch.Tensor]
    mlp_out: list[torch.Tensor]
    ld: torch.Tensor | None
    final: torch.Tensor | None = None


def run_clean(
    view: LayerStack,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor,
    end_pos: torch.Tensor | None = None,
    direction: torch.Tensor | None = None,
) -> CleanRun:
    """Full forward keeping the residual stream around every attention block."""
    mask = attention_mask_4d(attention_mask)
    x = view.embed(tokens)
    pre, mid, zs, mlps = [], [], [], []
    for layer in range(view.n_layers):
        pre.append(x)
        z = view.attention(layer, x, mask)  # [batch, pos, head, d_head]
        x = x + view.attn_out(layer, z)
        mid.append(x)
        zs.append(z)
        m = view.mlp(layer, x)
        mlps.append(m)
        x = x + m
    ld = None
    if end_pos is not None and direction is not None:
        rows = torch.arange(x.shape[0], device=x.device)
        ld = view.logit_diff(x[rows, end_pos], direction)
    return CleanRun(pre, mid, zs, mlps, ld, x)


# ----------------------------------------------------------------------------- the corrupted pass
def corrupted_run(
    view: LayerStack, ablation: Ablation, corrupted_tokens: torch.Tensor | None,
    corrupted_mask: torch.Tensor | None, clean_length: int,
) -> tuple[CleanRun | None, torch.Tensor | None]:
    """The unmodified pass over the corrupted prompts whose activations the ablation's replacement
    reads (:func:`~.ablation.replacement`), and their real-token mask, both cut to the length the
    ablation's rule reads (:meth:`~.ablation.AblationRule.corrupted_length`); (None, None) for an
    ablation that reads no corrupted prompt."""
    rule = ablation_rule(ablation)
    if not rule.uses_corrupted:
        return None, None
    if corrupted_tokens is None or corrupted_mask is None:
        raise ValueError(f"{ablation} ablation needs the corrupted prompts")
    tc = rule.corrupted_length(clean_length, corrupted_tokens.shape[1])
    c_mask = corrupted_mask[:, :tc].to(view.device)
    with torch.no_grad():
        return run_clean(view, corrupted_tokens[:, :tc].to(view.device), c_mask), c_mask


# ----------------------------------------------------------------------------- the scan
@dataclass
class ScanOutput:
    """components: ids in the order asked; ablated_ld: [component, prompt]; clean_ld: [prompt]."""

    components: list[str]
    clean_ld: torch.Tensor
    ablated_ld: torch.Tensor
    microbatch_rows: int


@torch.no_grad()
def exact_scan(
    view: LayerStack,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor,
    end_pos: torch.Tensor,
    answer: torch.Tensor | None,
    distractor: torch.Tensor | None,
    ablation: Ablation,
    corrupted_tokens: torch.Tensor | None = None,
    corrupted_mask: torch.Tensor | None = None,
    components: Sequence[str] | None = None,
    max_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    metric: Metric = DEFAULT_METRIC,
) -> ScanOutput:
    """The metric per prompt with each component ablated alone, equal to the naive scan
    (``clean_ld``/``ablated_ld`` hold the metric, the logit difference by default).

    view: the model's functional view (``adapter.functional()``, or ``functional_view(hf_model)``).
    tokens, attention_mask: [batch, pos] right-padded; end_pos, answer, distractor: [batch]
    (answer/distractor None for a plain-text task: metrics kl and loss).
    corrupted_*: [batch', pos'] for mean (any batch') or resample (batch' = batch) ablation.
    """
    scanner = ExactScanner(view, tokens, attention_mask, end_pos, answer, distractor, ablation, corrupted_tokens,
                           corrupted_mask, max_rows=max_rows, metric=metric)
    return scanner.scan(components, progress)


class ExactScanner:
    """The exact scan's passes that do not depend on the components (the clean pass per length group,
    the corrupted pass), made once; :meth:`scan` then runs any components against them. The
    screened scan re-scans a few components per round with one scanner. Arguments as
    :func:`exact_scan`'s."""

    @torch.no_grad()
    def __init__(self, view: LayerStack, tokens: torch.Tensor, attention_mask: torch.Tensor, end_pos: torch.Tensor,
                 answer: torch.Tensor | None, distractor: torch.Tensor | None, ablation: Ablation,
                 corrupted_tokens: torch.Tensor | None = None, corrupted_mask: torch.Tensor | None = None,
                 max_rows: int | None = None, metric: Metric = DEFAULT_METRIC):
        device = view.device
        self.view, self.ablation = view, ablation
        # causal: nothing after the last end position can reach an answer position
        t = int(end_pos.max()) + 1
        tokens, attention_mask = tokens[:, :t].to(device), attention_mask[:, :t].to(device)
        end_pos = end_pos.to(device)
        n = tokens.shape[0]
        corrupt, c_mask = corrupted_run(view, ablation, corrupted_tokens, corrupted_mask, t)
        rule = ablation_rule(ablation)
        if corrupt is not None:
            if rule.per_prompt and c_mask.shape[0] != n:
                raise ValueError(f"{ablation} ablation needs one corrupted prompt per clean prompt")
            if c_mask.shape[1] < t:
                raise ValueError("corrupted prompts are shorter than the clean ones")

        # Prompts of similar length run together, each group cut after its own last end position (step 6
        # of the module docstring); the corrupted pass runs once, at the longest length.
        groups = []
        for idx in length_groups(end_pos):
            idx = idx.to(device)
            tg = int(end_pos[idx].max()) + 1
            g_tokens, g_mask = tokens[idx, :tg], attention_mask[idx, :tg]
            pick = lambda v: None if v is None else v[idx.to(v.device)]  # noqa: E731
            readout = Readout(metric, g_tokens, g_mask, end_pos[idx], pick(answer), pick(distractor))
            rows_g = torch.arange(len(idx), device=device)
            clean = run_clean(view, g_tokens, g_mask)
            final_end = clean.final[rows_g, end_pos[idx]]  # [group, d_model]
            if readout.needs_reference:
                readout.set_reference(view.logits(final_end))
            values = readout.from_residual(view, clean.final if readout.all_positions else final_end, rows_g)
            g_corrupt, g_c_mask = corrupted_for_group(corrupt, c_mask, idx, rule.per_prompt)
            rows = max_rows or rows_per_microbatch(view, tg, device, torch.empty((), dtype=view.dtype).element_size(),
                                                   readout.bytes_per_row(tg, view.w_u.shape[0]))
            groups.append(_Group(idx, clean, attention_mask_4d(g_mask), end_pos[idx], readout, values, g_corrupt,
                                 g_c_mask, rows))
        self.groups, self.n = groups, n
        self.clean_values = torch.empty(n, dtype=groups[0].values.dtype, device=device)
        for g in groups:
            self.clean_values[g.idx] = g.values

    @torch.no_grad()
    def scan(self, components: Sequence[str] | None = None, progress: Callable[[int, int], None] | None = None
             ) -> ScanOutput:
        """The metric per prompt with each of ``components`` (default: all) ablated alone."""
        view, ablation, groups, n = self.view, self.ablation, self.groups, self.n
        device = view.device
        if components is None:
            components = component_ids(view.n_layers, view.n_heads)
        parsed = [parse_component(c) for c in components]
        for c in parsed:
            if c.layer >= view.n_layers or (c.head is not None and c.head >= view.n_heads):
                raise ValueError(f"{c.id} is outside this model ({view.n_layers} layers x {view.n_heads} heads)")
        # In the model's dtype, as the logit difference always was; metrics computed in float64 are cast
        # back (InfluenceScan holds float64 again; the 1e-5 comparisons are far above float32 rounding).
        out = torch.empty(len(parsed), n, dtype=view.dtype, device=device)

        by_layer = _by_layer(parsed)
        done = 0
        for layer in sorted(by_layer):
            idx = by_layer[layer]
            heads = [i for i in idx if parsed[i].head is not None]
            mlps = [i for i in idx if parsed[i].head is None]
            for g in groups:
                gc, ng = g.corrupt, len(g.idx)
                if heads:
                    z_rep = replacement(g.clean.z[layer], gc.z[layer] if gc else None, ablation, g.c_mask)
                    dz = z_rep - g.clean.z[layer]  # [group, pos, head, d_head]
                    head_of = torch.tensor([parsed[i].head for i in heads], device=device)
                    lds, g.rows = _scan_heads(view, layer, g.clean, dz, head_of, g.mask, g.end_pos, g.readout, g.rows)
                    out[torch.tensor(heads, device=device)[:, None], g.idx[None]] = lds.view(len(heads), ng).to(out.dtype)
                for i in mlps:
                    m_rep = replacement(g.clean.mlp_out[layer], gc.mlp_out[layer] if gc else None, ablation, g.c_mask)
                    start = g.clean.resid_mid[layer] + m_rep  # resid_post with the MLP replaced
                    lds, g.rows = _continue_from(view, layer + 1, start, g.mask, g.end_pos, g.readout, g.rows)
                    out[i, g.idx] = lds.to(out.dtype)
            done += len(idx)
            if progress is not None:
                progress(done, len(parsed))
        rows = min(g.rows for g in groups)
        return ScanOutput(list(components), self.clean_values.to(view.dtype), out, rows)

    @torch.no_grad()
    def perturbation(self, components: Sequence[str]) -> dict[str, float]:
        """How far ablating each component alone moves the residual stream it writes to, relative to
        that stream: per prompt Σ_{p <= end} ||δ_p||² / ||x_p||² (δ: the ablation's change of the
        head's output through W_O, or of the MLP's output; x: the clean residual after the attention
        block, or after the MLP), averaged over prompts. A first-order estimate's error is of second
        order in δ, and each norm rescales what it reads by ||x|| (the screened scan's error model,
        :mod:`.screened`); ||x||² is floored as a norm's epsilon floors it (:data:`NORM_EPS` per
        dimension), so a position whose stream is zero counts a change there as large, not undefined.
        No block is run: a head's ||δ||² is dz G dz with G = W_O[h] W_O[h]ᵀ."""
        view, ablation = self.view, self.ablation
        parsed = [parse_component(c) for c in components]
        total = torch.zeros(len(parsed), dtype=torch.float64)
        for layer, idx in _by_layer(parsed).items():
            heads = [i for i in idx if parsed[i].head is not None]
            mlps = [i for i in idx if parsed[i].head is None]
            w_o = view.w_o(layer).float()  # [head, d_head, d_model]
            gram = torch.einsum("hkd,hjd->hkj", w_o, w_o) if heads else None
            for g in self.groups:
                gc = g.corrupt
                positions = torch.arange(g.clean.z[layer].shape[1], device=g.end_pos.device)
                reads = (positions[None] <= g.end_pos[:, None]).float()  # [group, pos]: what an answer reads
                if heads:
                    dz = (replacement(g.clean.z[layer], gc.z[layer] if gc else None, ablation, g.c_mask)
                          - g.clean.z[layer]).float()  # [group, pos, head, d_head]
                    sq = torch.einsum("bphk,hkj,bphj->bph", dz, gram, dz)
                    x = g.clean.resid_mid[layer].float()
                    norm = x.pow(2).sum(-1) + x.shape[-1] * NORM_EPS  # [group, pos]
                    per_head = (sq / norm[..., None] * reads[..., None]).sum(1).double().sum(0).cpu()  # [head]
                    for i in heads:
                        total[i] += per_head[parsed[i].head]
                if mlps:
                    clean_m = g.clean.mlp_out[layer]
                    dm = (replacement(clean_m, gc.mlp_out[layer] if gc else None, ablation, g.c_mask) - clean_m).float()
                    x = (g.clean.resid_mid[layer] + clean_m).float()
                    norm = x.pow(2).sum(-1) + x.shape[-1] * NORM_EPS
                    value = (dm.pow(2).sum(-1) / norm * reads).sum().double().cpu()
                    for i in mlps:
                        total[i] += value
        return {c: float(v) / self.n for c, v in zip(components, total)}


def _by_layer(parsed: Sequence[Component]) -> dict[int, list[int]]:
    """The positions of ``parsed`` grouped by layer."""
    out: dict[int, list[int]] = {}
    for i, c in enumerate(parsed):
        out.setdefault(c.layer, []).append(i)
    return out


def corrupted_for_group(corrupt: CleanRun | None, c_mask: torch.Tensor | None, idx: torch.Tensor, per_prompt: bool
                        ) -> tuple[CleanRun | None, torch.Tensor | None]:
    """The corrupted pass as a length group of prompts ``idx`` reads it: the same pass for an ablation
    that averages over it, its rows ``idx`` for one that pairs corrupted prompt i with clean prompt i."""
    if corrupt is None or not per_prompt:
        return corrupt, c_mask
    return CleanRun([], [], [z[idx] for z in corrupt.z], [m[idx] for m in corrupt.mlp_out], None), c_mask[idx]


NORM_EPS = 1e-5
"""Per dimension, added to ||x||² in :meth:`ExactScanner.perturbation` (LayerNorm's default epsilon)."""


@dataclass
class _Group:
    """Prompts of similar length scanned together (:func:`length_groups`): their indices in the task,
    their clean pass cut after their last end position, and what the scan reads of them."""

    idx: torch.Tensor
    clean: CleanRun
    mask: torch.Tensor
    end_pos: torch.Tensor
    readout: Readout
    values: torch.Tensor
    corrupt: CleanRun | None
    c_mask: torch.Tensor | None
    rows: int


GROUP_MIN_SAVING = 0.05
"""A length group is split off only where it saves at least this share of the positions computed."""

MAX_GROUPS = 4


def length_groups(end_pos: torch.Tensor) -> list[torch.Tensor]:
    """The prompts (indices) in groups of similar length, each to run cut after its own last end
    position: start from one group per distinct length and merge the neighbours whose merge adds the
    fewest padded positions while that costs under :data:`GROUP_MIN_SAVING` of all positions (or more
    than :data:`MAX_GROUPS` remain). Every group's per-layer work has a fixed cost (kernel launches,
    small matmuls), so near-equal lengths stay together."""
    lengths = (end_pos.cpu().long() + 1)
    distinct = sorted(set(lengths.tolist()))
    counts = {v: int((lengths == v).sum()) for v in distinct}
    groups = [[v] for v in distinct]  # each: ascending lengths; its cost = its prompts x its longest
    cost = lambda g: sum(counts[v] for v in g) * g[-1]  # noqa: E731
    total = sum(counts[v] * v for v in distinct)
    while len(groups) > 1:
        extra = [cost(a + b) - cost(a) - cost(b) for a, b in zip(groups, groups[1:])]
        j = min(range(len(extra)), key=extra.__getitem__)
        if extra[j] >= GROUP_MIN_SAVING * total and len(groups) <= MAX_GROUPS:
            break
        groups[j:j + 2] = [groups[j] + groups[j + 1]]
    return [torch.nonzero(torch.isin(lengths, torch.tensor(g)))[:, 0] for g in groups]


def _scan_heads(view, layer, clean, dz, head_of, mask, end_pos, readout, rows):
    """Every requested head of ``layer`` ablated alone; rows are (head-major) head x prompt."""
    n = dz.shape[0]
    w_o = view.w_o(layer)  # [head, d_head, d_model]
    end_only = layer == view.n_layers - 1 and not readout.all_positions

    def run(sl: slice) -> torch.Tensor:
        r = torch.arange(sl.start, sl.stop, device=dz.device)
        h, b = head_of[r // n], r % n
        if end_only:  # the last layer: only the end positions are ever read
            e = end_pos[b]
            delta = torch.einsum("rk,rkd->rd", dz[b, e, h], w_o[h])  # [rows, d_model]
            x = clean.resid_mid[layer][b, e] + delta
            x = x + view.mlp(layer, x)
            return readout.from_residual(view, x, b)
        delta = torch.einsum("rpk,rkd->rpd", dz[b, :, h], w_o[h])  # [rows, pos, d_model]
        x = clean.resid_mid[layer][b] + delta
        x = x + view.mlp(layer, x)
        return _finish(view, layer + 1, x, mask[b], end_pos[b], readout, b)

    return run_microbatched(len(head_of) * n, rows, run)


def _continue_from(view, layer, start, mask, end_pos, readout, rows):
    """start: resid_pre of ``layer`` [batch, pos, d_model] -> the metric per prompt."""

    def run(sl: slice) -> torch.Tensor:
        b = torch.arange(sl.start, sl.stop, device=start.device)
        return _finish(view, layer, start[sl], mask[sl], end_pos[sl], readout, b)

    return run_microbatched(start.shape[0], rows, run)


def _finish(view, layer, x, mask, end, readout, b) -> torch.Tensor:
    """Blocks ``layer``.. to the end, then the metric of prompts ``b``. x: [rows, pos, d_model]."""
    rows = torch.arange(x.shape[0], device=x.device)
    if readout.all_positions:  # every position is read: full blocks to the top
        for l in range(layer, view.n_layers):
            x = view.block(l, x, mask)
        return readout.from_residual(view, x, b)
    if layer == view.n_layers:
        return readout.from_residual(view, x[rows, end], b)
    for l in range(layer, view.n_layers - 1):
        x = view.block(l, x, mask)
    return readout.from_residual(view, view.last_block_at_end(x, mask, end), b)


# ----------------------------------------------------------------------------- the adapter's door
def task_tensors(view) -> dict:
    """The tensors of a TokenizedTask the exact scan and attribution patching read, by argument name."""
    return dict(
        tokens=view.clean.tokens, attention_mask=view.clean.attention_mask, end_pos=view.clean.end_pos,
        answer=view.answer_ids, distractor=view.distractor_ids,
        corrupted_tokens=view.corrupted.tokens, corrupted_mask=view.corrupted.attention_mask,
    )


def exact_method(
    adapter, view, ablation: Ablation, *, stack: LayerStack, components: Sequence[Component], batch_size: int = 32,
    progress: Progress | None = None, cancelled: Callable[[], bool] | None = None, stage: str = "influence",
    metric: Metric = DEFAULT_METRIC,
) -> InfluenceScan:
    """``scan(method="exact")``: the exact scan through the adapter's functional view ``stack``."""
    def on_layer(done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)
        if cancelled is not None and cancelled() and done < total:
            raise Cancelled(f"cancelled during {stage} after {done} of {total} components")

    out = exact_scan(stack, ablation=ablation, components=[c.id for c in components], progress=on_layer,
                     metric=metric, **task_tensors(view))
    return InfluenceScan(
        components=out.components, clean_ld=out.clean_ld.double().cpu(), ablated_ld=out.ablated_ld.double().cpu(),
        ablation=ablation, method="exact", metric=metric, microbatch_rows=out.microbatch_rows,
    )

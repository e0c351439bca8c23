"""Reading the job's metric off a model's output, for every scan method.

Each metric is one record of :mod:`circuitdiff.metrics`, which owns its arithmetic; this module
feeds it. A :class:`Readout` holds what one task's metric needs per prompt (answer and distractor
ids, the text's next tokens, the clean next-token distribution for a metric that compares with it)
and turns either

- logits from the adapter (:meth:`Readout.run`, the naive scan: the adapter computes them), or
- final residuals from the functional view (:meth:`Readout.from_residual`, the exact scan and
  attribution patching: only what the metric needs is unembedded)

into one float64 value per prompt. Both paths go through the record's ``value`` (except where the
record has a cheaper ``from_residual``: the logit difference needs only ``W_U[answer] -
W_U[distractor]``), so the scans share one definition. ``rows`` are prompt indices into the task:
the scans stack several ablations of a prompt along the batch, and each row is read against its
own prompt.

What each metric reads (:attr:`Readout.all_positions`, :attr:`Readout.full_vocab`): the logit
difference two logits at the end position; ``answer_prob``, ``answer_logprob`` and ``kl`` the
end position's whole distribution; ``loss`` every position's.
"""

from __future__ import annotations

import torch

from ..metrics import METRICS, MetricDefinition
from ..models.adapter import Batch, ModelAdapter


class Readout:
    """One task's metric. answer / distractor: [n] ids (None for a plain-text task); tokens /
    attention_mask: [n, T] the clean prompts (``loss`` reads their next tokens); end_pos: [n]."""

    def __init__(self, metric: str, tokens: torch.Tensor, attention_mask: torch.Tensor, end_pos: torch.Tensor,
                 answer: torch.Tensor | None = None, distractor: torch.Tensor | None = None):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
        self.definition: MetricDefinition = METRICS[metric]
        if self.definition.needs_answer and (answer is None or distractor is None):
            raise ValueError(f"metric {metric} needs an answer (and distractor) per prompt")
        self.metric = metric
        self.tokens, self.attention_mask, self.end_pos = tokens, attention_mask, end_pos
        self.answer, self.distractor = answer, distractor
        self.reference: torch.Tensor | None = None  # clean log-probabilities at end [n, vocab] float64

    @classmethod
    def for_task(cls, metric: str, view) -> "Readout":
        """The readout of a TokenizedTask's clean prompts."""
        c = view.clean
        return cls(metric, c.tokens, c.attention_mask, c.end_pos, view.answer_ids, view.distractor_ids)

    @property
    def all_positions(self) -> bool:
        return self.definition.all_positions

    @property
    def full_vocab(self) -> bool:
        return self.definition.full_vocab

    @property
    def needs_reference(self) -> bool:
        return self.definition.needs_reference

    # ----------------------------------------------------------------------- from logits
    def from_logits(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """logits: [r, 2] (answer, distractor) for a metric that reads only those (``full_vocab``
        False); [r, vocab] at the end position; [r, pos, vocab] with ``all_positions``. -> [r] float64."""
        lg = logits.double()
        return self.definition.value(self, lg, rows.to(lg.device))

    def set_reference(self, clean_logits: torch.Tensor) -> None:
        """Keep the clean run's end-position log-probabilities ([n, vocab]) for a metric that compares
        with them (``needs_reference``)."""
        if self.needs_reference:
            self.reference = torch.log_softmax(clean_logits.double(), dim=-1)

    # ----------------------------------------------------------------------- the adapter (naive)
    def run(self, adapter: ModelAdapter, batch: Batch, start: int, interventions=()) -> torch.Tensor:
        """[b] values of prompts [start, start + b) with ``interventions`` applied, on the CPU."""
        rows = torch.arange(start, start + len(batch))
        token_ids = None
        if not self.full_vocab:
            token_ids = torch.stack([self.answer[rows.to(self.answer.device)],
                                     self.distractor[rows.to(self.answer.device)]], dim=1)  # [b, 2]
        out = adapter.run(batch, interventions, token_ids=token_ids, all_positions=self.all_positions)
        return self.from_logits(out.logits, rows).cpu()

    def clean(self, adapter: ModelAdapter, batch: Batch, batch_size: int) -> torch.Tensor:
        """[n] clean values of every prompt; a metric that ``needs_reference`` gets it from this run
        (and is 0 on it: the clean run compared with itself)."""
        n = len(batch)
        if self.needs_reference:
            ref = [adapter.run(batch.slice(s, s + batch_size)).logits for s in range(0, n, batch_size)]
            self.set_reference(torch.cat(ref))
            return torch.zeros(n, dtype=torch.float64)
        return torch.cat([self.run(adapter, batch.slice(s, s + batch_size), s) for s in range(0, n, batch_size)])

    # ----------------------------------------------------------------------- the functional view
    def from_residual(self, view, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """x: final residual [r, d_model] at each row's end position, or [r, pos, d_model] with
        ``all_positions``; ``view`` a LayerStack. -> [r] float64 on the view's device."""
        if self.definition.from_residual is not None:
            return self.definition.from_residual(self, view, x, rows)
        return self.from_logits(view.logits(x), rows)

    def bytes_per_row(self, seq_len: int, vocab: int) -> int:
        """Memory the readout adds per scanned row (float64 logits and log-softmax), for micro-batch sizing."""
        if not self.full_vocab:
            return 0
        return 3 * 8 * vocab * (seq_len if self.all_positions else 1)

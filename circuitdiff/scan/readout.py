"""Reading the job's metric off a model's output, for every scan method.

The metrics are defined in :mod:`circuitdiff.metrics`; this module is their arithmetic. A
:class:`Readout` holds what one task's metric needs per prompt (answer and distractor ids, the
text's next tokens, the clean next-token distribution for ``kl``) and turns either

- logits from the adapter (:meth:`Readout.run`, the naive scan: the adapter computes them), or
- final residuals from the functional view (:meth:`Readout.from_residual`, the exact scan and
  attribution patching: only what the metric needs is unembedded)

into one float64 value per prompt. Both paths go through :meth:`Readout.from_logits` (except the
logit difference from residuals, which needs only ``W_U[answer] - W_U[distractor]``), so the scans
share one definition. ``rows`` are prompt indices into the task: the scans stack several
ablations of a prompt along the batch, and each row is read against its own prompt.

What each metric reads (:attr:`Readout.all_positions`, :attr:`Readout.full_vocab`): the logit
difference two logits at the end position; ``answer_prob``, ``answer_logprob`` and ``kl`` the
end position's whole distribution; ``loss`` every position's.
"""

from __future__ import annotations

import torch

from ..metrics import METRICS
from ..models.adapter import Batch, ModelAdapter


class Readout:
    """One task's metric. answer / distractor: [n] ids (None for a plain-text task); tokens /
    attention_mask: [n, T] the clean prompts (``loss`` reads their next tokens); end_pos: [n]."""

    def __init__(self, metric: str, tokens: torch.Tensor, attention_mask: torch.Tensor, end_pos: torch.Tensor,
                 answer: torch.Tensor | None = None, distractor: torch.Tensor | None = None):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
        if METRICS[metric].needs_answer and (answer is None or distractor is None):
            raise ValueError(f"metric {metric} needs an answer (and distractor) per prompt")
        self.metric = metric
        self.tokens, self.attention_mask, self.end_pos = tokens, attention_mask, end_pos
        self.answer, self.distractor = answer, distractor
        self.reference: torch.Tensor | None = None  # kl: clean log-probabilities at end [n, vocab] float64

    @classmethod
    def for_task(cls, metric: str, view) -> "Readout":
        """The readout of a TokenizedTask's clean prompts."""
        c = view.clean
        return cls(metric, c.tokens, c.attention_mask, c.end_pos, view.answer_ids, view.distractor_ids)

    @property
    def all_positions(self) -> bool:
        return self.metric == "loss"

    @property
    def full_vocab(self) -> bool:
        return self.metric != "logit_diff"

    # ----------------------------------------------------------------------- from logits
    def from_logits(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """logits: [r, 2] (answer, distractor) for ``logit_diff``; [r, vocab] at the end position for
        ``answer_prob``/``answer_logprob``/``kl``; [r, pos, vocab] for ``loss``. -> [r] float64."""
        lg = logits.double()
        if self.metric == "logit_diff":
            return lg[:, 0] - lg[:, 1]
        rows = rows.to(lg.device)
        if self.metric == "loss":
            t = lg.shape[1]
            logp = torch.log_softmax(lg[:, :-1], dim=-1)  # [r, pos-1, vocab]: position t predicts t+1
            nxt = self.tokens[rows, 1:t].to(lg.device)
            real = self.attention_mask[rows, 1:t].to(lg.device, torch.float64)  # the next token is real text
            ce = -logp.gather(-1, nxt[..., None])[..., 0]  # [r, pos-1]
            return (ce * real).sum(1) / real.sum(1).clamp(min=1)
        logp = torch.log_softmax(lg, dim=-1)  # [r, vocab]
        if self.metric == "kl":
            if self.reference is None:  # the clean run itself: KL 0 by definition
                return torch.zeros(lg.shape[0], dtype=torch.float64, device=lg.device)
            ref = self.reference[rows.to(self.reference.device)].to(lg.device)
            return (ref.exp() * (ref - logp)).sum(-1)
        ans = logp.gather(1, self.answer[rows.to(self.answer.device)].to(lg.device)[:, None])[:, 0]
        return ans.exp() if self.metric == "answer_prob" else ans

    def set_reference(self, clean_logits: torch.Tensor) -> None:
        """kl: keep the clean run's end-position log-probabilities ([n, vocab]) to compare against."""
        if self.metric == "kl":
            self.reference = torch.log_softmax(clean_logits.double(), dim=-1)

    # ----------------------------------------------------------------------- the adapter (naive)
    def run(self, adapter: ModelAdapter, batch: Batch, start: int, interventions=()) -> torch.Tensor:
        """[b] values of prompts [start, start + b) with ``interventions`` applied, on the CPU."""
        rows = torch.arange(start, start + len(batch))
        token_ids = None
        if self.metric == "logit_diff":
            token_ids = torch.stack([self.answer[rows.to(self.answer.device)],
                                     self.distractor[rows.to(self.answer.device)]], dim=1)  # [b, 2]
        out = adapter.run(batch, interventions, token_ids=token_ids, all_positions=self.all_positions)
        return self.from_logits(out.logits, rows).cpu()

    def clean(self, adapter: ModelAdapter, batch: Batch, batch_size: int) -> torch.Tensor:
        """[n] clean values of every prompt; for ``kl`` also sets the reference (and returns zeros)."""
        n = len(batch)
        if self.metric == "kl":
            ref = [adapter.run(batch.slice(s, s + batch_size)).logits for s in range(0, n, batch_size)]
            self.set_reference(torch.cat(ref))
            return torch.zeros(n, dtype=torch.float64)
        return torch.cat([self.run(adapter, batch.slice(s, s + batch_size), s) for s in range(0, n, batch_size)])

    # ----------------------------------------------------------------------- the functional view
    def from_residual(self, view, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """x: final residual [r, d_model] at each row's end position, or [r, pos, d_model] for
        ``loss``; ``view`` a LayerStack. -> [r] float64 on the view's device."""
        if self.metric == "logit_diff":
            d = self.answer.device
            direction = view.unembed(self.answer[rows.to(d)].to(view.device)) - view.unembed(
                self.distractor[rows.to(d)].to(view.device))
            return view.logit_diff(x, direction).double()
        return self.from_logits(view.logits(x), rows)

    def bytes_per_row(self, seq_len: int, vocab: int) -> int:
        """Memory the readout adds per scanned row (float64 logits and log-softmax), for micro-batch sizing."""
        if not self.full_vocab:
            return 0
        return 3 * 8 * vocab * (seq_len if self.all_positions else 1)

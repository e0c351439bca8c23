"""The job's metric: what a component's influence is measured on. The one place each metric is defined.

A comparison measures every component by ablating it alone and reading one number per prompt from
the model's output (docs/method.md §Method 1 uses the logit difference). The spec's ``metric`` chooses
that number; :data:`METRICS` holds, per metric, its definition, units, which part of the output it
reads, how it reduces over positions and prompts, and the rules that depend on it (retained %,
"performs the task"). The scans compute it with :mod:`circuitdiff.scan.readout` (every scan
method: naive, exact, attribution), the result carries :func:`metric_info`, and the report, the CLI
and README take their labels from here.

For prompt i, with ``end`` the position whose next token is predicted (the prompt's last token) and
``p = softmax(logits[end])`` over the whole vocabulary:

- ``logit_diff`` (default, the paper's): ``logits[end, answer] - logits[end, distractor]``;
- ``answer_prob``: ``p[answer]``;
- ``answer_logprob``: ``log p[answer]``;
- ``kl``: ``KL(p_clean || p_ablated) = sum_v p_clean[v] (log p_clean[v] - log p_ablated[v])``, the
  divergence of the ablated next-token distribution from the clean one (0 on the clean run; no
  answer needed);
- ``loss``: mean over the text's positions t = 0..len-2 of ``-log p_t[token_{t+1}]`` (the causal
  language-modelling loss of the text; no answer needed; causal models only).

Every metric reduces over prompts by the plain mean (each prompt, whatever its length, weighs the
same; the bootstrap intervals resample prompts). Influence of component c is
``|mean_i m_i(c ablated) - mean_i m_i(clean)|``, which for ``kl`` is the mean KL itself; ``delta``
keeps the sign. Retained % exists where a ratio to the clean value means "share of the behaviour
left" (:func:`retained_pct`).

One record per metric: a :class:`MetricDefinition` holds what the result says of the metric
(:func:`metric_info`) and how it is computed: which logits it reads, its value from them (and from
the final residual where that is cheaper), what it needs (answers, the clean run's distribution, a
causal model), its retained % and how attribution patching estimates it. :func:`check_metric` is
the one check that a metric is computable on a task and model pair. A new metric is its name in
:data:`~circuitdiff.vocabulary.Metric` plus one record here.

Torch-free: the service, the result schema and the report import this module. The readouts are
arithmetic on the tensors :class:`circuitdiff.scan.readout.Readout` passes in, written with tensor
methods only, so this module never imports torch.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field, fields
from typing import Any, Callable, Literal, Mapping, Protocol

from .errors import MetricError
from .vocabulary import ROLES, Metric, choices

__all__ = ["MetricDefinition", "METRICS", "DEFAULT_METRIC", "needs_answer", "retained_pct", "metric_info",
           "METRIC_FIX", "check_metric"]

DEFAULT_METRIC: Metric = "logit_diff"

Tensor = Any  # a torch.Tensor: this module reads tensors through their methods and never imports torch


class MetricInputs(Protocol):
    """What a task gives a readout, per prompt (:class:`circuitdiff.scan.readout.Readout`): the clean
    prompts' tokens and attention_mask [n, T], answer / distractor ids [n] (None for plain texts) and,
    for a metric that ``needs_reference``, the clean run's end-position log-probabilities [n, vocab]
    (float64; None while the clean run itself is read)."""

    tokens: Tensor
    attention_mask: Tensor
    answer: Tensor | None
    distractor: Tensor | None
    reference: Tensor | None


# ----------------------------------------------------------------------------- readouts
# value(inputs, logits, rows) -> [r] float64. logits: float64, [r, 2] (answer, distractor) for a metric
# that reads only the answer columns, [r, vocab] at the end position, or [r, pos, vocab] for a metric
# that reads every position; rows: [r] prompt indices into the task, on the logits' device.

def _logit_diff(m: MetricInputs, logits: Tensor, rows: Tensor) -> Tensor:
    return logits[:, 0] - logits[:, 1]


def _logit_diff_from_residual(m: MetricInputs, view: Any, x: Tensor, rows: Tensor) -> Tensor:
    """Two unembedding rows instead of the vocabulary: ``ln_f(x_end) · (W_U[answer] - W_U[distractor])``
    (``view`` a LayerStack, x [r, d_model] the final residual at each row's end position)."""
    d = m.answer.device
    direction = view.unembed(m.answer[rows.to(d)].to(view.device)) - view.unembed(
        m.distractor[rows.to(d)].to(view.device))
    return view.logit_diff(x, direction).double()


def _answer_logprob(m: MetricInputs, logits: Tensor, rows: Tensor) -> Tensor:
    logp = logits.log_softmax(dim=-1)  # [r, vocab]
    return logp.gather(1, m.answer[rows.to(m.answer.device)].to(logits.device)[:, None])[:, 0]


def _answer_prob(m: MetricInputs, logits: Tensor, rows: Tensor) -> Tensor:
    return _answer_logprob(m, logits, rows).exp()


def _kl(m: MetricInputs, logits: Tensor, rows: Tensor) -> Tensor:
    if m.reference is None:  # the clean run itself: KL 0 by definition
        return logits.new_zeros(logits.shape[0])
    logp = logits.log_softmax(dim=-1)  # [r, vocab]
    ref = m.reference[rows.to(m.reference.device)].to(logits.device)
    return (ref.exp() * (ref - logp)).sum(-1)


def _loss(m: MetricInputs, logits: Tensor, rows: Tensor) -> Tensor:
    t = logits.shape[1]
    logp = logits[:, :-1].log_softmax(dim=-1)  # [r, pos-1, vocab]: position t predicts t+1
    nxt = m.tokens[rows, 1:t].to(logits.device)
    real = m.attention_mask[rows, 1:t].to(logits.device, logits.dtype)  # the next token is real text
    ce = -logp.gather(-1, nxt[..., None])[..., 0]  # [r, pos-1]
    return (ce * real).sum(1) / real.sum(1).clamp(min=1)


# ----------------------------------------------------------------------------- retained %
def _share_left(ablated: float, clean: float) -> float | None:
    return 100.0 * ablated / clean if clean > 0 else None


def _surprisal_kept(ablated: float, clean: float) -> float | None:
    return 100.0 * clean / ablated if clean < 0 and ablated < 0 else None


# ----------------------------------------------------------------------------- the records
def _computing(**kw) -> Any:
    """A field on how the metric is computed: not part of the result's ``metric`` section."""
    return field(metadata={"result": False}, **kw)


@dataclass(frozen=True)
class MetricDefinition:
    """One metric. The fields up to ``performs_task`` are the result's ``metric`` section
    (:func:`metric_info`, circuitdiff.result.MetricInfo); the keyword fields say how it is computed."""

    name: Metric
    label: str  # what the report and the CLI call the number
    short: str  # column headings: "<short> ablated", "Δ <short>"
    units: str
    definition: str
    reads: str  # what of the output the exact scan computes
    reduction: str  # over positions and prompts
    needs_answer: bool  # reads an answer token: refused for plain-text datasets
    retained: str | None  # how retained % is defined, None: not defined for this metric
    performs_task: str | None  # how "performs the task" is decided, None: not applicable (null)
    _: KW_ONLY
    value: Callable[[MetricInputs, Tensor, Tensor], Tensor] = _computing()
    """The value per prompt from logits (see the readouts above)."""
    all_positions: bool = _computing(default=False)
    """Reads every position's next-token distribution, not only the end position's."""
    full_vocab: bool = _computing(default=True)
    """Reads whole distributions; False: only the answer and distractor logits, ``[r, 2]``."""
    from_residual: Callable[[MetricInputs, Any, Tensor, Tensor], Tensor] | None = _computing(default=None)
    """A cheaper value from the final residual (inputs, LayerStack, x, rows); None: unembed, then ``value``."""
    needs_reference: bool = _computing(default=False)
    """Compares with the clean run's end-position distribution, which the clean run sets (and reads 0)."""
    causal_only: bool = _computing(default=False)
    """Needs a next-token distribution at every position of a text: refused for masked LMs."""
    retained_pct: Callable[[float, float], float | None] | None = _computing(default=None)
    """(ablated, clean) -> retained % (``retained`` says how), None where the ratio means nothing."""
    attribution: Literal["first_order", "fisher"] = _computing(default="first_order")
    """How attribution patching estimates it: first order, or (a divergence from the clean run: 0 with a
    zero gradient there) the second-order Fisher term (circuitdiff.scan.attribution)."""


_MEAN_OVER_PROMPTS = "mean over prompts (each prompt weighs the same)"
_ANSWER_PERFORMS = ("as for logit_diff: the clean logit difference answer - distractor (the same decision for "
                    "every answer metric)")

METRICS: dict[str, MetricDefinition] = {
    "logit_diff": MetricDefinition(
        "logit_diff", "logit difference", "LD", "logits",
        "logit[answer] - logit[distractor] at the end position (the paper's metric)",
        "two unembedding columns at the end position",
        "end position only; " + _MEAN_OVER_PROMPTS, True,
        "100 * LD_ablated / LD_clean, when LD_clean > 0",
        "mean clean logit difference > 0 and the lower end of its 95% interval > 0",
        value=_logit_diff, full_vocab=False, from_residual=_logit_diff_from_residual, retained_pct=_share_left,
    ),
    "answer_prob": MetricDefinition(
        "answer_prob", "answer probability", "P(answer)", "probability (0 to 1)",
        "softmax over the whole vocabulary of the end position's logits, at the answer token",
        "the end position's full next-token distribution",
        "end position only; " + _MEAN_OVER_PROMPTS, True,
        "100 * P_ablated / P_clean, when P_clean > 0",
        _ANSWER_PERFORMS,
        value=_answer_prob, retained_pct=_share_left,
    ),
    "answer_logprob": MetricDefinition(
        "answer_logprob", "answer log-probability", "log P(answer)", "nats",
        "log-softmax over the whole vocabulary of the end position's logits, at the answer token",
        "the end position's full next-token distribution",
        "end position only; " + _MEAN_OVER_PROMPTS, True,
        "100 * logP_clean / logP_ablated (both < 0): the share of the answer's surprisal kept; 50 = surprisal doubled",
        _ANSWER_PERFORMS,
        value=_answer_logprob, retained_pct=_surprisal_kept,
    ),
    "kl": MetricDefinition(
        "kl", "KL divergence from clean", "KL", "nats",
        "KL(p_clean || p_ablated) of the next-token distributions at the end position (0 on the clean run)",
        "the end position's full next-token distribution",
        "end position only; " + _MEAN_OVER_PROMPTS + "; the influence is the mean KL itself", False,
        None, None,
        value=_kl, needs_reference=True, attribution="fisher",
    ),
    "loss": MetricDefinition(
        "loss", "next-token loss", "loss", "nats per token",
        "cross-entropy of every next token of the text: mean over positions t of -log p_t[token_{t+1}]",
        "every position's full next-token distribution",
        "mean over the text's positions per prompt, then " + _MEAN_OVER_PROMPTS, False,
        None, None,
        value=_loss, all_positions=True, causal_only=True,
    ),
}
assert tuple(METRICS) == choices(Metric) and all(k == d.name for k, d in METRICS.items())

METRIC_FIX = (f"use metric {' or '.join(m for m, d in METRICS.items() if not d.needs_answer)} with a plain-text "
              "dataset, or give every line prompt, answer and distractor for an answer metric")


def needs_answer(metric: str) -> bool:
    return METRICS[metric].needs_answer


def retained_pct(metric: str, ablated: float, clean: float) -> float | None:
    """Retained % of one component (see each metric's ``retained``); None where it means nothing."""
    rule = METRICS[metric].retained_pct
    return None if rule is None else rule(ablated, clean)


def metric_info(metric: str) -> dict:
    """The result's ``metric`` section: the definition the numbers were computed with."""
    d = METRICS[metric]
    return {f.name: getattr(d, f.name) for f in fields(d) if f.metadata.get("result", True)}


def check_metric(metric: str, task_kind: str | None = None, families: Mapping[str, str | None] | None = None) -> None:
    """Raise :class:`~circuitdiff.errors.MetricError` unless ``metric`` is computable on this task and
    pair: an answer metric needs answers; a causal-only metric (``loss``), and a plain-text dataset at
    all, need causal models (a masked LM has no next-token distribution over a text).

    task_kind: the dataset's kind, ``answers`` or ``text`` (None: not known yet); families: role ->
    ``causal`` | ``masked`` for the models whose family is known (a role absent or None is not checked).
    The spec checks what it knows (zoo models), the service adds the dataset's kind, the engine
    everything once the models are loaded: one rule, one message, wherever it is known first."""
    d = METRICS[metric]
    masked = [r for r in ROLES if (families or {}).get(r) == "masked"]
    if d.needs_answer and task_kind == "text":
        raise MetricError(f"metric {metric} reads an answer token, and this dataset is plain text (no answers)",
                          field="metric", fix=METRIC_FIX)
    if masked and d.causal_only:
        usable = ", ".join(m for m, x in METRICS.items() if not x.causal_only)
        raise MetricError(f"metric {metric} is the causal {d.label}, and the {' and '.join(masked)} is a masked LM",
                          field="metric", fix=f"use a metric a masked LM has ({usable}), or two causal models")
    if masked and task_kind == "text":
        raise MetricError(f"plain-text datasets need causal models; the {' and '.join(masked)} is a masked LM",
                          field="dataset", fix="give masked models a dataset of prompts with answers and [MASK] forms")

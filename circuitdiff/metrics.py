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

Torch-free: the service, the result schema and the report import this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .vocabulary import ANSWER_METRICS, Metric, choices

__all__ = ["MetricDefinition", "METRICS", "DEFAULT_METRIC", "needs_answer", "retained_pct", "metric_info",
           "METRIC_FIX"]

DEFAULT_METRIC: Metric = "logit_diff"


@dataclass(frozen=True)
class MetricDefinition:
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


_MEAN_OVER_PROMPTS = "mean over prompts (each prompt weighs the same)"

METRICS: dict[str, MetricDefinition] = {
    "logit_diff": MetricDefinition(
        "logit_diff", "logit difference", "LD", "logits",
        "logit[answer] - logit[distractor] at the end position (the paper's metric)",
        "two unembedding columns at the end position",
        "end position only; " + _MEAN_OVER_PROMPTS, True,
        "100 * LD_ablated / LD_clean, when LD_clean > 0",
        "mean clean logit difference > 0 and the lower end of its 95% interval > 0",
    ),
    "answer_prob": MetricDefinition(
        "answer_prob", "answer probability", "P(answer)", "probability (0 to 1)",
        "softmax over the whole vocabulary of the end position's logits, at the answer token",
        "the end position's full next-token distribution",
        "end position only; " + _MEAN_OVER_PROMPTS, True,
        "100 * P_ablated / P_clean, when P_clean > 0",
        "as for logit_diff: the clean logit difference answer - distractor (the same decision for every answer metric)",
    ),
    "answer_logprob": MetricDefinition(
        "answer_logprob", "answer log-probability", "log P(answer)", "nats",
        "log-softmax over the whole vocabulary of the end position's logits, at the answer token",
        "the end position's full next-token distribution",
        "end position only; " + _MEAN_OVER_PROMPTS, True,
        "100 * logP_clean / logP_ablated (both < 0): the share of the answer's surprisal kept; 50 = surprisal doubled",
        "as for logit_diff: the clean logit difference answer - distractor (the same decision for every answer metric)",
    ),
    "kl": MetricDefinition(
        "kl", "KL divergence from clean", "KL", "nats",
        "KL(p_clean || p_ablated) of the next-token distributions at the end position (0 on the clean run)",
        "the end position's full next-token distribution",
        "end position only; " + _MEAN_OVER_PROMPTS + "; the influence is the mean KL itself", False,
        None, None,
    ),
    "loss": MetricDefinition(
        "loss", "next-token loss", "loss", "nats per token",
        "cross-entropy of every next token of the text: mean over positions t of -log p_t[token_{t+1}]",
        "every position's full next-token distribution",
        "mean over the text's positions per prompt, then " + _MEAN_OVER_PROMPTS, False,
        None, None,
    ),
}
assert tuple(METRICS) == choices(Metric)
assert tuple(m for m, d in METRICS.items() if d.needs_answer) == ANSWER_METRICS

METRIC_FIX = ("use metric kl or loss with a plain-text dataset, or give every line prompt, answer and "
              "distractor for an answer metric")


def needs_answer(metric: str) -> bool:
    return METRICS[metric].needs_answer


def retained_pct(metric: str, ablated: float, clean: float) -> float | None:
    """Retained % of one component (see each metric's ``retained``); None where it means nothing."""
    if metric in ("logit_diff", "answer_prob"):
        return 100.0 * ablated / clean if clean > 0 else None
    if metric == "answer_logprob":
        return 100.0 * clean / ablated if clean < 0 and ablated < 0 else None
    return None


def metric_info(metric: str) -> dict:
    """The result's ``metric`` section: the definition the numbers were computed with."""
    return asdict(METRICS[metric])

"""Stage ``task``: prompts -> token batches for the pair, rejected prompts reported (circuitdiff.tasks).

Also refuses, before any scan, what cannot be computed on these prompts and models: the metric
(circuitdiff.metrics.check_metric), circuits on plain texts, and activations that no longer fit now
that the real token length is known (circuitdiff.models.placement).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..catalogue import task_items
from ..errors import MetricError
from ..metrics import check_metric
from ..models.placement import Workload, check_activations
from ..scan.clean import BATCH_SIZE
from ..tasks.custom import dataset_lines, dropped_summary, resolve_dataset, upload_numbering
from ..tasks.dataset import TaskData, build_task_data
from ..vocabulary import ROLES
from .context import RunContext


@dataclass(frozen=True)
class PreparedTask:
    data: TaskData
    activation_bytes: dict[str, int]  # per model: the scan's activations at the real token length


def prepare_task(ctx: RunContext) -> PreparedTask:
    spec = ctx.spec
    items = task_items(spec.task, spec.task_options, spec.n_prompts, spec.seed, spec.dataset, ctx.datasets_dir)
    # Pairs without a shared tokenisation compare attention on shared words (issue #4); the paper
    # compared only the end-query row for its GPT-2 vs DistilBERT control (pitfall 8).
    task = build_task_data(
        items, {r: ctx.models[r].tokenizer for r in ROLES}, name=spec.task, options=spec.task_options,
        bos=spec.bos, device=ctx.device, forms=ctx.families,
        word_alignment="word_end_row" if spec.preset == "paper" else "word_pooled",
    )
    ctx.warnings.extend(task.warnings)
    if spec.dataset:  # invalid lines were dropped, as an upload drops them: say which (custom.parse_items)
        path = resolve_dataset(spec.dataset, ctx.datasets_dir)
        _, dropped, n_lines = dataset_lines(path.read_bytes(), upload_numbering(path))
        if dropped:
            ctx.warnings.append(dropped_summary(dropped, n_lines, f"dataset {spec.dataset}"))
    if task.n_prompts < spec.n_prompts:  # a short dataset or rejected prompts: every number rests on fewer
        why = []
        if len(items) < spec.n_prompts:
            why.append(f"the {'dataset' if spec.dataset else 'task'} has {len(items)}")
        if task.rejected:
            why.append(f"{len(task.rejected)} rejected (see task.rejected)")
        ctx.warnings.append(f"{spec.n_prompts} prompts asked for, {task.n_prompts} compared"
                            + (f" ({'; '.join(why)})" if why else "") + ": intervals are wider than asked for")
    check_metric(spec.metric, task.kind, ctx.families)
    if spec.circuits is not None and task.kind == "text":  # circuit search reads the logit difference
        raise MetricError("circuits are found on the logit difference, and this dataset is plain text (no answers)",
                          field="circuits", fix="drop `circuits`, or use a dataset of prompts with answers")
    activation_bytes = {}
    for role in ROLES:  # the real token length now known: do the scan's activations still fit?
        a, v = ctx.models[role], task.view(role)
        activation_bytes[role] = check_activations(
            a.hf_model.config, a.dtype, Workload(v.n, v.clean.tokens.shape[1], BATCH_SIZE), a.device,
            field=f"{role}.id", model_id=a.info["id"])
    return PreparedTask(task, activation_bytes)


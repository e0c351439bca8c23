"""What circuitdiff offers by name: the built-in tasks and the bundled zoo models. Torch-free.

The one source of both lists: the spec validates against it, the CLI and ``GET /v1/tasks`` /
``GET /v1/models`` list it, the engine builds task prompts through it and the zoo loader finds
its files through it.

Tasks: each entry has a description, its options (allowed values and default) and the builder
that turns ``(options, n, seed)`` into text items; built-in tasks draw from the generators'
``eval`` split (held out from the zoo's training corpus). ``custom`` has no builder: its items
come from a JSONL dataset (:mod:`circuitdiff.tasks.custom`).

Zoo: trained pairs committed under ``circuitdiff/zoo/models/<name>/`` and GPT-2-small-shaped
models with seeded random weights, built at load time, for benchmarks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import DatasetError, UnknownTaskError
from .tasks import custom, generate
from .tasks.generate import TextItem
from .vocabulary import Ablation, Family, MlpSimilarity

AUTHORS_REPO = "Reih02/distilled_circuits@dca9f8a"

# --------------------------------------------------------------------------- tasks
ItemBuilder = Callable[[dict[str, str], int, int], list[TextItem]]


@dataclass(frozen=True)
class TaskOption:
    values: tuple[str, ...]
    default: str
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"type": "enum", "values": list(self.values), "default": self.default}


HUB_SHAPES: dict[str, dict[str, Any]] = {
    "meta-llama/Llama-3.1-8B": dict(
        model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072, rope_theta=500000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=False),
    "nvidia/Llama-3.1-Minitron-4B-Depth-Base": dict(
        model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072, rope_theta=500000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=False),
}
"""The config shapes of the paper's v2 pair (their hub config.json files, sizes only): the memory plan's
tests and benchmarks/llama_scale.py build random-weight models at these shapes (hubs are unreachable
on the build machines)."""

LLAMA_PAPER_ABLATION: Ablation = "token_mean"
LLAMA_PAPER_PROTOCOL = (
    f"authors' Llama_experiments/llama_influence.ipynb ({AUTHORS_REPO}): mean ablation with one mean vector per head "
    "(its slice of the o_proj input) and per MLP over all non-pad tokens of the corrupted set, BOS prepended and counted among them "
    "(docs/authors-code.md §3.1 D); the paper preset uses it for every task when both models have the Llama layout"
)
"""The ``paper`` preset on a pair of Llama-layout models (architectures.LLAMA_MODEL_TYPES): the authors'
Llama notebook's ablation instead of the GPT-2 notebooks' (their Llama alignment script zeroed o_proj
output columns, not heads: that bug is not reproduced)."""


@dataclass(frozen=True)
class PaperProtocol:
    """What the authors' notebook for a task did (docs/authors-code.md §3, checked against their saved outputs);
    the ``paper`` preset runs exactly this for the task."""

    notebook: str
    ablation: Ablation
    mlp_similarity: MlpSimilarity
    thresholds: bool  # heads 0.95 / MLPs 0.12 label pairs; without, every pair counts as matched
    duplicate_heads: bool  # below-threshold head pairs counted twice (MLP pairs never: a set)
    ties: str  # argmax ties: "first" (the notebook's `>`) or "last" (`>=`)

    def describe(self) -> str:
        return (f"authors' {self.notebook} ({AUTHORS_REPO}): {self.ablation} ablation, "
                + {"eigen": "top-3 eigenvector MLP similarity rescaled to the head distribution",
                   "eigen_raw": "raw top-3 eigenvector MLP similarity", "cka": "linear CKA MLP similarity"}
                [self.mlp_similarity]
                + (", thresholds 0.95 (heads) / 0.12 (MLPs)" if self.thresholds else ", no thresholds")
                + (", below-threshold head pairs counted twice" if self.duplicate_heads else ", no duplicated pairs"))


SEQ_QA_RULES = dict(mlp_similarity="eigen", thresholds=True, duplicate_heads=True, ties="last")


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    options: dict[str, TaskOption] = field(default_factory=dict)
    build: ItemBuilder | None = None  # None: the items come from a dataset
    paper: PaperProtocol = PaperProtocol("qa_alignment_metric.ipynb", "zero", **SEQ_QA_RULES)

    @property
    def needs_dataset(self) -> bool:
        return self.build is None

    def defaults(self) -> dict[str, str]:
        return {k: o.default for k, o in self.options.items()}

    def as_dict(self) -> dict[str, Any]:
        """The listing shape of ``GET /v1/tasks`` and ``circuitdiff tasks``."""
        return {"name": self.name, "description": self.description,
                "options": {k: o.as_dict() for k, o in self.options.items()}}


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "ioi", "Indirect object identification: '... John gave a drink to' -> Mary vs John",
            {"templates": TaskOption(("mixed", "ABBA", "BABA"), "mixed")},
            lambda o, n, seed: generate.ioi_items(n, seed=seed, split="eval", templates=o["templates"]),
            PaperProtocol("IOI_alignment_metric.ipynb", "zero", "eigen_raw", thresholds=False, duplicate_heads=False,
                          ties="first"),
        ),
        Task(
            "sequence", "Numerical sequence continuation: '... Desk done in 4. Sun done in' -> 5 vs 4",
            {"members": TaskOption(("numerals", "numwords", "months"), "numerals"),
             "frame": TaskOption(("done", "lost", "names"), "done")},
            lambda o, n, seed: generate.sequence_items(n, seed=seed, split="eval", members=o["members"],
                                                       frame=o["frame"]),
            PaperProtocol("seq_alignment_metric.ipynb", "mean", **SEQ_QA_RULES),
        ),
        Task(
            "qa", "Factual questions: 'Q: What is the capital of Velm? A:' -> Tarro vs another capital",
            {"facts": TaskOption(("zoo", "world"), "zoo")},
            lambda o, n, seed: generate.qa_items(n, seed=seed, split="eval", facts=o["facts"]),
        ),
        # custom: no notebook of its own; the QA notebook's treatment (the class default)
        Task("custom", "A JSONL dataset of {prompt, answer, distractor, corrupted_prompt?, masked_prompt?}"),
    )
}


def list_tasks() -> list[dict[str, Any]]:
    return [t.as_dict() for t in TASKS.values()]


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; available: {', '.join(TASKS)}", field="task",
                               fix=f"use one of: {', '.join(TASKS)}") from None


def task_items(
    task: str, options: dict[str, str], n: int, seed: int, dataset: str | None = None,
    datasets_dir: str | Path | None = None,
) -> list[TextItem]:
    """The text items of a task: ``n`` generated prompts, or the first ``n`` items of a dataset."""
    entry = get_task(task)
    if entry.build is not None:
        return entry.build({**entry.defaults(), **options}, n, seed)
    if not dataset:
        raise DatasetError(f"the {task} task needs a dataset", field="dataset",
                           fix="upload one with POST /v1/datasets, or pass --dataset FILE.jsonl")
    return custom.load_items(custom.resolve_dataset(dataset, datasets_dir))[:n]


# --------------------------------------------------------------------------- zoo models
ZOO_DIR = Path(__file__).resolve().parent / "zoo" / "models"


@dataclass(frozen=True)
class ZooModel:
    name: str
    description: str
    family: Family
    shape: dict[str, int] | None = None  # random models: GPT2Config fields; trained ones: None
    student: str | None = None  # a teacher's distilled student in the zoo

    @property
    def id(self) -> str:
        return f"zoo:{self.name}"

    @property
    def trained(self) -> bool:
        return self.shape is None

    @property
    def path(self) -> Path | None:
        """Directory of a trained model's files; None for models built at load time."""
        return ZOO_DIR / self.name if self.trained else None

    def available(self) -> bool:
        return not self.trained or (self.path / "config.json").is_file()


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel("gpt-teacher", "GPT-2 architecture, 4 layers x 4 heads, trained on the bundled task corpus",
                 "causal", student="gpt-student"),
        ZooModel("gpt-student", "2 layers x 4 heads, distilled from gpt-teacher (KD, T=2)", "causal"),
        ZooModel("gpt-control-scratch", "Control: gpt-student's shape, corpus, batches and steps, random init, "
                 "next-token loss only (never saw gpt-teacher)", "causal"),
        ZooModel("gpt-control-kd", "Control: gpt-student's shape and recipe (KD from gpt-teacher, T=2), random init "
                 "instead of the teacher's layers", "causal"),
        ZooModel("bert-teacher", "BERT masked LM, 4 layers, trained on the bundled task corpus", "masked",
                 student="distilbert-student"),
        ZooModel("distilbert-student", "DistilBERT masked LM, 2 layers, distilled from bert-teacher", "masked"),
        ZooModel("llama-teacher", "Llama architecture (GQA 4 query / 2 key-value heads, RoPE, RMSNorm, SwiGLU), "
                 "4 layers, d_model 128, trained on the bundled task corpus", "causal", student="llama-student"),
        ZooModel("llama-student", "2 layers pruned from llama-teacher the Minitron-Depth way (the layers whose "
                 "removal costs most held-out loss kept), then distilled (KD, T=2)", "causal"),
        ZooModel("gpt2-small-random",
                 "GPT-2 small shapes (12x12, d_model 768, vocab 50257), seeded random weights; benchmarks only",
                 "causal", shape={"n_layer": 12, "n_head": 12, "n_embd": 768, "vocab_size": 50257,
                                  "n_positions": 1024}, student="distilgpt2-random"),
        ZooModel("distilgpt2-random",
                 "DistilGPT2 shapes (6x12, d_model 768, vocab 50257), seeded random weights; benchmarks only",
                 "causal", shape={"n_layer": 6, "n_head": 12, "n_embd": 768, "vocab_size": 50257,
                                  "n_positions": 1024}),
    )
}
TRAINED: tuple[str, ...] = tuple(n for n, m in ZOO.items() if m.trained)
RANDOM: tuple[str, ...] = tuple(n for n, m in ZOO.items() if not m.trained)


def zoo_model(name: str) -> ZooModel:
    """A zoo entry by name, ``zoo:`` prefix optional; KeyError for an unknown name."""
    return ZOO[name.removeprefix("zoo:")]


def zoo_path(name: str) -> Path:
    """Directory of a trained zoo model (KeyError for unknown or random models)."""
    path = zoo_model(name).path
    if path is None:
        raise KeyError(name)
    return path


def zoo_model_type(name: str) -> str | None:
    """A zoo model's ``model_type`` (its ``config.json``; the random ones are GPT-2); None if unknown."""
    m = ZOO.get(name.removeprefix("zoo:"))
    if m is None:
        return None
    return config_model_type(m.path) if m.trained else "gpt2"


def config_model_type(model_dir: Path) -> str | None:
    """The ``model_type`` a checkpoint directory's ``config.json`` names; None without a readable one."""
    try:
        value = json.loads((Path(model_dir) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def list_zoo() -> list[dict[str, Any]]:
    """The listing shape of ``GET /v1/models`` and ``circuitdiff models``."""
    return [{"id": m.id, "description": m.description, "available": m.available()} for m in ZOO.values()]

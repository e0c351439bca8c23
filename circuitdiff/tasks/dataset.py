"""Task data for a model pair: text items -> token batches both models run on.

Decoder (causal) form, PAPER.md §Tasks: the answer is the next token after the prompt, read at
the prompt's last position; answer/distractor ids are the single token of ``" " + word``. Every
check is done for *both* tokenizers:

- answer and distractor are exactly one token each, and different tokens;
- the clean and corrupted prompts tokenise to the same length (resample/mean ablation pair
  positions across them);
- the prompt does not end in whitespace (paper-notes §7 pitfall 13: the answer token carries the
  space; a trailing space changes the tokenisation and the task).

A prompt that fails is reported with its index, text and reason (``TaskData.rejected``), never
dropped silently. One BOS policy (``prepend`` | ``none``) is applied to every pass of a job:
influence runs, attention patterns and MLP captures all use these batches (pitfall 1).

Teacher and student must share one vocabulary for now (token-level alignment of attention
patterns needs the same tokenisation); cross-tokenizer pairs are issue #4.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..errors import IncompatibleModelsError, TaskTokenizationError
from ..models.adapter import Batch
from .generate import TextItem

Role = Literal["teacher", "student"]
MIN_PROMPTS = 4  # below this no mean/CI is worth reporting


@dataclass
class TokenizedTask:
    """One model's view of the task. clean/corrupted: [n, T] right-padded to one T."""

    clean: Batch
    corrupted: Batch
    answer_ids: torch.Tensor  # [n]
    distractor_ids: torch.Tensor  # [n]
    token_labels: list[list[str]]  # per clean prompt, one label per real token

    @property
    def n(self) -> int:
        return len(self.clean)

    def answer_distractor(self) -> torch.Tensor:
        """[n, 2]: the token ids to read logits for (answer, distractor)."""
        return torch.stack([self.answer_ids, self.distractor_ids], dim=1)


@dataclass
class TaskData:
    name: str
    options: dict[str, Any]
    form: Literal["causal", "masked", "mixed"]
    bos: bool
    items: list[TextItem]  # accepted items, in order
    rejected: list[dict]  # {index, prompt, reason}
    dataset_sha256: str
    views: dict[str, TokenizedTask]
    token_alignment: str = "shared_vocabulary"
    warnings: list[str] = field(default_factory=list)

    @property
    def n_prompts(self) -> int:
        return len(self.items)

    def view(self, role: str) -> TokenizedTask:
        return self.views[role]

    def info(self) -> dict[str, Any]:
        """The ``task`` section of result.json (circuitdiff.result.TaskInfo)."""
        return {
            "name": self.name, "options": dict(self.options), "form": self.form,
            "n_prompts": self.n_prompts, "n_rejected": len(self.rejected),
            "dataset_sha256": self.dataset_sha256, "rejected": list(self.rejected),
            "example_prompt": self.items[0].prompt if self.items else "",
            "token_alignment": self.token_alignment,
        }


def check_same_vocabulary(tokenizers: dict[str, Any]) -> None:
    (ra, ta), (rb, tb) = list(tokenizers.items())[:2]
    if ta.get_vocab() != tb.get_vocab():
        raise IncompatibleModelsError(
            f"the {ra} and {rb} tokenizers have different vocabularies ({len(ta)} vs {len(tb)} tokens); "
            "comparing them needs a shared tokenisation (cross-tokenizer pairs are not supported yet)",
            field="student",
        )


def build_task_data(
    items: list[TextItem],
    tokenizers: dict[str, Any],
    *,
    name: str,
    options: dict[str, Any] | None = None,
    bos: Literal["prepend", "none"] = "prepend",
    device: torch.device | str = "cpu",
) -> TaskData:
    """Tokenise ``items`` for every model in ``tokenizers`` (role -> tokenizer), decoder form."""
    check_same_vocabulary(tokenizers)
    warnings: list[str] = []
    prepend = bos == "prepend"
    bos_ids = {}
    for role, tok in tokenizers.items():
        bos_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if prepend and bos_id is None:
            raise TaskTokenizationError(f"the {role} tokenizer has no BOS/EOS token to prepend; use bos=none", field="bos")
        bos_ids[role] = bos_id

    encoded: dict[str, list[dict]] = {role: [] for role in tokenizers}
    accepted: list[int] = []
    rejected: list[dict] = []
    for i, item in enumerate(items):
        reason = None
        per_role = {}
        for role, tok in tokenizers.items():
            enc, reason = _encode_causal(item, tok, bos_ids[role] if prepend else None, role)
            if reason:
                break
            per_role[role] = enc
        if reason:
            rejected.append({"index": i, "prompt": item.prompt, "reason": reason})
            continue
        accepted.append(i)
        for role, enc in per_role.items():
            encoded[role].append(enc)

    needed = min(MIN_PROMPTS, len(items))
    if len(accepted) < max(needed, 1):
        reasons = Counter(r["reason"].split(" (")[0] for r in rejected)
        top = "; ".join(f"{n} x {r}" for r, n in reasons.most_common(3))
        raise TaskTokenizationError(
            f"only {len(accepted)} of {len(items)} prompts are usable (at least {max(needed, 1)} needed): {top}",
            rejected=rejected, field="dataset" if name == "custom" else "task",
        )

    kept = [items[i] for i in accepted]
    missing_corrupted = [k for k, it in enumerate(kept) if not it.corrupted_prompt]
    if missing_corrupted:
        warnings.append(
            f"{len(missing_corrupted)} prompts have no corrupted_prompt: another prompt of the same token "
            "length stands in for it (mean/resample ablation statistics come from those)"
        )
    views = {}
    for role, tok in tokenizers.items():
        encs = encoded[role]
        _fill_missing_corrupted(encs, missing_corrupted, warnings if role == next(iter(tokenizers)) else None)
        views[role] = _batch_view(encs, tok, device)
    return TaskData(
        name=name, options=dict(options or {}), form="causal", bos=prepend, items=kept, rejected=rejected,
        dataset_sha256=dataset_digest(kept), views=views, warnings=warnings,
    )


def dataset_digest(items: list[TextItem]) -> str:
    """sha256 of the canonical prompt list (what was actually run, after rejections)."""
    rows = [
        {"prompt": it.prompt, "answer": it.answer, "distractor": it.distractor, "corrupted_prompt": it.corrupted_prompt}
        for it in items
    ]
    return hashlib.sha256(json.dumps(rows, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _encode_causal(item: TextItem, tok: Any, bos_id: int | None, role: str) -> tuple[dict | None, str | None]:
    if not item.prompt.strip():
        return None, "empty prompt"
    if item.prompt != item.prompt.rstrip():
        return None, "prompt ends with whitespace (the answer token carries the leading space)"
    ids = tok(item.prompt, add_special_tokens=False)["input_ids"]
    pre = [bos_id] if bos_id is not None else []
    word_ids = {}
    for what, word in (("answer", item.answer), ("distractor", item.distractor)):
        w = tok(" " + word, add_special_tokens=False)["input_ids"]
        if len(w) != 1:
            pieces = tok.convert_ids_to_tokens(w)
            return None, f"{what} {' ' + word!r} is {len(w)} tokens for the {role} tokenizer ({pieces})"
        word_ids[what] = w[0]
    if word_ids["answer"] == word_ids["distractor"]:
        return None, f"answer and distractor are the same token for the {role} tokenizer"
    corrupted = None
    if item.corrupted_prompt:
        corrupted = tok(item.corrupted_prompt, add_special_tokens=False)["input_ids"]
        if len(corrupted) != len(ids):
            return None, (
                f"clean and corrupted prompts tokenise to different lengths for the {role} tokenizer "
                f"({len(ids)} vs {len(corrupted)} tokens)"
            )
        corrupted = pre + corrupted
    return {
        "ids": pre + ids, "corrupted": corrupted, "answer": word_ids["answer"], "distractor": word_ids["distractor"],
    }, None


def _fill_missing_corrupted(encs: list[dict], missing: list[int], warnings: list[str] | None) -> None:
    """Custom items without a corrupted prompt borrow the clean tokens of the next item of the same
    length (cyclically), so resample pairs differ and positions still line up."""
    by_len: dict[int, list[int]] = defaultdict(list)
    for k, e in enumerate(encs):
        by_len[len(e["ids"])].append(k)
    alone = 0
    for k in missing:
        group = by_len[len(encs[k]["ids"])]
        other = group[(group.index(k) + 1) % len(group)]
        alone += other == k
        encs[k]["corrupted"] = list(encs[other]["ids"])
    if alone and warnings is not None:
        warnings.append(f"{alone} prompts without corrupted_prompt have no same-length partner and use themselves")


def _batch_view(encs: list[dict], tok: Any, device: torch.device | str) -> TokenizedTask:
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    T = max(len(e["ids"]) for e in encs)

    def pack(seqs: list[list[int]]) -> Batch:
        tokens = torch.full((len(seqs), T), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for r, s in enumerate(seqs):
            tokens[r, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[r, : len(s)] = 1
        end = mask.sum(1) - 1  # the last real token predicts the answer
        return Batch(tokens, mask, end).to(device)

    labels = [[tok.decode([t]) for t in e["ids"]] for e in encs]
    return TokenizedTask(
        clean=pack([e["ids"] for e in encs]),
        corrupted=pack([e["corrupted"] for e in encs]),
        answer_ids=torch.tensor([e["answer"] for e in encs], dtype=torch.long, device=device),
        distractor_ids=torch.tensor([e["distractor"] for e in encs], dtype=torch.long, device=device),
        token_labels=labels,
    )

"""Task data for a model pair: text items -> token batches both models run on.

Decoder (causal) form, docs/method.md §Tasks: the answer is the next token after the prompt, read at
the prompt's last position; answer/distractor ids are the single token of ``" " + word``. Every
check is done for *both* tokenizers:

- answer and distractor are exactly one token each, and different tokens;
- the clean and corrupted prompts tokenise to the same length (resample/mean ablation pair
  positions across them);
- the prompt does not end in whitespace (docs/authors-code.md §7 pitfall 13: the answer token carries the
  space; a trailing space changes the tokenisation and the task).

A prompt that fails is reported with its index, text and reason (``TaskData.rejected``), never
dropped silently. One BOS policy (``prepend`` | ``none``) is applied to every pass of a job:
influence runs, attention patterns and MLP captures all use these batches (pitfall 1).

Masked-LM form (issue #4), for models whose family is ``masked``: the input is
``TextItem.masked_prompt`` with the literal ``[MASK]`` replaced by the tokenizer's mask token and
framed by the tokenizer's own special tokens ([CLS] ... [SEP]; the BOS policy does not apply), the
end position is the mask's index, and answer/distractor ids are the single token of the bare word
(lower-cased for an uncased tokenizer; no leading space; [UNK] is refused, docs/authors-code.md §7
pitfall 12). Each model gets the form of its family, so one pair may mix forms.

Plain-text form (issue #17), for items of kind ``text`` (custom ``{"text": ...}`` lines; metrics kl
and loss, causal models only): the text after the BOS policy, cut to at most
:data:`~circuitdiff.vocabulary.MAX_TEXT_TOKENS` tokens (or the tokenizer's context if shorter;
``TaskData.max_tokens``, ``n_truncated``); the end position is the last kept token; there are no
answer or distractor ids. A ``corrupted_text`` is cut likewise and must have the same token length.

Pairs that share a vocabulary and a form are aligned token by token (``shared_vocabulary``).
Otherwise (different vocabularies, or a causal model next to a masked one) tokens are mapped to
the words both inputs share by character offsets (:mod:`circuitdiff.tasks.word_alignment`); each view
then carries ``word_groups`` and attention is compared on words. A pair whose tokenizers give no
offsets has no sound mapping and is refused with :class:`IncompatibleModelsError`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import IncompatibleModelsError, TaskTokenizationError
from ..models.adapter import Batch
from ..vocabulary import MAX_TEXT_TOKENS, Bos, Family, TaskForm, TokenAlignment
from .word_alignment import MIN_SHARED_WORDS, align
from .generate import MASK, TextItem

MIN_PROMPTS = 4  # below this no mean/CI is worth reporting


@dataclass
class TokenizedTask:
    """One model's view of the task. clean/corrupted: [n, T] right-padded to one T."""

    clean: Batch
    corrupted: Batch
    answer_ids: torch.Tensor | None  # [n]; None for plain texts
    distractor_ids: torch.Tensor | None  # [n]
    token_labels: list[list[str]]  # per clean prompt, one label per real token
    # word-aligned pairs only: [n, T] shared-word index of each clean token (-1: none) and the
    # number of shared words per prompt [n]
    word_groups: torch.Tensor | None = None
    n_words: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return len(self.clean)

    @property
    def has_answers(self) -> bool:
        return self.answer_ids is not None

    def answer_distractor(self) -> torch.Tensor:
        """[n, 2]: the token ids to read logits for (answer, distractor)."""
        return torch.stack([self.answer_ids, self.distractor_ids], dim=1)


@dataclass
class TaskData:
    name: str
    options: dict[str, Any]
    form: TaskForm
    bos: bool
    items: list[TextItem]  # accepted items, in order
    rejected: list[dict]  # {index, prompt, reason, line}: line, a custom dataset's file line (else None)
    dataset_sha256: str
    views: dict[str, TokenizedTask]
    token_alignment: TokenAlignment = "shared_vocabulary"
    warnings: list[str] = field(default_factory=list)
    words: list[list[str]] | None = None  # word-aligned pairs: the shared words of each prompt
    kind: str = "answers"  # "text": plain texts, no answers
    max_tokens: int | None = None  # plain texts: the cut
    n_truncated: int = 0

    @property
    def word_aligned(self) -> bool:
        return self.words is not None

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
            "example_prompt": (self.items[0].masked_prompt if self.form == "masked" else self.items[0].prompt)
            if self.items else "",
            "token_alignment": self.token_alignment,
            "items": [self._item(it) for it in self.items],
            "kind": self.kind, "max_tokens": self.max_tokens, "n_truncated": self.n_truncated,
        }

    def _item(self, it: TextItem) -> dict[str, Any]:
        """An accepted item as the engine ran it: what a custom dataset line needs to re-run it."""
        if it.kind == "text":
            return {"text": it.prompt, "corrupted_text": it.corrupted_prompt or None}
        out = {"prompt": it.prompt, "answer": it.answer, "distractor": it.distractor,
               "corrupted_prompt": it.corrupted_prompt or None}
        if self.form != "causal":  # a masked LM read the cloze forms
            out.update(masked_prompt=it.masked_prompt, corrupted_masked_prompt=it.corrupted_masked_prompt or None)
        return out


def same_vocabulary(tokenizers: dict[str, Any]) -> bool:
    (_, ta), (_, tb) = list(tokenizers.items())[:2]
    return ta.get_vocab() == tb.get_vocab()


def check_word_offsets(tokenizers: dict[str, Any]) -> None:
    """Word alignment needs character offsets (fast tokenizers); without them there is no sound
    mapping between the two tokenisations."""
    for role, tok in tokenizers.items():
        try:
            ok = "offset_mapping" in tok("a b", add_special_tokens=False, return_offsets_mapping=True)
        except (NotImplementedError, ValueError, TypeError):
            ok = False  # python tokenizers either raise or silently leave the offsets out
        if not ok:
            raise IncompatibleModelsError(
                f"the teacher and student tokenise differently and the {role} tokenizer gives no character "
                "offsets, so tokens cannot be mapped to shared words; use a fast tokenizer (tokenizer.json)",
                field=role,
            )


def build_task_data(
    items: list[TextItem],
    tokenizers: dict[str, Any],
    *,
    name: str,
    options: dict[str, Any] | None = None,
    bos: Bos = "prepend",
    device: torch.device | str = "cpu",
    forms: dict[str, Family] | None = None,
    word_alignment: TokenAlignment = "word_pooled",
) -> TaskData:
    """Tokenise ``items`` for every model in ``tokenizers`` (role -> tokenizer).

    forms: role -> ``causal`` | ``masked`` (the model family; default causal for every role).
    word_alignment: how attention is compared where the pair shares no tokenisation (``word_pooled``,
    or ``word_end_row``, the paper's end-query row); pairs that share one are ``shared_vocabulary``."""
    forms = {r: (forms or {}).get(r, "causal") for r in tokenizers}
    kind = "text" if any(it.kind == "text" for it in items) else "answers"
    if kind == "text" and any(it.kind != "text" for it in items):
        raise TaskTokenizationError("a dataset mixes plain texts and prompts with answers", field="dataset")
    max_tokens = None
    if kind == "text":  # the cut: ours, or a shorter context of either tokenizer
        limits = [t.model_max_length for t in tokenizers.values() if 0 < (t.model_max_length or 0) < 10**6]
        max_tokens = min([MAX_TEXT_TOKENS] + limits)
    truncated = 0
    word_aligned = len(set(forms.values())) > 1 or not same_vocabulary(tokenizers)
    if word_aligned:
        check_word_offsets(tokenizers)
    warnings: list[str] = []
    prepend = bos == "prepend"
    bos_ids = {}
    for role, tok in tokenizers.items():
        bos_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if forms[role] == "masked" and tok.mask_token_id is None:
            raise TaskTokenizationError(f"the {role} is a masked LM but its tokenizer has no mask token", field=role)
        if prepend and bos_id is None and forms[role] == "causal":
            raise TaskTokenizationError(f"the {role} tokenizer has no BOS/EOS token to prepend; use bos=none", field="bos")
        bos_ids[role] = bos_id

    encoded: dict[str, list[dict]] = {role: [] for role in tokenizers}
    accepted: list[int] = []
    rejected: list[dict] = []
    shared_words: list[list[str]] = []
    for i, item in enumerate(items):
        reason = None
        per_role = {}
        for role, tok in tokenizers.items():
            if kind == "text":
                enc, reason = _encode_text(item, tok, bos_ids[role] if prepend else None, role, max_tokens,
                                           word_aligned)
            elif forms[role] == "masked":
                enc, reason = _encode_masked(item, tok, role, word_aligned)
            else:
                enc, reason = _encode_causal(item, tok, bos_ids[role] if prepend else None, role, word_aligned)
            if reason:
                break
            per_role[role] = enc
        if not reason and word_aligned:
            wa = align({r: e["text"] for r, e in per_role.items()}, {r: e["offsets"] for r, e in per_role.items()},
                       {r: e["skip"] for r, e in per_role.items()})
            if len(wa.words) < MIN_SHARED_WORDS:
                reason = f"the two inputs share {len(wa.words)} words (at least {MIN_SHARED_WORDS} needed to align attention)"
            else:
                for r, e in per_role.items():
                    e["groups"] = wa.groups[r]
        if reason:
            rejected.append({"index": i, "prompt": item.prompt, "reason": reason, "line": item.meta.get("line")})
            continue
        accepted.append(i)
        truncated += any(e.get("truncated") for e in per_role.values())
        if word_aligned:
            shared_words.append(wa.words)
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
    views = {}
    warned = False
    for role, tok in tokenizers.items():
        encs = encoded[role]
        missing_corrupted = [k for k, e in enumerate(encs) if e["corrupted"] is None]
        notes = None if warned else warnings
        if missing_corrupted and notes is not None:
            warned = True
            what = "corrupted_masked_prompt" if forms[role] == "masked" else "corrupted_prompt"
            notes.append(
                f"{len(missing_corrupted)} prompts have no {what}: another prompt of the same token "
                "length stands in for it (mean/resample ablation statistics come from those)"
            )
        _fill_missing_corrupted(encs, missing_corrupted, notes)
        views[role] = _batch_view(encs, tok, device)
    kinds = set(forms.values())
    return TaskData(
        name=name, options=dict(options or {}), form=kinds.pop() if len(kinds) == 1 else "mixed", bos=prepend,
        items=kept, rejected=rejected, dataset_sha256=dataset_digest(kept, masked="masked" in forms.values()),
        views=views, warnings=warnings, token_alignment=word_alignment if word_aligned else "shared_vocabulary",
        words=shared_words if word_aligned else None, kind=kind, max_tokens=max_tokens, n_truncated=truncated,
    )


def dataset_digest(items: list[TextItem], masked: bool = False) -> str:
    """sha256 of the canonical prompt list (what was actually run, after rejections); the cloze
    prompts are part of it when a masked LM read them."""
    rows = [
        {"prompt": it.prompt, "answer": it.answer, "distractor": it.distractor, "corrupted_prompt": it.corrupted_prompt}
        for it in items
    ]
    if masked:
        for row, it in zip(rows, items):
            row.update(masked_prompt=it.masked_prompt, corrupted_masked_prompt=it.corrupted_masked_prompt)
    return hashlib.sha256(json.dumps(rows, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _encode_causal(
    item: TextItem, tok: Any, bos_id: int | None, role: str, offsets: bool = False
) -> tuple[dict | None, str | None]:
    if not item.prompt.strip():
        return None, "empty prompt"
    if item.prompt != item.prompt.rstrip():
        return None, "prompt ends with whitespace (the answer token carries the leading space)"
    enc = tok(item.prompt, add_special_tokens=False, return_offsets_mapping=offsets)
    ids = enc["input_ids"]
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
    out = {
        "ids": pre + ids, "corrupted": corrupted, "answer": word_ids["answer"], "distractor": word_ids["distractor"],
        "end": len(pre) + len(ids) - 1,  # the last real token predicts the answer
    }
    if offsets:
        out.update(text=item.prompt, offsets=[None] * len(pre) + [tuple(o) for o in enc["offset_mapping"]],
                   skip=[True] * len(pre) + [False] * len(ids))
    return out, None


def _encode_text(
    item: TextItem, tok: Any, bos_id: int | None, role: str, max_tokens: int, offsets: bool = False
) -> tuple[dict | None, str | None]:
    """A plain text: BOS policy, cut to ``max_tokens`` (BOS included), end = the last kept token."""
    pre = [bos_id] if bos_id is not None else []
    keep = max_tokens - len(pre)
    enc = tok(item.prompt, add_special_tokens=False, return_offsets_mapping=offsets)
    ids = enc["input_ids"][:keep]
    if len(pre) + len(ids) < 2:
        return None, f"the text is {len(ids)} token for the {role} tokenizer: nothing to predict"
    corrupted = None
    if item.corrupted_prompt:
        corrupted = tok(item.corrupted_prompt, add_special_tokens=False)["input_ids"][:keep]
        if len(corrupted) != len(ids):
            return None, (f"text and corrupted_text tokenise to different lengths for the {role} tokenizer "
                          f"({len(ids)} vs {len(corrupted)} tokens)")
        corrupted = pre + corrupted
    out = {"ids": pre + ids, "corrupted": corrupted, "answer": None, "distractor": None, "end": len(pre) + len(ids) - 1,
           "truncated": len(enc["input_ids"]) > keep}
    if offsets:
        out.update(text=item.prompt, offsets=[None] * len(pre) + [tuple(o) for o in enc["offset_mapping"][:keep]],
                   skip=[True] * len(pre) + [False] * len(ids))
    return out, None


def _encode_masked(item: TextItem, tok: Any, role: str, offsets: bool = False) -> tuple[dict | None, str | None]:
    """Cloze form: ``masked_prompt`` with [MASK] -> the tokenizer's mask token, special tokens on."""
    text = item.masked_prompt
    if not text or text.count(MASK) != 1:
        return None, f"the masked prompt must contain {MASK} exactly once ({text!r})"
    text = text.replace(MASK, tok.mask_token)
    enc = tok(text, add_special_tokens=True, return_offsets_mapping=offsets, return_special_tokens_mask=True)
    ids = enc["input_ids"]
    if ids.count(tok.mask_token_id) != 1:
        return None, f"the {role} tokenizer does not keep {tok.mask_token} as one token in {text!r}"
    end = ids.index(tok.mask_token_id)
    word_ids = {}
    lower = bool(getattr(tok, "do_lower_case", False))
    for what, word in (("answer", item.answer), ("distractor", item.distractor)):
        form = word.lower() if lower else word
        w = tok(form, add_special_tokens=False)["input_ids"]
        if len(w) != 1:
            return None, f"{what} {form!r} is {len(w)} tokens for the {role} tokenizer ({tok.convert_ids_to_tokens(w)})"
        if tok.unk_token_id is not None and w[0] == tok.unk_token_id:
            return None, f"{what} {form!r} is unknown to the {role} tokenizer ({tok.unk_token})"
        word_ids[what] = w[0]
    if word_ids["answer"] == word_ids["distractor"]:
        return None, f"answer and distractor are the same token for the {role} tokenizer"
    corrupted = None
    ctext = item.corrupted_masked_prompt
    if not ctext and item.corrupted_prompt and item.masked_prompt == f"{item.prompt} {MASK}.":
        ctext = f"{item.corrupted_prompt} {MASK}."  # a custom line with the default cloze form
    if ctext:
        if ctext.count(MASK) != 1:
            return None, f"the corrupted masked prompt must contain {MASK} exactly once ({ctext!r})"
        corrupted = tok(ctext.replace(MASK, tok.mask_token), add_special_tokens=True)["input_ids"]
        cend = corrupted.index(tok.mask_token_id) if corrupted.count(tok.mask_token_id) == 1 else -1
        if len(corrupted) != len(ids) or cend != end:
            return None, (
                f"clean and corrupted masked prompts tokenise to different lengths or mask positions for the {role} "
                f"tokenizer ({len(ids)} vs {len(corrupted)} tokens, mask at {end} vs {cend})"
            )
    out = {"ids": ids, "corrupted": corrupted, "answer": word_ids["answer"], "distractor": word_ids["distractor"], "end": end}
    if offsets:
        special = enc["special_tokens_mask"]
        out.update(text=text, offsets=[tuple(o) for o in enc["offset_mapping"]],
                   skip=[bool(sp) or k == end for k, sp in enumerate(special)])
    return out, None


def _fill_missing_corrupted(encs: list[dict], missing: list[int], warnings: list[str] | None) -> None:
    """Custom items without a corrupted prompt borrow the clean tokens of the next item of the same
    length (cyclically), so resample pairs differ and positions still line up."""
    by_len: dict[tuple[int, int], list[int]] = defaultdict(list)
    for k, e in enumerate(encs):
        by_len[(len(e["ids"]), e["end"])].append(k)  # same length and same answer position
    alone = 0
    for k in missing:
        group = by_len[(len(encs[k]["ids"]), encs[k]["end"])]
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
        # causal: the last real token; masked: the [MASK] (clean and corrupted share it, checked)
        end = torch.tensor([e["end"] for e in encs], dtype=torch.long)
        return Batch(tokens, mask, end).to(device)

    groups = n_words = None
    if "groups" in encs[0]:
        groups = torch.full((len(encs), T), -1, dtype=torch.long)
        for r, e in enumerate(encs):
            groups[r, : len(e["groups"])] = torch.tensor(e["groups"], dtype=torch.long)
        n_words = (groups.max(1).values + 1).to(device)
        groups = groups.to(device)

    labels = [[tok.decode([t]) for t in e["ids"]] for e in encs]
    return TokenizedTask(
        clean=pack([e["ids"] for e in encs]),
        corrupted=pack([e["corrupted"] for e in encs]),
        answer_ids=None if encs[0]["answer"] is None else
        torch.tensor([e["answer"] for e in encs], dtype=torch.long, device=device),
        distractor_ids=None if encs[0]["distractor"] is None else
        torch.tensor([e["distractor"] for e in encs], dtype=torch.long, device=device),
        token_labels=labels,
        word_groups=groups,
        n_words=n_words,
    )

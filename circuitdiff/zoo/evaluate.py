"""Held-out evaluation of the zoo: ``python -m circuitdiff.zoo.evaluate [--json] [--dir DIR]``.

For every model and task kind (IOI; sequence for each member kind x frame; QA on the zoo facts):
top-1 accuracy (the answer token is the arg-max) and mean logit difference LD = logit[answer] -
logit[distractor] (docs/method.md §Tasks), on ``split="eval"`` prompts drawn with ``EVAL_SEED``, a seed
the training corpus never uses, so name / object / member combinations are unseen.

- GPT family: next-token logits after ``<|endoftext|>`` + prompt; answer token = " " + answer.
- BERT family: logits at the ``[MASK]`` of ``masked_prompt``; answer token = the lower-cased answer.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..catalogue import TRAINED, ZOO_DIR
from ..tasks import generate
from ..architectures import family_of_model_type
from ..vocabulary import Family
from .tokenizer import answer_token

EVAL_SEED = 12345
N_IOI = 300
N_SEQ = 96  # per members x frame; a multiple of 8 so every start 1..8 is equally represented


def task_items(kind: str, opts: dict, seed: int = EVAL_SEED, n_ioi: int = N_IOI, n_seq: int = N_SEQ):
    if kind == "ioi":
        return generate.ioi_items(n_ioi, seed=seed, split="eval")
    if kind == "sequence":
        return generate.sequence_items(n_seq, seed=seed, split="eval", **opts)
    return generate.qa_items(len(generate.wordlists.ZOO_FACTS), seed=seed, split="eval", facts="zoo")


def task_label(kind: str, opts: dict) -> str:
    if kind == "sequence":
        return f"seq:{opts['members']}/{opts['frame']}"
    return kind


def _single_id(tok, text: str) -> int:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{text!r} is not a single token: {ids}")
    return ids[0]


@torch.no_grad()
def answer_logits(model, tok, fam: Family, items, bos: bool = True, batch: int = 128) -> torch.Tensor:
    """logits at the answer slot for each item: [n_items, vocab]."""
    out = []
    for k in range(0, len(items), batch):
        chunk = items[k : k + batch]
        if fam == "causal":
            rows = [([tok.bos_token_id] if bos else []) + tok(it.prompt, add_special_tokens=False)["input_ids"]
                    for it in chunk]
        else:
            rows = [tok(it.masked_prompt)["input_ids"] for it in chunk]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)  # right padding
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits  # [batch, pos, vocab]
        if fam == "causal":
            pos = mask.sum(1) - 1
        else:
            pos = (ids == tok.mask_token_id).int().argmax(1)
        out.append(logits[torch.arange(len(rows)), pos])
    return torch.cat(out)


def score(model, tok, fam: Family, items, bos: bool = True) -> dict:
    logits = answer_logits(model, tok, fam, items, bos=bos)  # [n, vocab]
    a = torch.tensor([_single_id(tok, answer_token(it.answer, fam)) for it in items])
    d = torch.tensor([_single_id(tok, answer_token(it.distractor, fam)) for it in items])
    idx = torch.arange(len(items))
    ld = logits[idx, a] - logits[idx, d]
    top1 = (logits.argmax(-1) == a).float()
    return {"n": len(items), "top1": round(top1.mean().item(), 4), "logit_diff": round(ld.mean().item(), 4)}


def evaluate_model(model, tok, fam: Family, seed: int = EVAL_SEED, bos: bool = True) -> list[dict]:
    rows = []
    for kind, opts in generate.iter_all_task_kinds():
        items = task_items(kind, opts, seed)
        rows.append({"task": task_label(kind, opts), **score(model, tok, fam, items, bos=bos)})
    return rows


def evaluate_dir(models_dir: Path = ZOO_DIR, names=TRAINED, seed: int = EVAL_SEED) -> dict[str, list[dict]]:
    from .load import load_model_dir

    torch.set_num_threads(2)
    table = {}
    for name in names:
        if not (Path(models_dir) / name / "config.json").exists():
            continue
        model, tok = load_model_dir(Path(models_dir) / name)
        fam = family_of_model_type(model.config.model_type)
        table[name] = evaluate_model(model, tok, fam, seed)
        if fam == "causal":  # how the GPT models do when the engine feeds prompts without BOS
            table[name + " (no BOS)"] = evaluate_model(model, tok, fam, seed, bos=False)
    return table


def markdown_table(table: dict[str, list[dict]]) -> str:
    """One row per model: top-1 / mean LD per task."""
    tasks = [r["task"] for r in next(iter(table.values()))]
    lines = ["| model | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for name, rows in table.items():
        cells = [f"{r['top1']:.2f} / {r['logit_diff']:.2f}" for r in rows]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Cells: top-1 accuracy / mean logit difference (answer − distractor); "
                 f"split=eval, seed {EVAL_SEED}; n = " + ", ".join(f"{r['task']} {r['n']}" for r in rows) + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Held-out evaluation of the zoo models")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--dir", type=Path, default=ZOO_DIR)
    ap.add_argument("--seed", type=int, default=EVAL_SEED)
    args = ap.parse_args(argv)
    table = evaluate_dir(args.dir, seed=args.seed)
    print(json.dumps(table, indent=2) if args.json else markdown_table(table))


if __name__ == "__main__":
    main()

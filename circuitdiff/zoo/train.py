"""Train the zoo from nothing but the repo: ``python -m circuitdiff.zoo.train --out DIR --seed 0``.

Order: corpus -> tokenizers -> gpt-teacher (LM) -> gpt-student (alternate-layer init, then KD) ->
the two control students (the student's shape and batches, random init: next-token loss only, or KD
from the teacher) -> bert-teacher (masked LM) -> distilbert-student (alternate-layer init, then KD on masked positions);
llama-teacher (LM, the GPT tokenizer) -> llama-student (Minitron-Depth: the teacher depth-pruned to
the layers whose removal costs most held-out loss, then KD). Three families, one process each.

Knowledge distillation (Hinton et al. 2015; Sanh et al. 2019): loss = w_kd * T^2 * KL(p_T^teacher ||
p_T^student) + w_lm * CE(labels), with p_T = softmax(logits / T). The T^2 factor keeps the soft-target
gradients on the scale of the hard-label ones.

Determinism: everything runs on CPU, one seeded ``torch.Generator`` draws the data order, the BOS
choice and the masks, and dropout is off. Each family trains in a fresh child process started in the
reproducibility mode (:mod:`circuitdiff.zoo.reproducible`: generic SSE2 kernels for ATen, MKL and
libm, no oneDNN, one thread, deterministic algorithms), so the same seed gives the same bytes on any
x86-64 machine with the same torch build, whatever its vector units or thread settings.
``--no-reproducible`` trains with the machine's fastest kernels (``--threads`` per family): then
bytes repeat only on the same machine. The three families are independent (own seed, own process)
and train side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import (
    BertConfig, BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM, GPT2Config, GPT2LMHeadModel,
    LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase,
)

from . import corpus, reproducible
from .init_student import (
    STUDENT_LAYERS, init_distilbert_student, init_gpt_student, init_llama_student, llama_layer_removal_costs,
    llama_layers_to_keep,
)
from .tokenizer import build_bert_tokenizer, build_gpt_tokenizer

THREADS_PER_FAMILY = 1  # one thread per family process (families run side by side)
FAMILIES = ("gpt", "bert", "llama")  # family i trains with seed + i
N_POSITIONS = 128
# The committed models are trained on CPU (the determinism guarantee is for CPU); other devices are
# only for exploring recipes quickly.
DEVICE = torch.device("cpu")


@dataclass
class Recipe:
    d_model: int = 128
    n_heads: int = 4
    teacher_layers: int = 4
    student_layers: tuple[int, ...] = STUDENT_LAYERS
    batch: int = 64
    teacher_steps: int = 2500  # 1500 left IOI at 0.91 held-out top-1 in the reproducibility mode (issue 23)
    student_steps: int = 600
    bert_teacher_steps: int = 3000
    bert_student_steps: int = 1500
    lr: float = 3e-3
    bert_lr: float = 1e-3  # post-LN BERT diverges / stalls at the GPT rate
    warmup: int = 100
    bert_warmup: int = 300
    weight_decay: float = 0.01
    temperature: float = 2.0
    w_kd: float = 1.0
    w_lm: float = 1.0
    no_bos_share: float = 0.2  # GPT rows without a leading <|endoftext|>, so prompts work without BOS too
    mlm_prob: float = 0.15
    answer_mask_prob: float = 0.5  # BERT: the task answer (cloze slot) is masked this often
    llama_kv_heads: int = 2  # grouped-query attention: 2 query heads share each key/value head
    llama_teacher_steps: int = 1500
    llama_student_steps: int = 600
    control_init_seed_offset: int = 1000  # both controls start from the same random weights
    corpus: corpus.CorpusSize = field(default_factory=corpus.CorpusSize)


# --------------------------------------------------------------------------- shared helpers
def _lr_at(step: int, total: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))  # cosine to 10%


def _optimizer(model: torch.nn.Module, r: Recipe, lr: float) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": r.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.98),
    )


def _batches(n_docs: int, steps: int, batch: int, gen: torch.Generator):
    """Indices of each step's documents: epochs of seeded permutations."""
    perm, pos = torch.randperm(n_docs, generator=gen), 0
    for _ in range(steps):
        if pos + batch > n_docs:
            perm, pos = torch.randperm(n_docs, generator=gen), 0
        yield perm[pos : pos + batch]
        pos += batch


def _pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # ids: [batch, pos]
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """T^2 * KL(teacher_T || student_T), mean over rows; logits: [rows, vocab]."""
    log_p_s = F.log_softmax(student_logits / T, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / T, dim=-1)
    return (T * T) * F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")


def _log(name: str, step: int, total: int, loss: float, t0: float) -> None:
    if step % 100 == 0 or step == total - 1:
        print(f"  {name} step {step:5d}/{total}  loss {loss:.4f}  {time.time() - t0:6.1f}s", flush=True)


# --------------------------------------------------------------------------- GPT family
def gpt_rows(docs: list[corpus.Doc], tok: PreTrainedTokenizerBase, r: Recipe, gen: torch.Generator):
    ids = tok([d.text for d in docs], add_special_tokens=False)["input_ids"]
    with_bos = torch.rand(len(ids), generator=gen) >= r.no_bos_share
    return [([tok.bos_token_id] if b else []) + row for row, b in zip(ids, with_bos.tolist())]


def _gpt_batch(rows, idx, pad_id):
    ids, mask = _pad([rows[i] for i in idx.tolist()], pad_id)
    labels = ids.masked_fill(mask == 0, -100)  # HF shifts labels inside the model
    return ids.to(DEVICE), mask.to(DEVICE), labels.to(DEVICE)


def gpt_config(tok, r: Recipe, n_layer: int) -> GPT2Config:
    return GPT2Config(
        vocab_size=len(tok), n_positions=N_POSITIONS, n_embd=r.d_model, n_layer=n_layer, n_head=r.n_heads,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )


def llama_config(tok, r: Recipe, n_layer: int) -> LlamaConfig:
    """Llama layout at the zoo's size: RoPE, RMSNorm, SwiGLU MLP (width 4·d_model), GQA, no biases."""
    return LlamaConfig(
        vocab_size=len(tok), hidden_size=r.d_model, intermediate_size=4 * r.d_model, num_hidden_layers=n_layer,
        num_attention_heads=r.n_heads, num_key_value_heads=r.llama_kv_heads, max_position_embeddings=N_POSITIONS,
        rms_norm_eps=1e-5, attention_dropout=0.0, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )


def train_causal_teacher(model, name: str, rows, tok, r: Recipe, gen: torch.Generator, steps: int):
    """Next-token cross-entropy on every token (GPT and Llama teachers)."""
    model.to(DEVICE)
    opt, t0 = _optimizer(model, r, r.lr), time.time()
    model.train()
    for step, idx in enumerate(_batches(len(rows), steps, r.batch, gen)):
        ids, mask, labels = _gpt_batch(rows, idx, tok.pad_token_id)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps, r.lr, r.warmup)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        _log(name, step, steps, loss.item(), t0)
    return model.eval()


def train_gpt_teacher(rows, tok, r: Recipe, gen: torch.Generator) -> GPT2LMHeadModel:
    model = GPT2LMHeadModel(gpt_config(tok, r, r.teacher_layers))
    return train_causal_teacher(model, "gpt-teacher", rows, tok, r, gen, r.teacher_steps)


def distil_gpt_student(teacher, rows, tok, r: Recipe, gen: torch.Generator) -> GPT2LMHeadModel:
    student = GPT2LMHeadModel(gpt_config(tok, r, len(r.student_layers)))
    init_gpt_student(teacher, student, r.student_layers)
    return distil_causal_student(teacher, student, "gpt-student", rows, tok, r, gen, r.student_steps)


def gpt_control_init(tok, r: Recipe, fam_seed: int) -> GPT2LMHeadModel:
    """The student's shape with seeded random weights: the start of both control students."""
    torch.manual_seed(fam_seed + r.control_init_seed_offset)
    return GPT2LMHeadModel(gpt_config(tok, r, len(r.student_layers)))


def train_gpt_control_scratch(rows, tok, r: Recipe, gen: torch.Generator, fam_seed: int) -> GPT2LMHeadModel:
    """Control: the student's shape and budget, random init, next-token loss only (no teacher anywhere)."""
    model = gpt_control_init(tok, r, fam_seed)
    return train_causal_teacher(model, "gpt-control-scratch", rows, tok, r, gen, r.student_steps)


def distil_gpt_control_kd(teacher, rows, tok, r: Recipe, gen: torch.Generator, fam_seed: int) -> GPT2LMHeadModel:
    """Control: the student's recipe (KD + LM, same budget) from random init instead of teacher layers."""
    student = gpt_control_init(tok, r, fam_seed)
    return distil_causal_student(teacher, student, "gpt-control-kd", rows, tok, r, gen, r.student_steps)


def distil_causal_student(teacher, student, name: str, rows, tok, r: Recipe, gen: torch.Generator, steps: int):
    """KD on every non-pad position plus the LM loss (GPT and Llama students)."""
    student.to(DEVICE)
    opt, t0 = _optimizer(student, r, r.lr), time.time()
    student.train()
    for step, idx in enumerate(_batches(len(rows), steps, r.batch, gen)):
        ids, mask, labels = _gpt_batch(rows, idx, tok.pad_token_id)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps, r.lr, r.warmup)
        with torch.no_grad():
            t_logits = teacher(input_ids=ids, attention_mask=mask).logits  # [batch, pos, vocab]
        out = student(input_ids=ids, attention_mask=mask, labels=labels)
        keep = mask[:, 1:].bool()  # positions that predict a real next token
        kd = kd_loss(out.logits[:, :-1][keep], t_logits[:, :-1][keep], r.temperature)
        loss = r.w_kd * kd + r.w_lm * out.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        _log(name, step, steps, loss.item(), t0)
    return student.eval()


# --------------------------------------------------------------------------- Llama family
def train_llama_teacher(rows, tok, r: Recipe, gen: torch.Generator) -> LlamaForCausalLM:
    model = LlamaForCausalLM(llama_config(tok, r, r.teacher_layers))
    return train_causal_teacher(model, "llama-teacher", rows, tok, r, gen, r.llama_teacher_steps)


def prune_llama_teacher(teacher, tok, r: Recipe, seed: int) -> tuple[tuple[int, ...], list[float]]:
    """Minitron-Depth: rank the teacher's layers by the held-out loss their removal costs."""
    docs = corpus.heldout_docs(seed)
    rows = gpt_rows(docs, tok, r, torch.Generator().manual_seed(seed + corpus.HELDOUT_SEED_OFFSET))
    ids, mask, _ = _gpt_batch(rows, torch.arange(len(rows)), tok.pad_token_id)
    costs = llama_layer_removal_costs(teacher, ids, mask)
    return llama_layers_to_keep(costs, len(r.student_layers)), costs


def distil_llama_student(teacher, keep: tuple[int, ...], rows, tok, r: Recipe, gen) -> LlamaForCausalLM:
    student = LlamaForCausalLM(llama_config(tok, r, len(keep)))
    init_llama_student(teacher, student, keep)
    return distil_causal_student(teacher, student, "llama-student", rows, tok, r, gen, r.llama_student_steps)


# --------------------------------------------------------------------------- BERT family
def bert_rows(docs: list[corpus.Doc], tok) -> tuple[list[list[int]], list[int]]:
    """Token ids with [CLS]/[SEP], and the answer position of task sentences (-1 for filler)."""
    ids = tok([d.text for d in docs])["input_ids"]
    # "... to Mary . [SEP]": the answer is the third token from the end
    answer_pos = [len(row) - 3 if d.has_answer else -1 for row, d in zip(ids, docs)]
    return ids, answer_pos


def _mlm_batch(rows, answer_pos, idx, tok, r: Recipe, gen: torch.Generator):
    ids, attn = _pad([rows[i] for i in idx.tolist()], tok.pad_token_id)
    special = (ids == tok.cls_token_id) | (ids == tok.sep_token_id) | (attn == 0)
    apos = torch.tensor([answer_pos[i] for i in idx.tolist()])
    force = (apos >= 0) & (torch.rand(len(apos), generator=gen) < r.answer_mask_prob)
    # Cloze rows mask only the answer, exactly like the task's masked_prompt: masking a name of the
    # context as well would make the IOI answer ambiguous. The other rows get standard 15% masking.
    chosen = (torch.rand(ids.shape, generator=gen) < r.mlm_prob) & ~special & ~force[:, None]
    rows_forced = torch.nonzero(force).squeeze(1)
    chosen[rows_forced, apos[rows_forced]] = True
    labels = ids.masked_fill(~chosen, -100)
    # 80 / 10 / 10 for random masks (BERT); the forced answer slot is always [MASK], as in the cloze
    u = torch.rand(ids.shape, generator=gen)
    rand_ids = torch.randint(len(tok), ids.shape, generator=gen)
    inputs = ids.clone()
    inputs[chosen & (u < 0.8)] = tok.mask_token_id
    swap = chosen & (u >= 0.8) & (u < 0.9)
    inputs[swap] = rand_ids[swap]
    inputs[rows_forced, apos[rows_forced]] = tok.mask_token_id
    return inputs.to(DEVICE), attn.to(DEVICE), labels.to(DEVICE)


def bert_config(tok, r: Recipe) -> BertConfig:
    return BertConfig(
        vocab_size=len(tok), hidden_size=r.d_model, num_hidden_layers=r.teacher_layers,
        num_attention_heads=r.n_heads, intermediate_size=4 * r.d_model, max_position_embeddings=N_POSITIONS,
        type_vocab_size=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )


def distilbert_config(tok, r: Recipe) -> DistilBertConfig:
    return DistilBertConfig(
        vocab_size=len(tok), dim=r.d_model, n_layers=len(r.student_layers), n_heads=r.n_heads,
        hidden_dim=4 * r.d_model, max_position_embeddings=N_POSITIONS, dropout=0.0, attention_dropout=0.0,
        activation="gelu", pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )


def train_bert_teacher(rows, answer_pos, tok, r: Recipe, gen: torch.Generator) -> BertForMaskedLM:
    model = BertForMaskedLM(bert_config(tok, r)).to(DEVICE)
    opt, t0 = _optimizer(model, r, r.bert_lr), time.time()
    model.train()
    for step, idx in enumerate(_batches(len(rows), r.bert_teacher_steps, r.batch, gen)):
        inputs, attn, labels = _mlm_batch(rows, answer_pos, idx, tok, r, gen)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, r.bert_teacher_steps, r.bert_lr, r.bert_warmup)
        loss = model(input_ids=inputs, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        _log("bert-teacher", step, r.bert_teacher_steps, loss.item(), t0)
    return model.eval()


def distil_bert_student(teacher, rows, answer_pos, tok, r: Recipe, gen) -> DistilBertForMaskedLM:
    student = DistilBertForMaskedLM(distilbert_config(tok, r))
    init_distilbert_student(teacher, student, r.student_layers)
    student.to(DEVICE)
    opt, t0 = _optimizer(student, r, r.bert_lr), time.time()
    student.train()
    for step, idx in enumerate(_batches(len(rows), r.bert_student_steps, r.batch, gen)):
        inputs, attn, labels = _mlm_batch(rows, answer_pos, idx, tok, r, gen)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, r.bert_student_steps, r.bert_lr, r.bert_warmup)
        with torch.no_grad():
            t_logits = teacher(input_ids=inputs, attention_mask=attn).logits  # [batch, pos, vocab]
        out = student(input_ids=inputs, attention_mask=attn, labels=labels)
        masked = labels != -100  # distil on the masked positions, where the MLM objective lives
        kd = kd_loss(out.logits[masked], t_logits[masked], r.temperature)
        loss = r.w_kd * kd + r.w_lm * out.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        _log("distilbert-student", step, r.bert_student_steps, loss.item(), t0)
    return student.eval()


# --------------------------------------------------------------------------- driver
def _save(model, tok, out: Path, name: str, recipe: dict) -> None:
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    (d / "training.json").write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")


def recipe_from_dict(d: dict) -> Recipe:
    d = dict(d)
    d["student_layers"] = tuple(d["student_layers"])
    d["corpus"] = corpus.CorpusSize(**d["corpus"])
    return Recipe(**d)


def train_family(family: str, out: Path, seed: int, r: Recipe, *, reproducible_mode: bool = True,
                 threads: int = THREADS_PER_FAMILY) -> dict[str, float]:
    """Tokenizer, teacher and student of one family ('gpt' or 'bert'), in this process.

    In the reproducibility mode this process must have been started with
    :func:`reproducible.environment` (``train_all`` does that); otherwise ``threads`` threads with
    the machine's own kernels (one thread per family by default: two OpenMP threads per process
    oversubscribe shared cores).
    """
    if reproducible_mode:
        reproducible.apply()
    else:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
    fam_seed = seed + FAMILIES.index(family)
    torch.manual_seed(fam_seed)
    gen = torch.Generator().manual_seed(fam_seed)
    timings: dict[str, float] = {}
    t_start, cpu_start = time.time(), time.process_time()
    docs = corpus.build_corpus(seed, r.corpus)
    texts = corpus.tokenizer_texts(docs)
    base = {"seed": seed, "recipe": asdict(r), "n_docs": len(docs),
            "reproducible": reproducible_mode, "kernels": reproducible.settings()}
    student_meta = {"role": "student", "init_from_teacher_layers": list(r.student_layers),
                    "temperature": r.temperature, "w_kd": r.w_kd, "w_lm": r.w_lm}
    if family == "gpt":
        tok = build_gpt_tokenizer(texts)
        rows = gpt_rows(docs, tok, r, gen)
        t0, c0 = time.time(), time.process_time()
        teacher = train_gpt_teacher(rows, tok, r, gen)
        timings["gpt-teacher"], timings["gpt-teacher-cpu"] = time.time() - t0, time.process_time() - c0
        _save(teacher, tok, out, "gpt-teacher", {**base, "role": "teacher", "steps": r.teacher_steps})
        student_batches = gen.get_state()  # the controls see exactly the student's batches
        t0, c0 = time.time(), time.process_time()
        student = distil_gpt_student(teacher, rows, tok, r, gen)
        timings["gpt-student"], timings["gpt-student-cpu"] = time.time() - t0, time.process_time() - c0
        _save(student, tok, out, "gpt-student", {**base, **student_meta, "steps": r.student_steps})
        control_meta = {"role": "control", "init": "random", "init_seed": fam_seed + r.control_init_seed_offset,
                        "batches": "the same as gpt-student's", "steps": r.student_steps}
        t0, c0 = time.time(), time.process_time()
        scratch = train_gpt_control_scratch(rows, tok, r, torch.Generator().set_state(student_batches), fam_seed)
        timings["gpt-control-scratch"] = time.time() - t0
        timings["gpt-control-scratch-cpu"] = time.process_time() - c0
        _save(scratch, tok, out, "gpt-control-scratch", {**base, **control_meta, "objective": "next-token loss only"})
        t0, c0 = time.time(), time.process_time()
        kd = distil_gpt_control_kd(teacher, rows, tok, r, torch.Generator().set_state(student_batches), fam_seed)
        timings["gpt-control-kd"], timings["gpt-control-kd-cpu"] = time.time() - t0, time.process_time() - c0
        _save(kd, tok, out, "gpt-control-kd", {**base, **control_meta, "distilled_from": "gpt-teacher",
                                               "temperature": r.temperature, "w_kd": r.w_kd, "w_lm": r.w_lm,
                                               "objective": "the student's: KD from gpt-teacher + LM loss"})
    elif family == "llama":
        tok = build_gpt_tokenizer(texts)  # the GPT tokenizer (same bytes): cross-family pairs share words
        rows = gpt_rows(docs, tok, r, gen)
        t0, c0 = time.time(), time.process_time()
        teacher = train_llama_teacher(rows, tok, r, gen)
        timings["llama-teacher"], timings["llama-teacher-cpu"] = time.time() - t0, time.process_time() - c0
        _save(teacher, tok, out, "llama-teacher", {**base, "role": "teacher", "steps": r.llama_teacher_steps})
        t0, c0 = time.time(), time.process_time()
        keep, costs = prune_llama_teacher(teacher, tok, r, seed)
        student = distil_llama_student(teacher, keep, rows, tok, r, gen)
        timings["llama-student"], timings["llama-student-cpu"] = time.time() - t0, time.process_time() - c0
        pruning = {"rule": "keep the layers whose removal raises held-out LM loss most (Minitron-Depth)",
                   "heldout_docs": len(corpus.heldout_docs(seed)),
                   "removal_cost_per_layer": [round(c, 6) for c in costs]}
        _save(student, tok, out, "llama-student", {**base, **student_meta, "init_from_teacher_layers": list(keep),
                                                   "depth_pruning": pruning, "steps": r.llama_student_steps})
    else:
        tok = build_bert_tokenizer(texts)
        rows, answer_pos = bert_rows(docs, tok)
        t0, c0 = time.time(), time.process_time()
        teacher = train_bert_teacher(rows, answer_pos, tok, r, gen)
        timings["bert-teacher"], timings["bert-teacher-cpu"] = time.time() - t0, time.process_time() - c0
        _save(teacher, tok, out, "bert-teacher", {**base, "role": "teacher", "steps": r.bert_teacher_steps})
        t0, c0 = time.time(), time.process_time()
        student = distil_bert_student(teacher, rows, answer_pos, tok, r, gen)
        timings["distilbert-student"], timings["distilbert-student-cpu"] = time.time() - t0, time.process_time() - c0
        _save(student, tok, out, "distilbert-student", {**base, **student_meta, "steps": r.bert_student_steps})
    timings[f"{family}-total"] = time.time() - t_start
    timings[f"{family}-cpu"] = time.process_time() - cpu_start  # CPU seconds, unaffected by sharing
    return timings


def _run_child(family: str, out: Path, seed: int, r: Recipe, reproducible_mode: bool, threads: int,
               env: dict[str, str] | None) -> dict[str, float]:
    """One family in a fresh interpreter: the mode's environment must be there before torch starts."""
    out.mkdir(parents=True, exist_ok=True)
    result = out / f".timings-{family}.json"
    cmd = [sys.executable, "-m", "circuitdiff.zoo.train", "--out", str(out), "--seed", str(seed),
           "--child", family, "--recipe-json", json.dumps(asdict(r)), "--threads", str(threads),
           "--timings-file", str(result)]
    if not reproducible_mode:
        cmd.append("--no-reproducible")
    # env None: the children inherit this process's environment (reproducible.environment reads it)
    proc = subprocess.run(cmd, env=reproducible.environment(env) if reproducible_mode else env)
    if proc.returncode:
        raise RuntimeError(f"training the {family} family failed (exit {proc.returncode})")
    timings = json.loads(result.read_text())
    result.unlink()
    return timings


def train_all(out: Path, seed: int = 0, r: Recipe | None = None, only: str = "all", *,
              reproducible_mode: bool = True, threads: int = THREADS_PER_FAMILY,
              env: dict[str, str] | None = None, jobs: int | None = None) -> dict[str, float]:
    """Train the families (in parallel, one child process each; at most ``jobs`` at once, default all).
    ``env``: the environment the children start from (default: this process's); the reproducibility
    mode overrides what it must. The bytes do not depend on ``jobs``."""
    r = r or Recipe()
    families = list(FAMILIES) if only == "all" else [only]
    t_start = time.time()
    with ThreadPoolExecutor(max_workers=jobs or len(families)) as pool:
        futures = [pool.submit(_run_child, f, out, seed, r, reproducible_mode, threads, env) for f in families]
        timings = {k: v for fut in futures for k, v in fut.result().items()}
    timings["total"] = time.time() - t_start
    print("wall time (s): " + json.dumps({k: round(v, 1) for k, v in timings.items()}), flush=True)
    return timings


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["all", *FAMILIES], default="all")
    ap.add_argument("--teacher-steps", type=int, default=None)
    ap.add_argument("--student-steps", type=int, default=None)
    ap.add_argument("--no-reproducible", dest="reproducible", action="store_false",
                    help="the machine's fastest kernels: same bytes only on the same machine")
    ap.add_argument("--threads", type=int, default=THREADS_PER_FAMILY,
                    help="threads per family with --no-reproducible (the mode always uses one)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="family processes at once (default: all three; 1 keeps one core free)")
    ap.add_argument("--no-eval", action="store_true", help="skip the evaluation table at the end")
    ap.add_argument("--child", choices=FAMILIES, help=argparse.SUPPRESS)  # internal: one family
    ap.add_argument("--recipe-json", help=argparse.SUPPRESS)
    ap.add_argument("--timings-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.reproducible and args.threads != 1:
        ap.error("the reproducible mode trains on one thread per family; add --no-reproducible for --threads")
    if args.child:
        r = recipe_from_dict(json.loads(args.recipe_json))
        timings = train_family(args.child, args.out, args.seed, r, reproducible_mode=args.reproducible,
                               threads=args.threads)
        args.timings_file.write_text(json.dumps(timings))
        return
    r = Recipe()
    if args.teacher_steps:
        r.teacher_steps = args.teacher_steps
    if args.student_steps:
        r.student_steps = args.student_steps
    timings = train_all(args.out, args.seed, r, args.only, reproducible_mode=args.reproducible,
                        threads=args.threads, jobs=args.jobs)
    (args.out / "timings.json").write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}) + "\n")
    if not args.no_eval:
        from .evaluate import evaluate_dir, markdown_table

        print(markdown_table(evaluate_dir(args.out)))


if __name__ == "__main__":
    main()

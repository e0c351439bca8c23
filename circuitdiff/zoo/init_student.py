"""Student initialisation from alternate teacher layers (the DistilBERT / DistilGPT2 recipe).

GPT: the student is a shallower ``GPT2LMHeadModel`` of the same width; its block i copies teacher
block ``layers[i]``, and embeddings, final LayerNorm and (tied) unembedding are copied as they are.

Llama (Minitron-Depth, Muralidharan et al. 2024 / Sreenivas et al. 2024): the teacher is
depth-pruned by :func:`llama_layers_to_keep` (drop the layers whose removal raises the held-out
loss least), and the student is the teacher with only the kept layers; then it is distilled.

DistilBERT: the parameter layouts differ, so each tensor is mapped by name. DistilBERT has no
token-type embeddings; BERT adds ``token_type_embeddings[0]`` to every position (all our inputs are
one segment), so it is folded into the position embeddings, which keeps the embedding output exact.
"""

from __future__ import annotations

import torch
from transformers import BertForMaskedLM, DistilBertForMaskedLM, GPT2LMHeadModel, LlamaForCausalLM

STUDENT_LAYERS = (0, 2)


@torch.no_grad()
def init_gpt_student(teacher: GPT2LMHeadModel, student: GPT2LMHeadModel, layers=STUDENT_LAYERS) -> None:
    t, s = teacher.transformer, student.transformer
    s.wte.weight.copy_(t.wte.weight)
    s.wpe.weight.copy_(t.wpe.weight)
    s.ln_f.load_state_dict(t.ln_f.state_dict())
    for i, j in enumerate(layers):
        s.h[i].load_state_dict(t.h[j].state_dict())
    student.tie_weights()


def _copy_linear(dst: torch.nn.Linear, src: torch.nn.Linear) -> None:
    dst.weight.copy_(src.weight)
    dst.bias.copy_(src.bias)


def _copy_ln(dst: torch.nn.LayerNorm, src: torch.nn.LayerNorm) -> None:
    dst.weight.copy_(src.weight)
    dst.bias.copy_(src.bias)


@torch.no_grad()
def init_distilbert_student(
    teacher: BertForMaskedLM, student: DistilBertForMaskedLM, layers=STUDENT_LAYERS
) -> None:
    te, se = teacher.bert.embeddings, student.distilbert.embeddings
    se.word_embeddings.weight.copy_(te.word_embeddings.weight)
    se.position_embeddings.weight.copy_(te.position_embeddings.weight + te.token_type_embeddings.weight[0])
    _copy_ln(se.LayerNorm, te.LayerNorm)
    for i, j in enumerate(layers):
        tl, sl = teacher.bert.encoder.layer[j], student.distilbert.transformer.layer[i]
        _copy_linear(sl.attention.q_lin, tl.attention.self.query)
        _copy_linear(sl.attention.k_lin, tl.attention.self.key)
        _copy_linear(sl.attention.v_lin, tl.attention.self.value)
        _copy_linear(sl.attention.out_lin, tl.attention.output.dense)
        _copy_ln(sl.sa_layer_norm, tl.attention.output.LayerNorm)
        _copy_linear(sl.ffn.lin1, tl.intermediate.dense)
        _copy_linear(sl.ffn.lin2, tl.output.dense)
        _copy_ln(sl.output_layer_norm, tl.output.LayerNorm)
    head = teacher.cls.predictions
    _copy_linear(student.vocab_transform, head.transform.dense)
    _copy_ln(student.vocab_layer_norm, head.transform.LayerNorm)
    student.vocab_projector.weight.copy_(head.decoder.weight)
    student.vocab_projector.bias.copy_(head.bias)


@torch.no_grad()
def llama_layer_removal_costs(teacher: LlamaForCausalLM, ids: torch.Tensor, mask: torch.Tensor) -> list[float]:
    """Held-out LM loss of the teacher with layer l removed, minus the full teacher's, for every l.

    ids, mask: [batch, pos] held-out documents (right-padded)."""
    labels = ids.masked_fill(mask == 0, -100)
    layers, n = teacher.model.layers, teacher.config.num_hidden_layers

    def loss_with(keep: list[int]) -> float:
        teacher.model.layers = torch.nn.ModuleList([layers[j] for j in keep])
        teacher.config.num_hidden_layers = len(keep)
        try:
            return teacher(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss.item()
        finally:
            teacher.model.layers, teacher.config.num_hidden_layers = layers, n

    full = loss_with(list(range(n)))
    return [loss_with([j for j in range(n) if j != l]) - full for l in range(n)]


def llama_layers_to_keep(costs: list[float], n_keep: int) -> tuple[int, ...]:
    """The Minitron-Depth rule: keep the ``n_keep`` layers whose removal costs most (ties: lower index)."""
    ranked = sorted(range(len(costs)), key=lambda l: (-costs[l], l))
    return tuple(sorted(ranked[:n_keep]))


@torch.no_grad()
def init_llama_student(teacher: LlamaForCausalLM, student: LlamaForCausalLM, layers: tuple[int, ...]) -> None:
    t, s = teacher.model, student.model
    s.embed_tokens.weight.copy_(t.embed_tokens.weight)
    s.norm.load_state_dict(t.norm.state_dict())
    for i, j in enumerate(layers):
        s.layers[i].load_state_dict(t.layers[j].state_dict())
    student.tie_weights()

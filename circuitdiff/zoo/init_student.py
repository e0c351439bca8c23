"""Student initialisation from alternate teacher layers (the DistilBERT / DistilGPT2 recipe).

GPT: the student is a shallower ``GPT2LMHeadModel`` of the same width; its block i copies teacher
block ``layers[i]``, and embeddings, final LayerNorm and (tied) unembedding are copied as they are.

DistilBERT: the parameter layouts differ, so each tensor is mapped by name. DistilBERT has no
token-type embeddings; BERT adds ``token_type_embeddings[0]`` to every position (all our inputs are
one segment), so it is folded into the position embeddings, which keeps the embedding output exact.
"""

from __future__ import annotations

import torch
from transformers import BertForMaskedLM, DistilBertForMaskedLM, GPT2LMHeadModel

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

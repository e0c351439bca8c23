"""Attention patterns and MLP outputs pooled to shared words, for pairs that do not share tokens.

A cross-tokenizer or cross-architecture pair (circuitdiff.tasks.word_alignment) has, per prompt, W
shared words and for each model a map token -> word (``view.word_groups``, -1 for tokens outside
every shared word: BOS, [CLS], [SEP], [MASK], padding, words only one model reads). Per prompt and
head, with A [T, T] the token pattern:

    P[w, v]   = mean over query tokens q of word w of  sum over key tokens k of word v of A[q, k]
    P[END, v] = sum over key tokens k of word v of A[end, k]

where ``end`` is the position whose logits are read (the last prompt token of a decoder, the
[MASK] of a masked LM): both models predict the answer there, so their END rows are the
"word-aligned end-query row". Summing over key tokens keeps the attention mass a word receives
whatever number of pieces the tokenizer cut it into; averaging over query tokens gives each word
one row. Attention to tokens outside the shared words is left out, so rows need not sum to 1.

Patterns are [head, W_max + 1, W_max + 1]: rows 0..W_max-1 are words, row W_max is END (the last
key column is all zeros, only there to keep the matrix square); each row is averaged over the
prompts that have it (prompts of one task may differ in length). MLP rows are
the mean MLP output over each shared word's tokens plus the END position's, per prompt, in the
same order for both models, so row i of the teacher and row i of the student describe the same
word of the same prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..analysis.confidence import ResampleStats
from ..models.adapter import ModelAdapter
from .clean import prompt_blocks


@dataclass
class WordStats:
    """patterns: per layer [head, W_max + 1, W_max + 1] (the END key column is 0); mlp_rows: per
    layer [rows, d_model], rows = sum over prompts of (W_i + 1); block_patterns / block_counts /
    row_block: the same per prompt block, as circuitdiff.scan.clean.CleanStats keeps them."""

    patterns: list[torch.Tensor]
    mlp_rows: list[torch.Tensor]
    block_patterns: list[torch.Tensor]
    block_counts: torch.Tensor
    row_block: torch.Tensor

    def resample_stats(self) -> ResampleStats:
        pats = torch.stack(self.block_patterns, dim=1)  # [B, L, H, R, R]
        return ResampleStats(pats.flatten(1, 2).double().numpy(), self.block_counts.double().numpy(),
                             [r.double().numpy() for r in self.mlp_rows], self.row_block.numpy())


def pooling(groups: torch.Tensor, w_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """groups [b, T] (word index or -1) -> (key pooling K [b, T, W] one-hot,
    query pooling Q [b, W, T] = K^T with each word row divided by its token count)."""
    valid = groups >= 0
    K = torch.zeros(*groups.shape, w_max, dtype=torch.float64, device=groups.device)
    K[valid.nonzero(as_tuple=True) + (groups[valid],)] = 1.0
    counts = K.sum(1)  # [b, W]
    Q = K.transpose(1, 2) / counts.clamp(min=1)[:, :, None]
    return K, Q


def pool_patterns(pattern: torch.Tensor, groups: torch.Tensor, end_pos: torch.Tensor, w_max: int) -> torch.Tensor:
    """pattern [b, head, T, T] -> [b, head, W_max + 1, W_max] (words, then END)."""
    K, Q = pooling(groups, w_max)
    A = pattern.double()
    words = torch.einsum("bwq,bhqk,bkv->bhwv", Q, A, K)
    rows = torch.arange(A.shape[0], device=A.device)
    end = torch.einsum("bhk,bkv->bhv", A[rows, :, end_pos], K)  # [b, head, W]
    return torch.cat([words, end[:, :, None]], dim=2)


def pool_rows(mlp_out: torch.Tensor, groups: torch.Tensor, end_pos: torch.Tensor, n_words: torch.Tensor) -> torch.Tensor:
    """mlp_out [b, T, d] -> [sum_i (n_words_i + 1), d]: per prompt its word means, then END."""
    w_max = int(n_words.max())
    K, Q = pooling(groups, w_max)
    words = torch.einsum("bwt,btd->bwd", Q, mlp_out.double())  # [b, W, d]
    rows = torch.arange(mlp_out.shape[0], device=mlp_out.device)
    end = mlp_out.double()[rows, end_pos]  # [b, d]
    out = [torch.cat([words[i, : int(n_words[i])], end[i : i + 1]]) for i in range(mlp_out.shape[0])]
    return torch.cat(out)


def word_pass(adapter: ModelAdapter, view, w_max: int, batch_size: int = 32) -> WordStats:
    """One clean pass of ``view`` (a word-aligned TokenizedTask) pooled to words."""
    n = view.n
    R = w_max + 1
    blocks = prompt_blocks(n)
    n_blocks = int(blocks.max()) + 1
    block_sum = [torch.zeros(n_blocks, adapter.n_heads, R, w_max, dtype=torch.float64) for _ in range(adapter.n_layers)]
    block_count = torch.zeros(n_blocks, R, dtype=torch.float64)
    mlp_rows: list[list[torch.Tensor]] = [[] for _ in range(adapter.n_layers)]
    row_block = []
    for s in range(0, n, batch_size):
        b = view.clean.slice(s, s + batch_size)
        bb = blocks[s : s + batch_size]
        groups = view.word_groups[s : s + batch_size].to(adapter.device)
        nw = view.n_words[s : s + batch_size].to(adapter.device)
        end = b.end_pos.to(adapter.device)
        out = adapter.run(b, token_ids=b.tokens[:, :1], capture=("pattern", "mlp_out"))
        has_row = torch.cat([torch.arange(w_max, device=nw.device)[None, :] < nw[:, None],
                             torch.ones(len(nw), 1, dtype=torch.bool, device=nw.device)], dim=1)  # [b, R]
        block_count.index_add_(0, bb, has_row.double().cpu())
        row_block.append(torch.repeat_interleave(bb, (nw + 1).cpu()))
        for layer in range(adapter.n_layers):
            block_sum[layer].index_add_(0, bb, pool_patterns(out.captures["pattern"][layer], groups, end, w_max).cpu())
            mlp_rows[layer].append(pool_rows(out.captures["mlp_out"][layer], groups, end, nw).float().cpu())
    denom = block_count.sum(0).clamp(min=1)[None, :, None]
    # A zero key column for END makes the matrices square ([head, R, R]) like token patterns;
    # it adds nothing to any row norm or dot product, so row cosines are unchanged.
    square = lambda t: torch.nn.functional.pad(t, (0, 1)).float()  # noqa: E731
    return WordStats([square(t.sum(0) / denom) for t in block_sum], [torch.cat(r) for r in mlp_rows],
                     [square(t) for t in block_sum], block_count.float(), torch.cat(row_block))

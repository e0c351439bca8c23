"""The clean pass: what a model does on the task's prompts with nothing ablated (docs/method.md §Method 2–3).

One pass over the clean prompts collects, per model, what the similarity stage compares: the mean
attention pattern of every head and the MLP outputs of every layer, plus each prompt's top-1
correctness. Same batches and BOS policy as every other pass of the job (docs/authors-code.md §7 pitfall 1).

Patterns are also kept as sums per block of prompts (one prompt per block up to
``MAX_BLOCKS`` prompts), so that match confidences can resample prompts without another pass
(circuitdiff.analysis.confidence).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..analysis.confidence import MAX_BLOCKS, ResampleStats
from ..models.adapter import ModelAdapter
from ..tasks.dataset import TokenizedTask

BATCH_SIZE = 32


def prompt_blocks(n: int) -> torch.Tensor:
    """[n] block of each prompt: the prompt itself up to MAX_BLOCKS prompts, else consecutive runs."""
    n_blocks = min(n, MAX_BLOCKS)
    return torch.arange(n) * n_blocks // n


@dataclass
class CleanStats:
    """patterns: per layer [head, T, T], each query row averaged over the prompts that have a real
    token there; mlp_rows: per layer [n_tokens, d_model], the MLP output at every real token;
    correct: [n] bool, top-1 prediction == answer ([0] for plain texts); block_patterns: per layer [B, head, T, T] sums of
    the patterns' real query rows per prompt block; block_counts: [B, T] real query rows per block;
    row_block: [n_tokens] the block of each MLP row."""

    patterns: list[torch.Tensor]
    mlp_rows: list[torch.Tensor]
    correct: torch.Tensor
    block_patterns: list[torch.Tensor]
    block_counts: torch.Tensor
    row_block: torch.Tensor

    def resample_stats(self) -> ResampleStats:
        """The numpy statistics circuitdiff.analysis.confidence resamples."""
        pats = torch.stack(self.block_patterns, dim=1)  # [B, L, H, T, T]
        return ResampleStats(
            block_patterns=pats.flatten(1, 2).double().numpy(),
            block_counts=self.block_counts.double().numpy(),
            mlp_rows=[r.double().numpy() for r in self.mlp_rows],
            row_block=self.row_block.numpy(),
        )


@torch.no_grad()
def clean_pass(adapter: ModelAdapter, view: TokenizedTask, batch_size: int = BATCH_SIZE) -> CleanStats:
    n, T = view.clean.tokens.shape
    blocks = prompt_blocks(n)
    n_blocks = int(blocks.max()) + 1
    block_sum = [torch.zeros(n_blocks, adapter.n_heads, T, T, dtype=torch.float64, device=adapter.device)
                 for _ in range(adapter.n_layers)]
    block_count = torch.zeros(n_blocks, T, dtype=torch.float64, device=adapter.device)
    mlp_rows: list[list[torch.Tensor]] = [[] for _ in range(adapter.n_layers)]
    row_block, correct = [], []
    for s in range(0, n, batch_size):
        b = view.clean.slice(s, s + batch_size)
        bb = blocks[s : s + batch_size].to(adapter.device)  # [b]
        out = adapter.run(b, capture=("pattern", "mlp_out"))
        if view.answer_ids is not None:  # plain texts have no answer: correct stays empty
            correct.append((out.logits.argmax(-1) == view.answer_ids[s : s + batch_size].to(out.logits.device)).cpu())
        qmask = b.attention_mask.to(adapter.device, torch.float64)  # [b, T]
        block_count.index_add_(0, bb, qmask)
        real = b.attention_mask.bool().to(adapter.device)
        row_block.append(bb[:, None].expand_as(real)[real].cpu())
        for layer in range(adapter.n_layers):
            masked = out.captures["pattern"][layer].double() * qmask[:, None, :, None]  # [b, head, T, T]
            block_sum[layer].index_add_(0, bb, masked)
            mlp_rows[layer].append(out.captures["mlp_out"][layer][real].float().cpu())  # [tokens, d_model]
    denom = block_count.sum(0).clamp(min=1)[None, :, None]
    return CleanStats(
        [(p.sum(0) / denom).float().cpu() for p in block_sum],
        [torch.cat(r) for r in mlp_rows],
        torch.cat(correct) if correct else torch.zeros(0, dtype=torch.bool),
        [p.float().cpu() for p in block_sum],
        block_count.float().cpu(),
        torch.cat(row_block),
    )

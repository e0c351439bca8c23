"""The clean pass: what a model does on the task's prompts with nothing ablated (PAPER.md §Method 2–3).

One pass over the clean prompts collects, per model, what the similarity stage compares: the mean
attention pattern of every head and the MLP outputs of every layer, plus each prompt's top-1
correctness. Same batches and BOS policy as every other pass of the job (paper-notes §7 pitfall 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.adapter import ModelAdapter
from ..tasks.dataset import TokenizedTask

BATCH_SIZE = 32


@dataclass
class CleanStats:
    """patterns: per layer [head, T, T], each query row averaged over the prompts that have a real
    token there; mlp_rows: per layer [n_tokens, d_model], the MLP output at every real token;
    correct: [n] bool, top-1 prediction == answer."""

    patterns: list[torch.Tensor]
    mlp_rows: list[torch.Tensor]
    correct: torch.Tensor


@torch.no_grad()
def clean_pass(adapter: ModelAdapter, view: TokenizedTask, batch_size: int = BATCH_SIZE) -> CleanStats:
    n, T = view.clean.tokens.shape
    pat_sum = [torch.zeros(adapter.n_heads, T, T, dtype=torch.float64, device=adapter.device)
               for _ in range(adapter.n_layers)]
    rows_count = torch.zeros(T, dtype=torch.float64, device=adapter.device)
    mlp_rows: list[list[torch.Tensor]] = [[] for _ in range(adapter.n_layers)]
    correct = []
    for s in range(0, n, batch_size):
        b = view.clean.slice(s, s + batch_size)
        out = adapter.run(b, capture=("pattern", "mlp_out"))
        correct.append((out.logits.argmax(-1) == view.answer_ids[s : s + batch_size].to(out.logits.device)).cpu())
        qmask = b.attention_mask.to(adapter.device, torch.float64)  # [b, T]
        rows_count += qmask.sum(0)
        real = b.attention_mask.bool().to(adapter.device)
        for layer in range(adapter.n_layers):
            pat_sum[layer] += torch.einsum("bq,bhqk->hqk", qmask, out.captures["pattern"][layer].double())
            mlp_rows[layer].append(out.captures["mlp_out"][layer][real].float().cpu())  # [tokens, d_model]
    denom = rows_count.clamp(min=1)[None, :, None]
    return CleanStats(
        [(p / denom).float().cpu() for p in pat_sum],
        [torch.cat(r) for r in mlp_rows],
        torch.cat(correct),
    )

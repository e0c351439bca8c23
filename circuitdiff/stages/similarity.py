"""Stage ``similarity``: student x teacher similarity of every head pair and every MLP pair.

Heads: row cosine of mean attention patterns (circuitdiff.analysis.similarity), every query row in
the paper preset, row 0 left out by default (docs/authors-code.md §7 pitfall 8), the end-query row
for word-aligned pairs under the paper preset. MLPs: linear CKA, or the paper's top-3 eigenvector
similarity (raw, or rescaled to the head distribution); CKA where the widths differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..analysis import similarity as similarity_mod
from ..analysis._array import to_numpy
from ..result import Matrix, Similarity
from ..vocabulary import head_ids, mlp_ids
from .context import RunContext


@dataclass(frozen=True)
class Similarities:
    """Student x teacher similarity matrices (heads [Hs, Ht], MLPs [Ls, Lt]) and how they were made
    (``qmask``: the query rows head similarity averages; None = all)."""

    heads: np.ndarray
    mlps: np.ndarray
    mlps_raw: np.ndarray | None
    head_method: str
    mlp_method: str
    qmask: np.ndarray | None = None
    row_weighted: bool = False  # query rows weighted by how many prompts have them (default preset)

    def section(self, student: Any, teacher: Any) -> Similarity:
        s_heads, t_heads = head_ids(student.n_layers, student.n_heads), head_ids(teacher.n_layers, teacher.n_heads)
        s_mlps, t_mlps = mlp_ids(student.n_layers), mlp_ids(teacher.n_layers)
        return Similarity(
            heads=matrix(self.heads, s_heads, t_heads), mlps=matrix(self.mlps, s_mlps, t_mlps),
            head_method=self.head_method, mlp_method=self.mlp_method,
            mlps_raw=None if self.mlps_raw is None else matrix(self.mlps_raw, s_mlps, t_mlps),
        )


def matrix(values: Any, rows: list[str], cols: list[str]) -> Matrix:
    return Matrix(rows=rows, cols=cols, values=[[float(v) for v in r] for r in np.asarray(values)])


def similarities(ctx: RunContext, compared: dict[str, Any], token_alignment: str) -> Similarities:
    """compared: per model, statistics with ``patterns`` [layer][head, T, T] and ``mlp_rows`` [layer][n, d]
    (clean-pass statistics, or their word-pooled form for pairs that do not share tokens)."""
    s, t = compared["student"], compared["teacher"]
    student, teacher = ctx.student, ctx.teacher
    s_pat = np.stack([to_numpy(p) for p in s.patterns]).reshape(-1, *s.patterns[0].shape[1:])
    t_pat = np.stack([to_numpy(p) for p in t.patterns]).reshape(-1, *t.patterns[0].shape[1:])
    paper = ctx.spec.preset == "paper"
    # The paper averages every query row, including row 0 (trivially identical in a causal model);
    # the default preset leaves it out (docs/authors-code.md §7 pitfall 8).
    qmask = None if paper else similarity_mod.query_rows(s_pat.shape[1], exclude_first=True)
    head_method = "row_cosine_all_rows" if paper else "row_cosine_excl_first_row"
    if token_alignment == "word_end_row":  # word patterns: the last row is the end query (circuitdiff.scan.words)
        qmask = np.arange(s_pat.shape[1]) == s_pat.shape[1] - 1
        head_method = "word_end_row_cosine"
    elif token_alignment == "word_pooled":
        head_method = "word_pooled_" + head_method
    weights = None
    if not paper:  # rows weighted by how many prompts have them (the paper averages every row alike)
        weights = np.minimum(*(m.block_counts.double().sum(0).cpu().numpy() for m in (s, t)))
        head_method += "_prompt_weighted"
    heads = similarity_mod.head_similarity(s_pat, t_pat, qmask, row_weights=weights)
    mlp_similarity = ctx.spec.mlp_similarity
    if mlp_similarity != "cka" and student.d_model != teacher.d_model:
        # eigenvectors of different widths live in different spaces; CKA compares the same rows
        mlp_similarity = "cka"
        ctx.warnings.append(f"MLP widths differ (student {student.d_model}, teacher {teacher.d_model}): "
                            "MLP similarity is linear CKA instead of eigenvectors")
    if mlp_similarity == "cka":
        return Similarities(heads, similarity_mod.mlp_similarity_cka(s.mlp_rows, t.mlp_rows), None, head_method,
                            "linear_cka", qmask, weights is not None)
    raw = similarity_mod.mlp_similarity_eigen(s.mlp_rows, t.mlp_rows, k=3)
    if mlp_similarity == "eigen_raw":
        return Similarities(heads, raw, None, head_method, "eigen_top3_raw", qmask, weights is not None)
    return Similarities(heads, similarity_mod.clip_similarity(similarity_mod.rescale_to_heads(raw, heads)), raw,
                        head_method, "eigen_top3_rescaled", qmask, weights is not None)

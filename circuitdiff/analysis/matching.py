"""Matching student components to teacher components (docs/method.md §Method 4, docs/authors-code.md §3.5).

Given a similarity matrix ``sim: [Ns, Nt]`` (rows = student components, columns = teacher components
of the same type), each component on the *source* side is paired with its most similar component on
the other side:

- ``student_to_teacher`` (the TL notebooks, the paper's main numbers): one pair per student
  component; several students may share a teacher and some teachers stay unpaired (Ns pairs).
- ``teacher_to_student`` ("biased to teacher": BERT, HF-GPT-2, Llama, the control): one pair per
  teacher component (Nt pairs).
- ``one_to_one`` (not in the paper): the optimal assignment, the set of min(Ns, Nt) disjoint pairs
  with the largest total similarity (Kuhn–Munkres, ``scipy.optimize.linear_sum_assignment``). No
  component is paired twice, so a student cannot claim one teacher component for several of its
  own; with unequal counts the surplus components of the larger model stay unpaired
  (:func:`unpaired`).

Ties: ``ties="first"`` (default) keeps the first maximum in component order (``np.argmax``, the IOI
notebook's ``>``); ``"last"`` keeps the last (the seq/QA notebooks' ``>=``). Only exact float ties
differ.

A pair is *matched* when its similarity reaches the threshold of its type (heads 0.95, MLPs 0.12);
below-threshold pairs still enter the alignment score. The authors' ``simple_threshold`` returned
all pairs as "matched" and the below-threshold ones again as "unmatched", so those pairs were counted
twice. Only head pairs were: the seq/QA notebooks build the MLP list as ``set(filtered_mlp)`` (seq:
72 + 6 first copies + 36 duplicated head pairs = 114; QA: 78 + 7), and the IOI notebook applies no
threshold at all. :func:`duplicate_unmatched` reproduces that for the ``paper`` preset; it is needed
to reproduce the printed scores and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from ..vocabulary import PAPER_HEAD_THRESHOLD, PAPER_MLP_THRESHOLD, ComponentKind, Matching, choices
from ._array import ArrayLike, to_numpy

__all__ = [
    "Pair",
    "argmax_indices",
    "match",
    "duplicate_unmatched",
    "one_to_one_indices",
    "unpaired",
    "match_components",
]

Ties = Literal["first", "last"]


@dataclass(frozen=True)
class Pair:
    """One student↔teacher pair. Indices point into the rows/columns of the similarity matrix."""

    student: str
    teacher: str
    similarity: float
    matched: bool
    student_index: int
    teacher_index: int
    kind: ComponentKind = "head"
    duplicated: bool = False  # the second copy of a below-threshold pair (paper preset)


def argmax_indices(sim: ArrayLike, axis: int, ties: Ties = "first") -> np.ndarray:
    """Index of the maximum along ``axis``; ``ties`` picks the first or the last maximum."""
    a = to_numpy(sim)
    if a.shape[axis] == 0:
        raise ValueError("cannot match against an empty set of components")
    if np.isnan(a).any():
        raise ValueError("similarity matrix contains NaN")
    if ties == "first":
        return np.argmax(a, axis=axis)
    if ties == "last":
        flipped = np.flip(a, axis=axis)
        return a.shape[axis] - 1 - np.argmax(flipped, axis=axis)
    raise ValueError(f"ties must be 'first' or 'last', got {ties!r}")


def match(
    sim: ArrayLike,
    student_ids: Sequence[str],
    teacher_ids: Sequence[str],
    *,
    direction: Matching = "student_to_teacher",
    threshold: float = PAPER_HEAD_THRESHOLD,
    kind: str = "head",
    ties: Ties = "first",
) -> list[Pair]:
    """Matching of one component type.

    sim: [Ns, Nt] similarity, rows = student components (``student_ids``), columns = teacher.
    Returns Ns pairs (student_to_teacher, in student order), Nt pairs (teacher_to_student, in
    teacher order) or min(Ns, Nt) pairs (one_to_one, in student order); ``matched`` = similarity
    >= threshold.
    """
    a = to_numpy(sim)
    if a.ndim != 2 or a.shape != (len(student_ids), len(teacher_ids)):
        raise ValueError(
            f"sim has shape {a.shape}, expected ({len(student_ids)}, {len(teacher_ids)}) "
            "= (student components, teacher components)"
        )
    if direction == "student_to_teacher":
        best = argmax_indices(a, axis=1, ties=ties)
        idx = [(i, int(j)) for i, j in enumerate(best)]
    elif direction == "teacher_to_student":
        best = argmax_indices(a, axis=0, ties=ties)
        idx = [(int(i), j) for j, i in enumerate(best)]
    elif direction == "one_to_one":
        idx = one_to_one_indices(a)
    else:
        raise ValueError(f"matching must be one of {', '.join(choices(Matching))}, got {direction!r}")
    return [
        Pair(
            student=student_ids[i],
            teacher=teacher_ids[j],
            similarity=float(a[i, j]),
            matched=bool(a[i, j] >= threshold),
            student_index=i,
            teacher_index=j,
            kind=kind,
        )
        for i, j in idx
    ]


def one_to_one_indices(sim: np.ndarray) -> list[tuple[int, int]]:
    """(student, teacher) index pairs of the maximum-similarity assignment, in student order."""
    if np.isnan(sim).any():
        raise ValueError("similarity matrix contains NaN")
    from scipy.optimize import linear_sum_assignment  # scipy only where one_to_one is asked for

    rows, cols = linear_sum_assignment(sim, maximize=True)
    return [(int(i), int(j)) for i, j in zip(rows, cols)]


def duplicate_unmatched(pairs: Sequence[Pair]) -> list[Pair]:
    """The authors' quirk: every below-threshold *head* pair appended a second time
    (``duplicated=True``); MLP pairs never are (their list was a set)."""
    pairs = list(pairs)
    return pairs + [replace(p, duplicated=True) for p in pairs if not p.matched and p.kind == "head"]


def unpaired(pairs: Sequence[Pair], student_ids: Sequence[str], teacher_ids: Sequence[str]) -> dict[str, list[str]]:
    """Components of each model that take part in no pair (``{"student": [...], "teacher": [...]}``)."""
    s_used, t_used = {p.student for p in pairs}, {p.teacher for p in pairs}
    return {"student": [c for c in student_ids if c not in s_used],
            "teacher": [c for c in teacher_ids if c not in t_used]}


def match_components(
    head_sim: ArrayLike,
    mlp_sim: ArrayLike | None,
    student_head_ids: Sequence[str],
    teacher_head_ids: Sequence[str],
    student_mlp_ids: Sequence[str] = (),
    teacher_mlp_ids: Sequence[str] = (),
    *,
    direction: Matching = "student_to_teacher",
    head_threshold: float = PAPER_HEAD_THRESHOLD,
    mlp_threshold: float = PAPER_MLP_THRESHOLD,
    ties: Ties = "first",
    duplicate_below_threshold: bool = False,
) -> list[Pair]:
    """Heads then MLPs matched within their type; optionally with the paper's duplicated pairs.

    ``mlp_sim`` None (or empty id lists) matches heads only. Duplicates, when asked for, come after
    all first copies, so ``pairs[:n_first]`` is always the plain matching.
    """
    pairs = match(head_sim, student_head_ids, teacher_head_ids, direction=direction,
                  threshold=head_threshold, kind="head", ties=ties)
    if mlp_sim is not None and len(student_mlp_ids) and len(teacher_mlp_ids):
        pairs += match(mlp_sim, student_mlp_ids, teacher_mlp_ids, direction=direction,
                       threshold=mlp_threshold, kind="mlp", ties=ties)
    return duplicate_unmatched(pairs) if duplicate_below_threshold else pairs

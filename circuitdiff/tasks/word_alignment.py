"""Word alignment across tokenizers and task forms, by character offsets.

Two models with different vocabularies (GPT BPE vs BERT WordPiece), or a causal model reading
"... gave a drink to" next to a masked LM reading "... gave a drink to [MASK].", cannot be
compared token by token (docs/authors-code.md §7 pitfall 12: the authors cropped matrices or compared
the last row "aligned from the end"). Words are the unit both sides share:

1. Each model's input text is split into words: runs of word characters, or runs of other
   non-space characters (``\\w+|[^\\w\\s]+``), as character spans.
2. Each token is mapped to the words its character span (from the fast tokenizer's offset
   mapping) overlaps. Special tokens (BOS, [CLS], [SEP], padding), the [MASK] and any span-less
   token map to no word. A token that overlaps two words makes both words unusable (there is no
   sound way to split its attention between them), and so does a word overlapped by the mask.
3. The two word sequences are matched with ``difflib`` on lower-cased word strings (uncased
   WordPiece lower-cases; the masked prompt may add or drop words around the answer slot). A
   matched pair is a *shared word* when each side has at least one token wholly inside it.

The result per model is, for every real token, the index of the shared word it belongs to or -1:
attention is then pooled to words (circuitdiff.analysis.word_patterns). Nothing here needs torch.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Sequence

WORD_RE = re.compile(r"\w+|[^\w\s]+")
MIN_SHARED_WORDS = 2  # below this a prompt has no pattern worth comparing

Span = tuple[int, int]


@dataclass
class WordAlignment:
    """groups[role][t] = shared-word index of token t (-1: none); words = the shared words (the
    first role's spelling), in text order."""

    groups: dict[str, list[int]]
    words: list[str]


def word_spans(text: str) -> list[Span]:
    return [m.span() for m in WORD_RE.finditer(text)]


def token_words(offsets: Sequence[Span | None], spans: list[Span], skip: Sequence[bool]) -> tuple[list[int], set[int]]:
    """(own word index per token or -1, words that cannot be used).

    offsets: per token (start, end) in the text, or None for a token added outside the text (BOS).
    skip: per token, True for tokens that must not belong to a word (specials, the mask).
    """
    out: list[int] = []
    dirty: set[int] = set()
    for off, sk in zip(offsets, skip):
        hit = _overlapping(off, spans)
        if sk or not hit:
            dirty.update(hit)  # e.g. the [MASK] token: its neighbouring word is not the same word
            out.append(-1)
        elif len(hit) > 1:
            dirty.update(hit)
            out.append(-1)
        else:
            out.append(hit[0])
    return out, dirty


def _overlapping(off: Span | None, spans: list[Span]) -> list[int]:
    if off is None or off[1] <= off[0]:
        return []
    s, e = off
    return [i for i, (a, b) in enumerate(spans) if a < e and s < b]


def align(texts: dict[str, str], offsets: dict[str, Sequence[Span | None]], skip: dict[str, Sequence[bool]]) -> WordAlignment:
    """Shared words of two models' inputs (roles in ``texts`` order). See the module docstring."""
    (ra, ta), (rb, tb) = list(texts.items())[:2]
    spans = {ra: word_spans(ta), rb: word_spans(tb)}
    own: dict[str, list[int]] = {}
    usable: dict[str, set[int]] = {}
    for r in (ra, rb):
        tw, dirty = token_words(offsets[r], spans[r], skip[r])
        own[r] = tw
        usable[r] = {w for w in tw if w >= 0} - dirty
    wa = [texts[ra][a:b].lower() for a, b in spans[ra]]
    wb = [texts[rb][a:b].lower() for a, b in spans[rb]]
    matcher = difflib.SequenceMatcher(a=wa, b=wb, autojunk=False)
    shared: dict[str, dict[int, int]] = {ra: {}, rb: {}}
    words: list[str] = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            i, j = block.a + k, block.b + k
            if i in usable[ra] and j in usable[rb]:
                shared[ra][i] = shared[rb][j] = len(words)
                words.append(texts[ra][spans[ra][i][0] : spans[ra][i][1]])
    groups = {r: [shared[r].get(w, -1) if w >= 0 else -1 for w in own[r]] for r in (ra, rb)}
    return WordAlignment(groups, words)

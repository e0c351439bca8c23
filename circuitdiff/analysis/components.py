"""Component addresses: ``L{layer}H{head}`` for an attention head, ``L{layer}MLP`` for an MLP.

One scheme for every architecture (DESIGN.md "Component addresses"). The canonical order of a
model's components is **heads row-major (layer, then head), then MLPs by layer**: it is the order
of every per-component list in a result, and the order the authors' robustness bootstrap depends on
(paper-notes §3.7; ``reference/robustness_expected.json`` ``definitions.list_order``): resampling a
list with ``rng.choice`` draws indices, so the same numbers in another order give another CI.

The authors' notebooks name MLPs ``MLP{layer}``; :func:`parse_component` accepts that spelling too,
so reference data can be read without a translation table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import CircuitdiffError

__all__ = [
    "Component",
    "ComponentIdError",
    "head_id",
    "mlp_id",
    "parse_component",
    "head_ids",
    "mlp_ids",
    "component_ids",
    "is_head",
    "is_mlp",
    "canonical_key",
]


class ComponentIdError(CircuitdiffError, ValueError):
    """A string that is not a component address (``L3H7`` / ``L3MLP`` / ``MLP3``)."""

    code = "invalid_component_id"
    http_status = 422


_HEAD = re.compile(r"^L(\d+)H(\d+)$")
_MLP = re.compile(r"^L(\d+)MLP$")
_MLP_AUTHORS = re.compile(r"^MLP(\d+)$")


@dataclass(frozen=True)
class Component:
    """A parsed address; ``head`` is None for an MLP. Sort with :func:`canonical_key`."""

    layer: int
    head: int | None = None

    @property
    def kind(self) -> str:
        return "mlp" if self.head is None else "head"

    @property
    def id(self) -> str:
        return mlp_id(self.layer) if self.head is None else head_id(self.layer, self.head)

    def __str__(self) -> str:
        return self.id


def head_id(layer: int, head: int) -> str:
    """``head_id(3, 7) == "L3H7"``."""
    if layer < 0 or head < 0:
        raise ComponentIdError(f"layer and head must be >= 0, got layer={layer}, head={head}")
    return f"L{int(layer)}H{int(head)}"


def mlp_id(layer: int) -> str:
    """``mlp_id(3) == "L3MLP"``."""
    if layer < 0:
        raise ComponentIdError(f"layer must be >= 0, got {layer}")
    return f"L{int(layer)}MLP"


def parse_component(cid: str) -> Component:
    """Parse ``L3H7`` / ``L3MLP`` (or the authors' ``MLP3``) into a :class:`Component`."""
    s = cid.strip()
    if m := _HEAD.match(s):
        return Component(int(m[1]), int(m[2]))
    if m := _MLP.match(s) or _MLP_AUTHORS.match(s):
        return Component(int(m[1]))
    raise ComponentIdError(f"not a component id: {cid!r} (expected e.g. 'L3H7' or 'L3MLP')")


def is_head(cid: str) -> bool:
    return parse_component(cid).head is not None


def is_mlp(cid: str) -> bool:
    return parse_component(cid).head is None


def canonical_key(cid: str) -> tuple[int, int, int]:
    """Sort key giving the canonical order (all heads row-major, then MLPs by layer)."""
    c = parse_component(cid)
    return (0, c.layer, c.head) if c.head is not None else (1, c.layer, 0)


def head_ids(n_layers: int, n_heads: int) -> list[str]:
    """All head ids, row-major: L0H0, L0H1, ..., L{n_layers-1}H{n_heads-1}."""
    return [head_id(layer, h) for layer in range(n_layers) for h in range(n_heads)]


def mlp_ids(n_layers: int) -> list[str]:
    return [mlp_id(layer) for layer in range(n_layers)]


def component_ids(n_layers: int, n_heads: int, *, mlps: bool = True) -> list[str]:
    """The canonical component order: every head row-major, then every MLP by layer."""
    return head_ids(n_layers, n_heads) + (mlp_ids(n_layers) if mlps else [])

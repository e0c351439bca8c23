"""The one interface every analysis talks to, whatever the architecture.

A :class:`ModelAdapter` runs a batch of token sequences with a list of interventions and returns
the logits at each sequence's end position (the answer position: the last token for a decoder,
the ``[MASK]`` for a masked LM), plus optional captures of the three activations the method
needs (docs/method.md §Method):

- ``z``: per-head attention output *before* W_O, ``[batch, pos, head, d_head]``. A head is
  ablated here and only here (docs/authors-code.md §7 pitfall 4: never the projected output, never a
  sequence position).
- ``pattern``: attention probabilities, ``[batch, head, query, key]``.
- ``mlp_out``: the MLP's output, ``[batch, pos, d_model]``; an MLP is ablated here.

Implementations: :class:`~circuitdiff.models.bridge.BridgeAdapter` (transformer_lens
``TransformerBridge``, decoder models) and a plain-forward-hook adapter for architectures the
bridge lacks (DistilBERT, issue #4). Analyses never touch hooks or module names; the scans that
re-run parts of a model get its layers as functions from :meth:`ModelAdapter.functional`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Sequence

import torch

from ..vocabulary import AdapterName, Component, Family, component_ids, parse_component
from .functional import LayerStack, functional_view

CAPTURES = ("z", "pattern", "mlp_out")
Capture = Literal["z", "pattern", "mlp_out"]


@dataclass
class Batch:
    """Token sequences, right-padded to one length.

    tokens: [batch, pos] (long); attention_mask: [batch, pos] (1 = real token);
    end_pos: [batch] index of the position whose logits are read.
    """

    tokens: torch.Tensor
    attention_mask: torch.Tensor
    end_pos: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def slice(self, start: int, stop: int) -> "Batch":
        return Batch(self.tokens[start:stop], self.attention_mask[start:stop], self.end_pos[start:stop])

    def select(self, index: torch.Tensor) -> "Batch":
        return Batch(self.tokens[index], self.attention_mask[index], self.end_pos[index])

    def repeat(self, k: int) -> "Batch":
        """k copies stacked along batch (block-major): for several interventions in one forward."""
        return Batch(self.tokens.repeat(k, 1), self.attention_mask.repeat(k, 1), self.end_pos.repeat(k))

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.tokens.to(device), self.attention_mask.to(device), self.end_pos.to(device))


@dataclass
class Intervention:
    """Replace one component's activation (heads at ``z``, MLPs at ``mlp_out``).

    value: None = zero ablation; otherwise a replacement that broadcasts against the component's
      activation for this batch: ``[pos, d]`` (same for every row, e.g. a per-position mean) or
      ``[batch, pos, d]`` (per row, e.g. resampled from the corrupted prompt), with d = d_head for
      a head and d_model for an MLP. ``pos`` may be longer than the batch (it is cut to fit).
    rows: None = every row of the batch; otherwise a 1-D index of the rows to intervene on, so
      that several single-component ablations can share one forward pass on a repeated batch.
      With ``rows``, a per-row ``value`` has either one row per batch row (indexed by ``rows``)
      or exactly one row per selected row.
    """

    component: Component
    value: torch.Tensor | None = None
    rows: torch.Tensor | None = None


@dataclass
class RunOutput:
    """logits: [batch, vocab] at end_pos, [batch, k] when token ids were given, or [batch, pos, vocab]
    with ``all_positions``.
    captures[name][layer]: the per-layer tensors listed in the module docstring."""

    logits: torch.Tensor
    captures: dict[str, list[torch.Tensor]] = field(default_factory=dict)


class ModelAdapter(ABC):
    """One loaded model. Subclasses set the attributes in ``__init__`` and implement :meth:`run`."""

    adapter_name: AdapterName
    family: Family
    tokenizer: Any
    n_layers: int
    n_heads: int
    d_head: int
    d_model: int
    n_params: int
    vocab_size: int
    device: torch.device
    dtype: torch.dtype
    info: dict[str, Any]  # circuitdiff.result.ModelInfo fields

    @abstractmethod
    def run(
        self,
        batch: Batch,
        interventions: Sequence[Intervention] = (),
        *,
        token_ids: torch.Tensor | None = None,
        capture: Iterable[Capture] = (),
        all_positions: bool = False,
    ) -> RunOutput:
        """One forward pass (no grad) of ``batch`` with ``interventions`` applied.

        token_ids: [batch, k] -> logits only for these ids (cheaper to keep than the vocab).
        all_positions: logits at every position, [batch, pos, vocab] (``token_ids`` is ignored).
        capture: names from :data:`CAPTURES`; the captured values are those of *this* run
        (after interventions), detached, on the adapter's device.
        """

    @property
    @abstractmethod
    def hf_model(self) -> Any:
        """The transformers model behind the adapter (weights, config)."""

    def functional(self) -> LayerStack:
        """The model's layers as functions (:mod:`circuitdiff.models.functional`), for the scans
        that re-run parts of it; raises ``UnsupportedArchitectureError`` where there is no view."""
        return functional_view(self.hf_model)

    def components(self) -> list[Component]:
        """Every head row-major, then every MLP: the canonical order of per-component lists."""
        return [parse_component(c) for c in component_ids(self.n_layers, self.n_heads)]

    def check_intervention(self, iv: Intervention) -> None:
        c = iv.component
        if not 0 <= c.layer < self.n_layers or (c.head is not None and not 0 <= c.head < self.n_heads):
            raise ValueError(f"{c.id} is outside this model ({self.n_layers} layers x {self.n_heads} heads)")


def gather_end_logits(logits: torch.Tensor, end_pos: torch.Tensor, token_ids: torch.Tensor | None) -> torch.Tensor:
    """logits: [batch, pos, vocab] -> [batch, vocab] at end_pos, or [batch, k] for token_ids."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    end = logits[rows, end_pos.to(logits.device)]  # [batch, vocab]
    if token_ids is None:
        return end
    return end.gather(1, token_ids.to(logits.device))


def apply_replacement(act: torch.Tensor, iv: Intervention, head_dim: int | None) -> torch.Tensor:
    """Return ``act`` with the intervention applied (a new tensor; the input is not modified).

    act: [batch, pos, head, d_head] when ``head_dim`` is the head index, else [batch, pos, d_model].
    """
    out = act.clone()
    pos = act.shape[1]
    rows = iv.rows
    if iv.value is None:
        if head_dim is None:
            if rows is None:
                out.zero_()
            else:
                out[rows] = 0
        elif rows is None:
            out[:, :, head_dim] = 0
        else:
            out[rows, :, head_dim] = 0
        return out
    value = iv.value.to(device=act.device, dtype=act.dtype)
    value = value[:pos] if value.dim() == 2 else value[:, :pos]
    if rows is None:
        target_shape = (act.shape[0], pos, value.shape[-1])
        value = value.expand(target_shape)
        if head_dim is None:
            out[:] = value
        else:
            out[:, :, head_dim] = value
        return out
    if value.dim() == 3:
        value = value[rows] if value.shape[0] == act.shape[0] else value
    value = value.expand((len(rows), pos, value.shape[-1]))
    if head_dim is None:
        out[rows] = value
    else:
        out[rows, :, head_dim] = value
    return out

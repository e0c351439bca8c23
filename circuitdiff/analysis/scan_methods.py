"""The ``exact`` and ``attribution`` scan methods behind :func:`circuitdiff.analysis.influence.scan`.

Imported (and so registered) by ``scan()`` the first time a method other than ``naive`` is asked
for; :mod:`fast_scan` and :mod:`attribution` stay free of the adapter layer and are usable on a
bare HF model.

- ``exact``: :func:`fast_scan.exact_scan` on the GPT-2 model behind the adapter. Architectures it
  does not cover (masked LMs behind the hooks adapter) run the naive scan instead; the returned
  scan then says ``method="naive"``, so a result never claims a method that did not run.
- ``attribution``: :func:`attribution.attribution_scan`; ``check=n`` also runs the exact scan on n
  sampled components and stores the agreement (Spearman, top-k overlap) on the scan.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..errors import Cancelled
from .ablation import AblationKind
from .attribution import attribution_scan, check_against_exact
from .components import Component
from .fast_scan import UnsupportedModelError, exact_scan, gpt2_of
from .influence import InfluenceScan, Progress, naive_scan, register_scan_method


def _inputs(view) -> dict:
    return dict(
        tokens=view.clean.tokens, attention_mask=view.clean.attention_mask, end_pos=view.clean.end_pos,
        answer=view.answer_ids, distractor=view.distractor_ids,
        corrupted_tokens=view.corrupted.tokens, corrupted_mask=view.corrupted.attention_mask,
    )


def _supported(adapter) -> bool:
    try:
        gpt2_of(adapter)
    except UnsupportedModelError:
        return False
    return True


def exact_method(
    adapter, view, ablation: AblationKind, *, components: Sequence[Component], batch_size: int = 32,
    progress: Progress | None = None, cancelled: Callable[[], bool] | None = None, stage: str = "influence",
) -> InfluenceScan:
    if not _supported(adapter):
        return naive_scan(adapter, view, ablation, components=components, batch_size=batch_size,
                          progress=progress, cancelled=cancelled, stage=stage)

    def on_layer(done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)
        if cancelled is not None and cancelled() and done < total:
            raise Cancelled(f"cancelled during {stage} after {done} of {total} components")

    out = exact_scan(adapter, ablation=ablation, components=[c.id for c in components], progress=on_layer,
                     **_inputs(view))
    return InfluenceScan(
        components=out.components, clean_ld=out.clean_ld.double().cpu(), ablated_ld=out.ablated_ld.double().cpu(),
        ablation=ablation, method="exact",
    )


def attribution_method(
    adapter, view, ablation: AblationKind, *, components: Sequence[Component], batch_size: int = 32,
    progress: Progress | None = None, cancelled: Callable[[], bool] | None = None, stage: str = "influence",
    check: int | None = None, seed: int = 0,
) -> InfluenceScan:
    if not _supported(adapter):
        return naive_scan(adapter, view, ablation, components=components, batch_size=batch_size,
                          progress=progress, cancelled=cancelled, stage=stage)
    inputs = _inputs(view)
    out = attribution_scan(adapter, ablation=ablation, **inputs)
    wanted = [c.id for c in components]
    index = {c: i for i, c in enumerate(out.components)}
    rows = torch.stack([out.ablated_ld[index[c]] for c in wanted])
    result = InfluenceScan(
        components=wanted, clean_ld=out.clean_ld.double().cpu(), ablated_ld=rows.double().cpu(),
        ablation=ablation, method="attribution",
    )
    if progress is not None:
        progress(stage, len(wanted), len(wanted))
    if check:
        sub = type(out)(wanted, out.clean_ld, rows, 0)
        result.agreement = check_against_exact(adapter, sub, int(check), seed, dict(inputs, ablation=ablation))
    return result


register_scan_method("exact", exact_method)
register_scan_method("attribution", attribution_method)

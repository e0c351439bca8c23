"""Readable axis ticks for the hand-drawn SVG charts (the trend report, the A/B page): steps of 1, 2,
2.5 or 5 times a power of ten, so an axis reads 0.80 / 0.85 / 0.90 and never 0.974 / 0.848 / 0.723."""

from __future__ import annotations

import math


def nice_step(span: float, target: int = 5) -> float:
    raw = (span or 1.0) / max(target, 1)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def nice_ticks(lo: float, hi: float, target: int = 5) -> tuple[float, float, list[float]]:
    """(axis low, axis high, ticks): the range widened to whole steps, every tick a round number."""
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    step = nice_step(hi - lo, target)
    start, end = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    n = int(round((end - start) / step))
    return start, end, [round(start + i * step, 10) for i in range(n + 1)]


def tick_label(v: float, ticks: list[float]) -> str:
    """As many decimals as the step needs, the same for every tick of an axis."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if round(step / 10 ** math.floor(math.log10(step)), 6) == 2.5 else 0)
    return f"{v:.{decimals}f}"

"""How the command line shows a comparison's progress: ``progress(stage, done, total)`` drawn as one
bar per stage with done/total, the rate and the time left on a terminal, and as plain lines when
stderr is a file or a pipe (a log must stay readable: a line when a stage starts, then at most one
every ``every`` seconds while it runs, and one when it ends).

The same bar draws a local run (the engine calls it) and a ``--server`` run (the client calls it
with each job record it sees); a server that estimates the time left itself (``progress.eta_seconds``)
is believed over the bar's own estimate.
"""

from __future__ import annotations

import time
from typing import TextIO


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: time left as a person reads it."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def rate_text(per_second: float) -> str:
    """``12.5/s``, or ``4.0s each`` below one per second (reads better for slow steps)."""
    if per_second <= 0:
        return "—"
    return f"{per_second:.1f}/s" if per_second >= 1 else f"{1 / per_second:.1f}s each"


class ProgressBar:
    """Call it as ``bar(stage, done, total, eta=None)``; :meth:`close` ends the last stage's line."""

    WIDTH = 24

    def __init__(self, stream: TextIO, *, tty: bool | None = None, every: float = 30.0, clock=time.monotonic):
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.every = every
        self.clock = clock
        self.t0 = clock()
        self.stage: str | None = None
        self.stage_t0 = self.t0
        self.first_done = 0  # done when the stage was first seen (a --server run may join it midway)
        self.last: tuple[int, int, float | None] = (0, 0, None)
        self.last_line = self.t0

    def estimate(self, done: int, total: int) -> tuple[float, float | None]:
        """(rate per second, seconds left) from what this stage did since it was first seen."""
        spent = self.clock() - self.stage_t0
        moved = done - self.first_done
        if spent <= 0 or moved <= 0:
            return 0.0, None
        per_second = moved / spent
        return per_second, max(0, total - done) / per_second

    def describe(self, stage: str, done: int, total: int, eta: float | None) -> str:
        per_second, left = self.estimate(done, total)
        left = eta if eta is not None else left
        parts = [f"{done}/{total}"]
        if per_second > 0:
            parts.append(rate_text(per_second))
        if done < total and left is not None:
            parts.append(f"{duration(left)} left")
        elif done >= total and total:
            parts.append(f"done in {duration(self.clock() - self.stage_t0)}")
        return ", ".join(parts)

    def __call__(self, stage: str, done: int, total: int, eta: float | None = None) -> None:
        now = self.clock()
        if stage != self.stage:
            self._end_stage()
            self.stage, self.stage_t0, self.first_done, self.last_line = stage, now, done, now
            if not self.tty:
                self._line(f"{stage} ({total} steps)" if total > 1 else stage)
        self.last = (done, total, eta)
        if self.tty:
            frac = done / total if total else 1.0
            filled = int(self.WIDTH * min(1.0, frac))
            bar = "#" * filled + "." * (self.WIDTH - filled)
            text = f"\r{now - self.t0:7.1f}s {stage:<22s} [{bar}] {self.describe(stage, done, total, eta)}"
            self.stream.write(text + "\x1b[K")  # clear what a longer line left behind
            self.stream.flush()
        elif now - self.last_line >= self.every and done < total:
            self._line(f"{stage} {self.describe(stage, done, total, eta)}")

    def _line(self, text: str) -> None:
        now = self.clock()
        self.stream.write(f"{now - self.t0:7.1f}s {text}\n")
        self.stream.flush()
        self.last_line = now

    def _end_stage(self) -> None:
        if self.stage is None:
            return
        done, total, eta = self.last
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
        elif total and done >= total and self.clock() - self.stage_t0 >= 1.0:
            self._line(f"{self.stage} {self.describe(self.stage, done, total, eta)}")

    def close(self) -> None:
        self._end_stage()
        self.stage = None

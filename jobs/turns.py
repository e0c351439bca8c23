"""Fair turns between API keys: which queued job a free worker takes next, and each job's place.

The rule (stride scheduling): every owner with queued jobs in a pool holds a *pass*; the next job is
the oldest queued job of the owner with the smallest pass (ties: the smaller owner id), and taking it
moves that owner's pass on by its *stride*, ``STRIDE_UNIT // weight``. With equal weights that is
round-robin between keys and submission order within a key; a key of weight 2 gets two turns for
another's one. An owner whose queue was empty joins at the pool's current pass (the pass of the last
job taken), so idle time earns no credit. A watch's jobs are its owner's jobs: they wait in the
owner's line.

The pick is one Lua script (:data:`jobs.store_scripts.CLAIM`), run by the worker when a message
arrives: a message is a turn, not a reservation, so whichever worker is free takes the job whose turn
it is. :func:`position` gives the same order in closed form: owner ``q``'s ``k``-th next job is taken
at pass ``pass_q + (k-1)·stride_q``, so a job's place is its rank in its owner's line plus, for every
other owner, how many of that owner's jobs come at a smaller pass (equal: smaller owner id).

Pools: ``gpu`` (one device) and ``multi`` (the memory plan spreads a model over several GPUs), each
with its own Celery queue and its own turn order.
"""

from __future__ import annotations

from dataclasses import dataclass

STRIDE_UNIT = 720720  # divisible by every weight 1..16: their strides are exact integers
POOLS = ("gpu", "multi")  # each has its Celery queue (jobs.queue.POOL_QUEUES)
DEFAULT_POOL = "gpu"


def stride(weight: int) -> int:
    return max(1, STRIDE_UNIT // max(1, int(weight)))


def wait_key(pool: str, owner: str) -> str:
    """The owner's queued jobs in ``pool``: a sorted set, job id -> creation time (FIFO)."""
    return f"cd:wait:{pool}:{owner}"


def owners_key(pool: str) -> str:
    """Owners with at least one queued job in ``pool`` (a set)."""
    return f"cd:waiters:{pool}"


def pass_key(pool: str) -> str:
    """Hash owner -> pass in ``pool``; field ``""`` holds the pool's current pass."""
    return f"cd:pass:{pool}"


@dataclass(frozen=True)
class Line:
    """One owner's queue in a pool, as :func:`position` needs it."""

    owner: str
    waiting: int  # queued jobs
    pass_: int  # its pass (already at least the pool's when it joined)
    stride: int


def taken_before(other: Line, owner: str, at: int) -> int:
    """How many of ``other``'s jobs are taken before ``owner``'s job due at pass ``at``."""
    gap = at - other.pass_
    if gap < 0:
        return 0
    n = gap // other.stride + 1  # its jobs at passes pass_, pass_+stride, ... <= at
    if gap % other.stride == 0 and other.owner > owner:
        n -= 1  # the one due at exactly ``at`` loses the tie
    return min(other.waiting, n)


def position(lines: list[Line], owner: str, rank: int) -> int:
    """1-based place of ``owner``'s ``rank``-th queued job (1 = its oldest) under the turn rule."""
    mine = next(line for line in lines if line.owner == owner)
    at = mine.pass_ + (rank - 1) * mine.stride
    return rank + sum(taken_before(line, owner, at) for line in lines if line.owner != owner)

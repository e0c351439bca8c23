"""Fair turns between keys (jobs.turns) on a real Redis: the claim script's order, the positions the
API reports, weights, the per-key limit, and messages that are turns rather than reservations.

The whole stack (API, worker, 21 jobs) is tests/system/test_fair_turns.py; here the job store is
driven the way a worker drives it (claim per message), so hundreds of orders are cheap to check.
"""

from __future__ import annotations

import pytest

from jobs.store import JobStore
from jobs.turns import Line, STRIDE_UNIT, position, stride
from launcher.redis_server import RedisServer


@pytest.fixture
def store(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    import redis

    client = redis.Redis.from_url(server.url, decode_responses=True)
    yield lambda strides=None: JobStore(client, strides)
    client.close()
    server.stop()


def submit(store: JobStore, owner: str, n: int, *, limit: int = 0, tag: str = "") -> list[str]:
    ids = []
    for i in range(n):
        out = store.create(owner=owner, spec={"n": i}, content_key=f"{owner}{tag}{i}", fingerprints={},
                           queued_limit=limit)
        assert out.kind == "new", out
        ids.append(out.job_id)
    return ids


def positions(store: JobStore, ids) -> dict[str, int]:
    return {j: store.queue_position(j) for j in ids}


def drain(store: JobStore, messages: list[str]) -> list[str]:
    """Claim one message after another (a worker finishing each job at once): the jobs run, in order."""
    ran = []
    for m in messages:
        kind, _, jid = store.claim(m, "w1", max_attempts=3, stale_seconds=30)
        if kind == "run":
            ran.append(jid)
            assert store.transition(jid, ("running",), "succeeded", expect_worker="w1") == "ok"
    return ran


def test_a_key_with_many_jobs_takes_turns_with_a_key_with_one(store):
    s = store()
    a = submit(s, "alice", 20)
    assert drain(s, a[:1]) == a[:1]  # one worker took alice's first job
    b = submit(s, "bob", 1)
    queued = a[1:] + b
    pos = positions(s, queued)
    assert pos[b[0]] == 1 and [pos[j] for j in a[1:]] == list(range(2, 21))
    # a message is a turn: alice's second message runs bob's job, whose turn it is
    ran = drain(s, a[1:] + b)
    assert ran == sorted(queued, key=pos.get)
    assert s.queue_length() == 0 and s.waiting_by_owner() == {}


def test_reported_positions_are_the_order_jobs_run_in_with_weights_and_late_joiners(store):
    strides = {"carol": stride(3)}
    s = store(strides)
    a, b, c = submit(s, "alice", 6), submit(s, "bob", 4), submit(s, "carol", 7)
    ran = drain(s, a[:3])  # three turns taken before dave arrives
    d = submit(s, "dave", 3)
    queued = [j for j in a + b + c + d if j not in ran]
    pos = positions(s, queued)
    assert sorted(pos.values()) == list(range(1, len(queued) + 1))
    order = drain(s, queued)
    assert order == sorted(queued, key=pos.get)
    # carol (weight 3) got three turns for each of another key's one while all were waiting
    first9 = order[:9]
    assert sum(j in c for j in first9) >= 5


def test_cancelling_a_queued_job_leaves_its_line_and_positions_close_up(store):
    s = store()
    a, b = submit(s, "alice", 3), submit(s, "bob", 2)
    assert s.cancel(a[0]) == "cancelled"
    pos = positions(s, a[1:] + b)
    assert sorted(pos.values()) == [1, 2, 3, 4]
    assert drain(s, a + b) == sorted(a[1:] + b, key=pos.get)  # the cancelled job's message is a spare turn


def test_the_queued_limit_counts_every_queued_job_of_the_key(store):
    s = store()
    submit(s, "alice", 3, limit=3)
    out = s.create(owner="alice", spec={}, content_key="alice-more", fingerprints={}, queued_limit=3)
    assert (out.kind, out.queued) == ("limit", 3)
    assert s.create(owner="bob", spec={}, content_key="b", fingerprints={}, queued_limit=3).kind == "new"
    drain(s, ["x"])  # a turn: alice's oldest starts, a place frees
    assert s.create(owner="alice", spec={}, content_key="alice-more", fingerprints={}, queued_limit=3).kind == "new"


def test_position_counts_ties_by_owner_id():
    lines = [Line("a", 2, 0, STRIDE_UNIT), Line("b", 2, 0, STRIDE_UNIT)]
    assert [position(lines, "a", 1), position(lines, "b", 1), position(lines, "a", 2), position(lines, "b", 2)] \
        == [1, 2, 3, 4]


def test_key_weights_name_the_owner_ids_the_api_gives_keys(monkeypatch):
    from jobs.settings import Settings, hash_key, owner_of

    s = Settings(key_weights="alice-test-key=2,sha256:" + "ab" * 32 + "=4")
    assert s.strides == {owner_of(hash_key("alice-test-key")): STRIDE_UNIT // 2, owner_of("ab" * 32): STRIDE_UNIT // 4}
    with pytest.raises(ValueError, match="outside 1-16"):
        Settings(key_weights="k=17")

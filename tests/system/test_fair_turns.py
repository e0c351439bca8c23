"""Fair turns between keys through the whole stack: real Redis, the API, one real worker, the zoo pair.

Alice submits 20 small comparisons, then Bob one: with one worker Bob's starts before Alice's third,
and the queue positions the API reported are the order the worker really started them in. Alice's
21st is refused with 429 ``too_many_queued``, Retry-After and the limit, while Bob still gets in.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import require_zoo
from tests.service_fixtures import ALICE_KEY, BOB_KEY, SMALL_SPEC, poll_until, private_stack, start_worker, wait_for

LIMIT = 20


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_zoo("gpt-teacher", "gpt-student")
    root = tmp_path_factory.mktemp("turns")
    with private_stack(root, CIRCUITDIFF_MAX_QUEUED_PER_KEY=LIMIT) as s:
        clients = {k: httpx.Client(base_url=s.base, headers={"Authorization": f"Bearer {k}"}, timeout=30)
                   for k in (ALICE_KEY, BOB_KEY)}
        yield {"env": s.env, "root": root, "alice": clients[ALICE_KEY], "bob": clients[BOB_KEY], "procs": s.procs}
        for c in clients.values():
            c.close()


def test_one_key_with_twenty_jobs_does_not_hold_back_another(stack):
    alice, bob = stack["alice"], stack["bob"]
    a = [alice.post("/v1/comparisons", json={**SMALL_SPEC, "seed": i}) for i in range(LIMIT)]
    assert [r.status_code for r in a] == [202] * LIMIT
    a_ids = [r.json()["id"] for r in a]

    over = alice.post("/v1/comparisons", json={**SMALL_SPEC, "seed": LIMIT})
    assert over.status_code == 429 and over.headers["content-type"].startswith("application/problem+json")
    body = over.json()
    assert body["code"] == "too_many_queued" and body["limit"] == LIMIT and body["queued"] == LIMIT
    assert "CIRCUITDIFF_MAX_QUEUED_PER_KEY" in body["detail"] and int(over.headers["Retry-After"]) >= 1

    b = bob.post("/v1/comparisons", json={**SMALL_SPEC, "seed": 0})
    assert b.status_code == 202
    b_id = b.json()["id"]
    # no worker yet: the positions are stable while we read them
    pos = {j: alice.get(f"/v1/comparisons/{j}").json()["queue_position"] for j in a_ids}
    pos[b_id] = bob.get(f"/v1/comparisons/{b_id}").json()["queue_position"]
    assert sorted(pos.values()) == list(range(1, LIMIT + 2))
    assert pos[b_id] <= 2 and [pos[j] for j in a_ids] == sorted(pos[j] for j in a_ids)  # FIFO within a key

    stack["procs"].append(start_worker(stack["env"], stack["root"], "turns"))
    third = a_ids[2]
    wait_for(lambda: alice.get(f"/v1/comparisons/{third}").json()["status"] != "queued", 600,
             "alice's third job to start")
    for j in a_ids[3:]:
        alice.delete(f"/v1/comparisons/{j}")
    started = {}
    for client, j in [(alice, a_ids[0]), (alice, a_ids[1]), (alice, third), (bob, b_id)]:
        done = poll_until(client, j, {"succeeded"}, timeout=300)
        started[j] = done["started_at"]
    assert started[b_id] < started[third]
    assert sorted(started, key=started.get) == sorted(started, key=pos.get)  # the reported order is the real one
    waiting = [alice.get(f"/v1/comparisons/{j}").json() for j in a_ids[3:]]
    assert all(w["status"] == "cancelled" and w["attempts"] == 0 for w in waiting)

"""Faults that used to leave a job stuck: a results directory the worker cannot write, a record whose
message was never queued, partial directories nobody owns (issue #24, items 1-3).

A private stack (own Redis, API, worker, data dir), so breaking the data directory cannot disturb
the other service tests. "Not writable" is made by putting a file where ``results/`` should be: it
fails every write below it as a read-only mount does, and it does so for root too (CI may run tests
as root, for whom permission bits do not stop a write).
"""

from __future__ import annotations

import shutil

import httpx
import pytest

from jobs.settings import Settings
from jobs.store import JobStore
from launcher.redis_server import RedisServer
from tests.service_fixtures import ALICE_KEY, copy_pair, poll_until, service_env, start_api, start_worker, wait_for


SCRAPER = "scraper-token-0123456789"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_gpt_dir, tiny_gpt_dir_b):
    root = tmp_path_factory.mktemp("faults")
    server = RedisServer(root / "redis").start()
    data = root / "data"
    teacher, student = copy_pair(data, tiny_gpt_dir, tiny_gpt_dir_b)
    env = service_env(server.url, data, CIRCUITDIFF_UNSENT_GRACE_SECONDS=2, CIRCUITDIFF_METRICS_TOKEN=SCRAPER)
    api, base = start_api(env, root)
    worker = start_worker(env, root, "faults")
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ALICE_KEY}"}, timeout=30)
    spec = {"teacher": teacher, "student": student, "task": "ioi", "n_prompts": 8}
    yield {"env": env, "client": client, "data": data, "spec": spec, "worker": worker, "url": server.url}
    client.close()
    worker.stop()
    api.stop()
    server.stop()


def test_unwritable_results_dir_fails_the_job_clearly_and_ready_says_so(stack):
    client, results = stack["client"], stack["data"] / "results"
    shutil.rmtree(results, ignore_errors=True)
    results.write_text("not a directory")  # every mkdir/write under results/ now fails
    try:
        r = client.post("/v1/comparisons", json={**stack["spec"], "seed": 11})
        assert r.status_code == 202, r.text
        body = poll_until(client, r.json()["id"], {"failed", "succeeded", "cancelled"}, timeout=120)
        assert body["status"] == "failed", body  # before the fix: `running` for ever, under a live worker
        assert body["error"]["code"] == "results_not_writable", body["error"]
        assert str(results) in body["error"]["detail"] and "writable" in body["error"]["fix"]
        ready = client.get("/ready")
        assert ready.status_code == 503 and str(results) in ready.json()["checks"]["data_dir"], ready.text
        # the failed job does not answer an identical submission once the disk is fixed
    finally:
        results.unlink()
        results.mkdir()
    again = client.post("/v1/comparisons", json={**stack["spec"], "seed": 11})
    assert again.status_code == 202, again.text  # a new job, not the stuck one
    assert again.json()["id"] != r.json()["id"]
    done = poll_until(client, again.json()["id"], {"failed", "succeeded", "cancelled"}, timeout=180)
    assert done["status"] == "succeeded", done
    assert client.get("/ready").status_code == 200


def test_a_record_whose_message_was_never_queued_is_queued_by_the_sweep(stack):
    """The API created the record, then lost Redis before the message went out (and so could not
    discard the record either): a worker's sweep queues it within the grace period, it runs once, and
    an identical resubmission returns it."""
    from circuitdiff.spec import ComparisonSpec
    from jobs.settings import hash_key
    from service.auth import owner_of
    from service.submission import prepare

    settings = Settings(**{"redis_url": stack["url"], "data_dir": stack["data"], "api_keys": [ALICE_KEY]})
    owner = owner_of(hash_key(ALICE_KEY))
    prepared = prepare(ComparisonSpec.model_validate({**stack["spec"], "seed": 12}), settings, owner)
    store = JobStore.from_url(stack["url"])
    outcome = store.create(owner=owner, spec=prepared.spec.model_dump(mode="json"), content_key=prepared.content_key,
                           fingerprints=prepared.fingerprints)  # ... and here Redis went away: no send_job
    assert outcome.kind == "new"
    client = stack["client"]
    body = poll_until(client, outcome.job_id, {"succeeded", "failed", "cancelled"}, timeout=180)
    assert body["status"] == "succeeded" and body["attempts"] == 1, body  # before the fix: queued for ever
    same = client.post("/v1/comparisons", json={**stack["spec"], "seed": 12})
    assert same.status_code == 200 and same.json()["id"] == outcome.job_id, same.text
    assert store.unsent(older_than=0) == []


def test_partial_directories_nobody_owns_are_removed(stack):
    """An attempt that could not delete its own partial directory (the disk went read-only under it,
    or its worker was killed mid-write) leaves it; a live worker's sweep removes it."""
    results = stack["data"] / "results"
    orphan = results / ".j0000000000000000000001.1.partial"
    (orphan / "plots").mkdir(parents=True)
    (orphan / "result.json").write_text("{}")
    wait_for(lambda: not orphan.exists(), 30, "the sweep to remove an unowned partial directory", stack["worker"])


def _hgetall_calls(r) -> int:
    return int(r.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))


def test_a_filtered_page_reads_only_its_own_records_whatever_the_history(stack):
    """Issue #24 item 6: `?status=failed&limit=1` over 2,000 jobs read every record until it found
    two failed ones (the oldest here). With the per-owner status index a page reads its own records,
    however long the history; records written before the index existed are indexed once."""
    import redis

    from jobs.settings import hash_key
    from jobs.store import STATUS_INDEX_READY
    from service.auth import owner_of
    from tests.service_fixtures import BOB_KEY

    from circuitdiff.spec import ComparisonSpec

    store = JobStore.from_url(stack["url"])
    owner = owner_of(hash_key(BOB_KEY))
    spec = ComparisonSpec.model_validate(stack["spec"]).model_dump(mode="json")
    ids = []
    for i in range(2000):
        jid = store.create(owner=owner, spec=spec, content_key=f"seed-{i}", fingerprints={}).job_id
        store.mark_sent(jid)
        store.transition(jid, ("queued",), "failed" if i < 2 else "succeeded", finished_at="1")
        ids.append(jid)
    r = redis.Redis.from_url(stack["url"], decode_responses=True)
    # as a history written before the index: no status index, no marker
    for key in r.scan_iter(match=f"cd:jobs:{owner}:s:*"):
        r.delete(key)
    r.delete(STATUS_INDEX_READY)
    bob = httpx.Client(base_url=str(stack["client"].base_url), headers={"Authorization": f"Bearer {BOB_KEY}"})
    first = bob.get("/v1/comparisons", params={"status": "failed", "limit": 1})  # indexes the history once
    assert first.status_code == 200 and [j["id"] for j in first.json()["items"]] == [ids[1]], first.text
    for params in ({"status": "failed", "limit": 1}, {"status": "failed", "limit": 1, "cursor": ids[1]},
                   {"status": "succeeded", "limit": 5}, {"limit": 5}):
        before = _hgetall_calls(r)
        page = bob.get("/v1/comparisons", params=params)
        assert page.status_code == 200, page.text
        assert _hgetall_calls(r) - before <= params["limit"] + 1, params  # before the fix: 2,000 for the first
    last = bob.get("/v1/comparisons", params={"status": "failed", "limit": 1, "cursor": ids[1]}).json()
    assert [j["id"] for j in last["items"]] == [ids[0]] and last["next_cursor"] is None
    bob.close()


def test_metrics_need_a_key_or_the_scrapers_token(stack):
    """Issue #24 item 8: /metrics shows every key's counts; with keys set it answered anyone."""
    base = str(stack["client"].base_url)
    anonymous = httpx.get(base + "/metrics")
    assert anonymous.status_code == 401 and anonymous.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(base + "/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    for token in (SCRAPER, ALICE_KEY):
        r = httpx.get(base + "/metrics", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and "circuitdiff_jobs" in r.text, token
    # the scraper's token opens /metrics alone
    assert httpx.get(base + "/v1/comparisons", headers={"Authorization": f"Bearer {SCRAPER}"}).status_code == 401

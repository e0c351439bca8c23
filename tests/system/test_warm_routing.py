"""Warm models first, with two real workers on the zoo pair: after one comparison, the worker that
holds the teacher and student loaded gets the next ones (their models come from its memory), whichever
of the two the broker hands each message to. (Without the rule the broker's choice decides, and the
other worker loads the pair itself about every other time: benchmarks/warm_routing.py measures that.)
"""

from __future__ import annotations

import httpx
import redis

from jobs.store import JobStore
from launcher.redis_server import RedisServer
from tests.conftest import require_zoo
from tests.service_fixtures import ALICE_KEY, SMALL_SPEC, poll_until, service_env, start_api, start_worker, wait_for


def _stack(root, **extra):
    server = RedisServer(root / "redis").start()
    data = root / "data"
    (data / "models").mkdir(parents=True)
    env = service_env(server.url, data, **extra)
    api, base = start_api(env, root)
    workers = [start_worker(env, root, name) for name in ("warm-a", "warm-b")]
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ALICE_KEY}"}, timeout=30)
    return server, api, workers, client


def _run(client, store: JobStore, seed: int) -> dict:
    wait_for(lambda: all(w.job is None for w in store.worker_infos(5)), 60, "both workers idle")
    job = client.post("/v1/comparisons", json={**SMALL_SPEC, "seed": seed}).json()
    return poll_until(client, job["id"], {"succeeded", "failed"}, timeout=300)


def test_the_worker_holding_the_pair_gets_its_next_jobs(tmp_path):
    require_zoo("gpt-teacher", "gpt-student")
    server, api, workers, client = _stack(tmp_path)
    r = redis.Redis.from_url(server.url, decode_responses=True)
    store = JobStore(r)
    try:
        first = _run(client, store, 1)
        assert first["status"] == "succeeded" and first["model_cache_hits"] == 0
        holder = r.hget(f"cd:job:{first['id']}", "worker")
        warm = next(w for w in store.worker_infos(5) if w.name == holder)
        assert {"zoo:gpt-teacher", "zoo:gpt-student"} <= set(warm.models)  # published with the heartbeat
        later = [_run(client, store, seed) for seed in (2, 3, 4)]
        ran_on = [r.hget(f"cd:job:{j['id']}", "worker") for j in later]
        assert ran_on == [holder] * 3, (holder, ran_on)
        assert [j["model_cache_hits"] for j in later] == [2, 2, 2]
        cold = next(w for w in store.worker_infos(5) if w.name != holder)
        assert cold.models == []  # it never loaded the pair
    finally:
        client.close()
        r.close()
        for w in workers:
            w.stop()
        api.stop()
        server.stop()

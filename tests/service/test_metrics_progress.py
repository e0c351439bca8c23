"""What a running job reports about itself and the service about its workers, through the real API
and a real worker: ``progress.eta_seconds`` while a stage runs, and ``/metrics`` as the standard
Prometheus library reads it (stage durations, cache lookups, models loaded per worker, jobs waiting
per key)."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from jobs.settings import hash_key, owner_of
from tests.service_fixtures import ALICE_KEY, poll_until, wait_for


def metrics(client) -> dict[str, list]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def value(samples, name: str, **labels) -> float:
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert found, f"no {name}{labels} in {samples}"
    return sum(found)


def test_eta_while_running_and_metrics_after(alice, svc_worker, local_spec):
    before = metrics(alice)
    stage_before = {s.labels["stage"]: s.value for s in before.get("circuitdiff_stage_duration_seconds", [])
                    if s.name.endswith("_count")}
    # long enough that a stage with many items outlasts the progress interval whatever the machine's speed:
    # the naive scan runs one forward per component and prompt batch (an exact scan of 64 prompts of the
    # tiny pair can end every stage between two progress writes on a fast machine)
    long = alice.post("/v1/comparisons", json={**local_spec, "seed": 4101, "n_prompts": 256, "scan": "naive"}).json()
    wait_for(lambda: alice.get(f"/v1/comparisons/{long['id']}").json()["status"] == "running", 120, "a running job")
    waiting = alice.post("/v1/comparisons", json={**local_spec, "seed": 4102}).json()
    during = metrics(alice)
    me = owner_of(hash_key(ALICE_KEY))
    assert value(during["circuitdiff_jobs_waiting"], "circuitdiff_jobs_waiting", key=me) >= 1
    assert value(during["circuitdiff_worker_busy"], "circuitdiff_worker_busy") >= 1

    seen = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = alice.get(f"/v1/comparisons/{long['id']}", params={"wait": 2}).json()
        if job["progress"]:
            seen.append(job["progress"])
        if job["status"] != "running":
            break
    assert job["status"] == "succeeded", job
    etas = [p["eta_seconds"] for p in seen if p["stage"] != "done" and p["eta_seconds"] is not None]
    print(f"{len(etas)} progress reads with an ETA: {sorted({p['stage'] for p in seen})}")
    assert etas and all(e >= 0 for e in etas), seen  # a rate was measured in some stage
    assert any(p["eta_seconds"] is None for p in seen if p["done"] == 0), seen  # unknown before the first item
    assert job["progress"]["eta_seconds"] == 0
    poll_until(alice, waiting["id"], {"succeeded"})

    after = metrics(alice)
    stages = {s.labels["stage"]: s.value for s in after["circuitdiff_stage_duration_seconds"]
              if s.name.endswith("_count")}
    for stage in ("load", "clean", "influence", "alignment"):
        assert stages.get(stage, 0) >= stage_before.get(stage, 0) + 2, stages  # both jobs ran each stage
    lookups = after["circuitdiff_cache_lookups"]
    assert value(lookups, "circuitdiff_cache_lookups_total", cache="models") >= 4  # two models per job
    assert value(lookups, "circuitdiff_cache_lookups_total", cache="models", outcome="hit") >= 2  # the second job's
    assert value(lookups, "circuitdiff_cache_lookups_total", cache="activations") >= 4
    loaded = after["circuitdiff_worker_models_loaded"]
    assert max(s.value for s in loaded) >= 2 and all(s.labels["pool"] == "gpu" for s in loaded)
    assert after["circuitdiff_worker_device_memory_bytes"] == []  # no GPU on this machine
    assert value(after["circuitdiff_jobs"], "circuitdiff_jobs", status="succeeded") >= 2
    assert value(after["circuitdiff_job_duration_seconds"], "circuitdiff_job_duration_seconds_count") >= 2
    assert value(after["circuitdiff_engine_runs"], "circuitdiff_engine_runs_total") >= 2

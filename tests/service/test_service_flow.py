"""End to end through HTTP with a real Redis, the real API (uvicorn) and a real Celery worker running
the real engine on real tiny checkpoints: submit -> poll -> result, dedup, artifacts, report, listing,
ownership, metrics, cancellation."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from circuitdiff.result import ComparisonResult
from circuitdiff.vocabulary import SCHEMA_VERSION
from tests.conftest import require_zoo
from tests.service_fixtures import PY, REPO, broker_settled, poll_until, wait_for

CLI = str(Path(PY).parent / "circuitdiff")

IGNORED = ("created_at", "timings")  # wall-clock facts; every other number must match


def _comparable(result: dict) -> dict:
    out = {k: v for k, v in result.items() if k not in IGNORED}
    out["scan"] = {k: v for k, v in out["scan"].items() if k not in ("cache", "microbatch_rows")}  # hit/miss
    # depends on history; micro-batch sizes and the memory plan's free bytes on the memory free at run time
    out["models"] = {role: {**m, "placement": {k: v for k, v in (m.get("placement") or {}).items()
                                               if k != "available_bytes"}}
                     for role, m in out["models"].items()}
    return out


def _metric(client, name: str, labels: str = "") -> float:
    text = client.get("/metrics").text
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in /metrics:\n{text}"
    return float(m.group(1))


def test_submit_poll_result_dedup_artifacts_ownership(alice, bob, svc_worker, local_spec):
    runs_before = _metric(alice, "circuitdiff_engine_runs_total")
    r = alice.post("/v1/comparisons", json=local_spec)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/comparisons/{job['id']}"
    assert job["status"] in ("queued", "running") and "retry-after" in r.headers
    assert job["spec"]["ablation"] == "mean"  # the resolved spec: preset expanded

    # identical resubmission: the same job, 200, and the engine is not run again
    again = alice.post("/v1/comparisons", json=dict(local_spec))
    assert again.status_code == 200 and again.json()["id"] == job["id"]

    done = poll_until(alice, job["id"], {"succeeded", "failed"}, timeout=300)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1 and done["progress"]["stage"] == "done"
    assert "retry-after" not in alice.get(f"/v1/comparisons/{job['id']}").headers
    assert alice.post("/v1/comparisons", json=local_spec).json()["id"] == job["id"]
    assert _metric(alice, "circuitdiff_engine_runs_total") == runs_before + 1  # the worker ran once

    res = alice.get(f"/v1/comparisons/{job['id']}/result")
    assert res.status_code == 200 and res.headers["content-type"].startswith("application/json")
    service_result = res.json()
    ComparisonResult.model_validate(service_result)  # the current schema

    # artifacts: listed with sha256, streamed with ETag + Content-Length, conditional GET
    arts = alice.get(f"/v1/comparisons/{job['id']}/artifacts").json()["items"]
    names = {a["name"] for a in arts}
    assert "result.json" in names
    for a in arts:
        f = alice.get(a["href"])
        assert f.status_code == 200
        assert f.headers["etag"] == f'"{a["sha256"]}"' == f'"{hashlib.sha256(f.content).hexdigest()}"'
        assert int(f.headers["content-length"]) == a["size"] == len(f.content)
    cached = alice.get(arts[0]["href"], headers={"If-None-Match": f'"{arts[0]["sha256"]}"'})
    assert cached.status_code == 304
    # issue 11 #7: If-None-Match compares weakly and `*` matches; HEAD gives the headers only;
    # every media type served is one the committed schema documents
    for inm in (f'W/"{arts[0]["sha256"]}"', "*", f'"other", W/"{arts[0]["sha256"]}"'):
        assert alice.get(arts[0]["href"], headers={"If-None-Match": inm}).status_code == 304, inm
    assert alice.get(arts[0]["href"], headers={"If-None-Match": '"other"'}).status_code == 200
    for a in arts:
        head = alice.head(a["href"])
        assert head.status_code == 200 and head.content == b"", a
        assert int(head.headers["content-length"]) == a["size"] and head.headers["etag"] == f'"{a["sha256"]}"'
    doc = json.loads((REPO / "openapi" / "openapi.json").read_text())
    documented = doc["paths"]["/v1/comparisons/{job_id}/artifacts/{name}"]["get"]["responses"]["200"]["content"]
    assert {a["media_type"] for a in arts} <= set(documented), {a["media_type"] for a in arts}
    assert alice.get(f"/v1/comparisons/{job['id']}/artifacts/../../etc/passwd").status_code == 404

    # report (issue #7): served as HTML when the report package rendered it
    if "report.html" in names:
        page = alice.get(f"/v1/comparisons/{job['id']}/report")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<html" in page.text.lower()
        assert any(n.startswith("plots/") and n.endswith(".png") for n in names)

    # ownership: bob cannot see, fetch or cancel alice's job, and his list does not show it
    for path in ("", "/result", "/artifacts", "/report"):
        p = bob.get(f"/v1/comparisons/{job['id']}{path}")
        assert p.status_code == 404 and p.json()["code"] == "job_not_found"
    assert bob.delete(f"/v1/comparisons/{job['id']}").status_code == 404
    assert job["id"] not in {j["id"] for j in bob.get("/v1/comparisons").json()["items"]}
    assert job["id"] in {j["id"] for j in alice.get("/v1/comparisons", params={"status": "succeeded"}).json()["items"]}
    # bob submitting the same spec gets his own job: dedup never crosses keys
    theirs = bob.post("/v1/comparisons", json=local_spec)
    assert theirs.status_code == 202 and theirs.json()["id"] != job["id"]
    assert bob.delete(f"/v1/comparisons/{theirs.json()['id']}").status_code in (200, 202)
    poll_until(bob, theirs.json()["id"], {"cancelled", "succeeded"}, timeout=300)

    # the worker keeps loaded models across jobs: the next job on the same pair loads nothing
    other = alice.post("/v1/comparisons", json={**local_spec, "seed": 5}).json()
    other = poll_until(alice, other["id"], {"succeeded", "failed"}, timeout=300)
    assert other["status"] == "succeeded" and other["model_cache_hits"] == 2, other

    # finished: cancel is refused, result is final
    gone = alice.delete(f"/v1/comparisons/{job['id']}")
    assert gone.status_code == 409 and gone.json()["code"] == "job_finished"
    assert _metric(alice, "circuitdiff_jobs", '{status="succeeded"}') >= 1
    assert _metric(alice, "circuitdiff_job_duration_seconds_count") >= 1


def test_cancel_queued_and_running(alice, svc_worker, svc_redis, svc_data, local_spec):
    a = alice.post("/v1/comparisons", json={**local_spec, "seed": 11, "n_prompts": 24}).json()
    b = alice.post("/v1/comparisons", json={**local_spec, "seed": 12}).json()
    wait_for(lambda: alice.get(f"/v1/comparisons/{a['id']}").json()["status"] == "running", 120, "job a running")

    queued = alice.get(f"/v1/comparisons/{b['id']}").json()
    assert queued["status"] == "queued" and queued["queue_position"] == 1
    r = alice.delete(f"/v1/comparisons/{b['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"

    r = alice.delete(f"/v1/comparisons/{a['id']}")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    ended = poll_until(alice, a["id"], {"cancelled", "succeeded", "failed"}, timeout=120)
    assert ended["status"] == "cancelled", ended

    # the queued job's message still reaches the worker, which must skip it: once the broker holds
    # no queued and no unacknowledged message, that delivery has been handled
    wait_for(lambda: broker_settled(svc_redis.url), 60, "the broker to hand out and see acked every message")
    b_final = alice.get(f"/v1/comparisons/{b['id']}").json()
    assert b_final["status"] == "cancelled" and b_final["attempts"] == 0 and b_final["started_at"] is None
    assert not (svc_data / "results" / a["id"]).exists()
    assert not list((svc_data / "results").glob(f".{a['id']}.*"))  # partial files removed
    assert not (svc_data / "results" / b["id"]).exists()
    res = alice.get(f"/v1/comparisons/{a['id']}/result")
    assert res.status_code == 409 and res.json()["code"] == "job_cancelled"
    # a cancelled comparison does not block the same comparison from running again
    again = alice.post("/v1/comparisons", json={**local_spec, "seed": 12})
    assert again.status_code == 202 and again.json()["id"] != b["id"]
    alice.delete(f"/v1/comparisons/{again.json()['id']}")


def test_idempotency_key(alice, local_spec):
    spec = {**local_spec, "seed": 21}
    first = alice.post("/v1/comparisons", json=spec, headers={"Idempotency-Key": "req-21"})
    assert first.status_code == 202
    replay = alice.post("/v1/comparisons", json=spec, headers={"Idempotency-Key": "req-21"})
    assert replay.json()["id"] == first.json()["id"]
    clash = alice.post("/v1/comparisons", json={**spec, "seed": 22}, headers={"Idempotency-Key": "req-21"})
    assert clash.status_code == 422 and clash.json()["errors"][0]["field"] == "Idempotency-Key"
    alice.delete(f"/v1/comparisons/{first.json()['id']}")


def test_listing_pagination_and_long_poll(alice, local_spec):
    ids = []
    for seed in (31, 32, 33):
        ids.append(alice.post("/v1/comparisons", json={**local_spec, "seed": seed}).json()["id"])
    for jid in ids:
        alice.delete(f"/v1/comparisons/{jid}")
    for jid in ids:  # one may have started already: it stops at the next component boundary
        assert poll_until(alice, jid, {"cancelled", "succeeded", "failed"}, timeout=120)["status"] == "cancelled"
    page1 = alice.get("/v1/comparisons", params={"limit": 2, "status": "cancelled"}).json()
    assert [j["id"] for j in page1["items"]] == ids[::-1][:2]  # newest first
    page2 = alice.get("/v1/comparisons", params={"limit": 2, "status": "cancelled", "cursor": page1["next_cursor"]})
    assert page2.json()["items"][0]["id"] == ids[0]

    t0 = time.monotonic()
    alice.get(f"/v1/comparisons/{ids[0]}", params={"wait": 5})  # terminal: answers at once
    assert time.monotonic() - t0 < 2


def test_filtered_listing_offers_a_cursor_only_to_a_page_with_items(carol, svc_worker, svc_data, local_pair):
    """Issue 11 #5: carol's jobs are, oldest first, one failed and one cancelled. The filtered list
    of cancelled jobs has one item and no cursor (an older job exists, but not a cancelled one)."""
    broken = svc_data / "models" / "broken-listing"
    shutil.copytree(local_pair[1], broken, dirs_exist_ok=True)
    (broken / "config.json").write_text("{ not JSON")
    failed = carol.post("/v1/comparisons", json={"teacher": local_pair[0], "student": str(broken), "task": "ioi",
                                                 "n_prompts": 8, "seed": 41}).json()
    assert poll_until(carol, failed["id"], {"succeeded", "failed"}, timeout=300)["status"] == "failed"
    cancelled = carol.post("/v1/comparisons", json={"teacher": local_pair[0], "student": local_pair[1],
                                                    "task": "ioi", "n_prompts": 8, "seed": 42}).json()
    carol.delete(f"/v1/comparisons/{cancelled['id']}")
    assert poll_until(carol, cancelled["id"], {"cancelled", "succeeded", "failed"})["status"] == "cancelled"

    only = carol.get("/v1/comparisons", params={"status": "cancelled", "limit": 1}).json()
    assert [j["id"] for j in only["items"]] == [cancelled["id"]] and only["next_cursor"] is None
    only = carol.get("/v1/comparisons", params={"status": "failed", "limit": 1}).json()
    assert [j["id"] for j in only["items"]] == [failed["id"]] and only["next_cursor"] is None
    # unfiltered: a cursor to the older job, and none after it
    page1 = carol.get("/v1/comparisons", params={"limit": 1}).json()
    assert [j["id"] for j in page1["items"]] == [cancelled["id"]] and page1["next_cursor"]
    page2 = carol.get("/v1/comparisons", params={"limit": 1, "cursor": page1["next_cursor"]}).json()
    assert [j["id"] for j in page2["items"]] == [failed["id"]] and page2["next_cursor"] is None
    whole = carol.get("/v1/comparisons", params={"limit": 2}).json()
    assert len(whole["items"]) == 2 and whole["next_cursor"] is None


def test_catalogue_endpoints(alice, local_pair):
    models = alice.get("/v1/models").json()
    ids = {m["id"] for m in models["items"]}
    assert "zoo:gpt-teacher" in ids and local_pair[0] in ids
    tasks = {t["name"]: t for t in alice.get("/v1/tasks").json()["items"]}
    assert tasks["sequence"]["options"]["members"]["values"] == ["numerals", "numwords", "months"]
    v = alice.get("/version").json()
    assert v["api"] == "v1" and v["result_schema_version"] == SCHEMA_VERSION


def test_dataset_upload(alice, svc_data):
    lines = [
        {"prompt": "When Mary and John went to the store, John gave a drink to", "answer": "Mary", "distractor": "John"},
        {"prompt": "When Tom and Anna went to the park, Anna gave a ball to", "answer": "Tom", "distractor": "Anna"},
        {"prompt": "bad", "answer": "x"},
    ]
    body = "\n".join(json.dumps(x) for x in lines).encode()
    r = alice.post("/v1/datasets", content=body, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["n_items"] == 2 and info["rejected"] == [
        {"line": 3, "field": "distractor", "reason": "missing required field 'distractor'"}
    ]
    assert r.headers["location"] == f"/v1/datasets/{info['id']}"
    stored = (svc_data / "datasets" / f"{info['id']}.jsonl").read_bytes()
    assert hashlib.sha256(stored).hexdigest() == info["sha256"]
    # same items, different whitespace: the same content-addressed id
    again = alice.post("/v1/datasets", content=b"\n\n" + body.replace(b": ", b":")).json()
    assert again["id"] == info["id"]
    assert alice.get(f"/v1/datasets/{info['id']}").json()["n_items"] == 2


def _ioi_lines(names: list[tuple[str, str]]) -> list[dict]:
    return [{"prompt": f"When {a} and {b} went to the store, {b} gave a drink to", "answer": a, "distractor": b}
            for a, b in names]


def _ndjson(lines: list) -> bytes:
    return "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines).encode()


def test_dataset_reupload_describes_each_request(alice):
    """Issue 11 #1: the same items uploaded again, with and without bad lines: every answer reports
    the rejections of the request it answers (and its own time), not the first upload's."""
    good = _ioi_lines([("Mary", "John"), ("Tom", "Anna"), ("Anna", "Tom"), ("John", "Mary")])
    bad = ["not json", {"prompt": "x"}, {"answer": "a"}, "[1, 2]", {"prompt": "p", "answer": "a"}]
    first = alice.post("/v1/datasets", content=_ndjson(good))
    assert first.status_code == 201 and first.json()["n_rejected"] == 0
    second = alice.post("/v1/datasets", content=_ndjson(good + bad))
    assert second.status_code == 201
    s = second.json()
    assert s["id"] == first.json()["id"] and s["n_items"] == 4
    assert s["n_rejected"] == 5 and [r["line"] for r in s["rejected"]] == [5, 6, 7, 8, 9]
    assert datetime.fromisoformat(s["created_at"]) > datetime.fromisoformat(first.json()["created_at"])
    assert alice.get(f"/v1/datasets/{s['id']}").json()["n_rejected"] == 5  # the latest upload
    third = alice.post("/v1/datasets", content=_ndjson(good)).json()
    assert third["n_rejected"] == 0 and third["rejected"] == []  # none of the previous upload's lines
    assert alice.get(f"/v1/datasets/{s['id']}").json()["n_rejected"] == 0


def test_datasets_belong_to_the_key_that_uploaded_them(alice, bob, local_pair):
    """Issue 11 #2: another key neither reads a dataset nor names it in a comparison (404/422 as
    for a missing one); uploading the same items makes it its own."""
    lines = _ioi_lines([("Kate", "Paul"), ("Paul", "Kate")])
    ds = alice.post("/v1/datasets", content=_ndjson(lines)).json()
    assert alice.get(f"/v1/datasets/{ds['id']}").status_code == 200
    theirs = bob.get(f"/v1/datasets/{ds['id']}")
    assert theirs.status_code == 404 and theirs.json()["code"] == "dataset_not_found"
    spec = {"teacher": local_pair[0], "student": local_pair[1], "task": "custom", "dataset": ds["id"], "n_prompts": 2}
    named = bob.post("/v1/comparisons", json=spec)
    assert named.status_code == 422 and named.json()["code"] == "dataset_not_found", named.text
    assert named.json()["errors"][0]["field"] == "dataset"
    own = bob.post("/v1/datasets", content=_ndjson(lines + ["junk"])).json()
    assert own["id"] == ds["id"] and own["n_rejected"] == 1
    assert alice.get(f"/v1/datasets/{ds['id']}").json()["n_rejected"] == 0  # alice's record untouched


def test_custom_dataset_comparison(alice, svc_worker, local_pair):
    """An uploaded dataset id in the spec: validated at submit, resolved by the worker for the engine."""
    from circuitdiff.tasks.generate import ioi_items

    items = ioi_items(6, seed=3)
    body = "\n".join(json.dumps({"prompt": it.prompt, "answer": it.answer, "distractor": it.distractor,
                                 "corrupted_prompt": it.corrupted_prompt}) for it in items)
    ds = alice.post("/v1/datasets", content=body.encode()).json()
    assert ds["n_items"] == 6
    spec = {"teacher": local_pair[0], "student": local_pair[1], "task": "custom", "dataset": ds["id"], "n_prompts": 6}
    job = alice.post("/v1/comparisons", json=spec).json()
    done = poll_until(alice, job["id"], {"succeeded", "failed"}, timeout=300)
    assert done["status"] == "succeeded", done
    assert done["fingerprints"]["teacher"].startswith("sha256:")
    result = alice.get(f"/v1/comparisons/{job['id']}/result").json()
    assert result["task"]["name"] == "custom" and result["task"]["n_prompts"] + result["task"]["n_rejected"] == 6


def test_a_job_on_an_uploaded_dataset_names_lines_as_the_upload_did(alice, svc_worker, local_pair):
    """#27 §5: the stored file keeps only the valid lines, yet a job on the upload names a prompt the
    models cannot use by its line in the *uploaded* file, and records the same "lines dropped"
    sentence a local run of that file records."""
    from circuitdiff.tasks.custom import dropped_summary, numbered_lines
    from circuitdiff.tasks.generate import ioi_items

    good = [json.dumps({"prompt": it.prompt, "answer": it.answer, "distractor": it.distractor})
            for it in ioi_items(4, seed=5)]
    unusable = json.dumps({"prompt": "When Mary and John went to the store, John gave a drink to",
                           "answer": "Zyxwvutsrqponmlkj", "distractor": "John"})  # many tokens: the engine refuses it
    body = "\n".join([good[0], "not json", "", good[1], unusable, good[2], good[3]]).encode()
    ds = alice.post("/v1/datasets", content=body).json()
    assert [r["line"] for r in ds["rejected"]] == [2] and ds["n_items"] == 5
    spec = {"teacher": local_pair[0], "student": local_pair[1], "task": "custom", "dataset": ds["id"], "n_prompts": 5}
    job = alice.post("/v1/comparisons", json=spec).json()
    done = poll_until(alice, job["id"], {"succeeded", "failed"}, timeout=300)
    assert done["status"] == "succeeded", done
    task = alice.get(f"/v1/comparisons/{job['id']}/result").json()["task"]
    assert [r["line"] for r in task["rejected"]] == [5], task["rejected"]  # the uploaded file's line 5
    numbered, dropped = numbered_lines(body)
    local = dropped_summary(dropped, len(numbered) + len(dropped), f"dataset {ds['id']}")
    assert local in done["warnings"], done["warnings"]


def test_engine_failure_is_sanitized_and_resubmittable(alice, svc_worker, svc_data, local_pair):
    """A checkpoint that passes the service's checks but cannot be loaded: the job fails with the
    engine's stable code and no traceback, and the same spec may be submitted again."""
    broken = svc_data / "models" / "broken"
    shutil.copytree(local_pair[1], broken, dirs_exist_ok=True)
    (broken / "config.json").write_text("{ this is not JSON")  # present, so the service accepts it
    spec = {"teacher": local_pair[0], "student": str(broken), "task": "ioi", "n_prompts": 8}
    job = alice.post("/v1/comparisons", json=spec).json()
    done = poll_until(alice, job["id"], {"succeeded", "failed"}, timeout=300)
    assert done["status"] == "failed", done
    err = done["error"]
    assert err["code"] == "model_load_failed" and err["field"] == "student.id", err
    assert err["fix"], err  # what to do about it, even where the engine's error named nothing
    assert "Traceback" not in err["detail"] and 'File "' not in err["detail"]
    res = alice.get(f"/v1/comparisons/{job['id']}/result")
    assert res.status_code == 409 and res.json()["code"] == "job_failed"
    assert not (svc_data / "results" / job["id"]).exists()
    again = alice.post("/v1/comparisons", json=spec)
    assert again.status_code == 202 and again.json()["id"] != job["id"]  # a failure does not block a retry
    alice.delete(f"/v1/comparisons/{again.json()['id']}")
    poll_until(alice, again.json()["id"], {"cancelled", "failed"}, timeout=120)


def test_result_over_http_equals_cli(alice, svc_worker, tmp_path):
    """Submit -> poll -> result through HTTP gives the numbers `circuitdiff compare` gives for the
    same spec, on the bundled zoo pair (what the README and `make run` advertise)."""
    require_zoo("gpt-teacher", "gpt-student")
    teacher, student = "zoo:gpt-teacher", "zoo:gpt-student"
    spec = {"teacher": teacher, "student": student, "task": "ioi", "n_prompts": 8}
    job = alice.post("/v1/comparisons", json=spec).json()
    done = poll_until(alice, job["id"], {"succeeded", "failed"}, timeout=300)
    assert done["status"] == "succeeded", done
    assert done["fingerprints"]["teacher"].startswith("sha256:")
    service_result = alice.get(f"/v1/comparisons/{job['id']}/result").json()
    out = tmp_path / "cli.json"
    cli = subprocess.run(
        [CLI, "compare", "--teacher", teacher, "--student", student, "--task", "ioi", "--prompts", "8",
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "CIRCUITDIFF_CACHE_DIR": str(tmp_path / "cli-cache")},
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    cli_result = json.loads(out.read_text())
    assert service_result["alignment"]["score"] == cli_result["alignment"]["score"]
    assert _comparable(service_result) == _comparable(cli_result)


def test_html_pages_carry_a_policy_and_the_report_runs_under_it(alice, svc_worker, svc_api, local_spec):
    """Issue #24 item 9: every response says nosniff; every HTML page has a Content-Security-Policy;
    the report's own script (allowed by hash) runs under it in a real browser, with no violation."""
    from tests.report_browser import Browser
    from tests.service_fixtures import ALICE_KEY

    job = alice.post("/v1/comparisons", json=local_spec).json()
    assert poll_until(alice, job["id"], {"succeeded", "failed"})["status"] == "succeeded"
    report = alice.get(f"/v1/comparisons/{job['id']}/report")
    policy = report.headers["content-security-policy"]
    assert report.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in policy and "'sha256-" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    for path in ("/docs", "/v1/comparisons", "/health", "/nope"):
        r = alice.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        if r.headers["content-type"].startswith("text/html"):
            assert "default-src 'none'" in r.headers["content-security-policy"], path
    with Browser() as b:
        b.call("Network.setExtraHTTPHeaders", headers={"Authorization": f"Bearer {ALICE_KEY}"})
        b.open(f"{svc_api}/v1/comparisons/{job['id']}/report")
        assert b.eval("document.documentElement.classList.contains('js')") is True  # its script ran
        assert b.console_errors() == []  # no CSP violation, nothing blocked
        assert all(u.startswith(svc_api) or u.startswith("data:") for u in b.requests())
        b.open(f"{svc_api}/docs")
        assert b.eval("!!document.querySelector('.swagger-ui')") is True and b.console_errors() == []


def test_a_comparison_with_a_control_student_over_http(alice, svc_worker, local_pair):
    """#29 §1 through the service: a control is checked and fingerprinted like the student, the worker
    compares it with the teacher, and the result reads the score against it."""
    teacher, student = local_pair
    spec = {"teacher": teacher, "student": student, "task": "ioi", "n_prompts": 8, "controls": [teacher]}
    r = alice.post("/v1/comparisons", json=spec)
    assert r.status_code == 202, r.text
    job = r.json()
    assert set(job["fingerprints"]) == {"teacher", "student", "controls.0"}
    assert job["spec"]["controls"] == [{"id": teacher, "revision": None}]
    assert poll_until(alice, job["id"], {"succeeded", "failed"})["status"] == "succeeded"
    a = alice.get(f"/v1/comparisons/{job['id']}/result").json()["alignment"]
    (control,) = a["controls"]
    assert control["model"] == teacher and control["score"] == pytest.approx(1.0, abs=1e-6)  # the teacher itself
    assert a["verdict"] in ("not_performing", "not_above_chance", "same_layout") and a["verdict_reason"]

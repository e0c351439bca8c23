"""Bad requests against the real API (uvicorn subprocess, real Redis): each answers a 4xx
problem+json naming the field, and none leaves a job record or a file behind."""

from __future__ import annotations

import json
import os

import pytest

from circuitdiff.tasks.custom import MAX_LINES
from tests.service_fixtures import SMALL_SPEC, data_snapshot, redis_snapshot

PROBLEM = "application/problem+json"


def _spec(**over):
    return {**SMALL_SPEC, **over}


@pytest.fixture
def nothing_left_behind(svc_redis, svc_data):
    before_keys, before_files = redis_snapshot(svc_redis.url), data_snapshot(svc_data)
    yield
    assert redis_snapshot(svc_redis.url) == before_keys
    assert data_snapshot(svc_data) == before_files


def assert_problem(resp, status: int, field: str, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    for k in ("type", "title", "status", "detail", "code"):
        assert k in body, body
    assert body["status"] == status
    items = {e["field"]: e for e in body.get("errors") or []}
    assert field in items, body
    if code:  # the field's own code; the top-level code is the first error's
        assert items[field]["code"] == code, body
    for e in body["errors"]:
        assert e["fix"], e
    return body


def test_unknown_task(alice, nothing_left_behind):
    body = assert_problem(alice.post("/v1/comparisons", json=_spec(task="ioi-typo")), 422, "task", "unknown_task")
    assert "ioi" in body["errors"][0]["fix"]


def test_wrong_option_type(alice, nothing_left_behind):
    assert_problem(alice.post("/v1/comparisons", json=_spec(n_prompts="many")), 422, "n_prompts")
    # strict types (#24 item 11): these were taken as 8, 1 and 1
    assert_problem(alice.post("/v1/comparisons", json=_spec(n_prompts="8")), 422, "n_prompts")
    assert_problem(alice.post("/v1/comparisons", json=_spec(n_prompts=True)), 422, "n_prompts")
    assert_problem(alice.post("/v1/comparisons", json=_spec(seed=1.0)), 422, "seed")
    assert_problem(alice.post("/v1/comparisons", json=_spec(circuits={"null_draws": "50"})), 422, "circuits.null_draws")
    # and hub ids that cannot be hub repositories (#24 item 10): "0" became hub:0@main
    for bad in ("0", "org/-x", "a--b", "x" * 97):
        assert_problem(alice.post("/v1/comparisons", json=_spec(student=bad)), 422, "student.id", "invalid_model")
    body = assert_problem(
        alice.post("/v1/comparisons", json=_spec(task="sequence", task_options={"members": 7})),
        422, "task_options.members", "invalid_task_option",
    )
    assert "numerals" in body["errors"][0]["fix"]
    assert_problem(alice.post("/v1/comparisons", json=_spec(task_options={"colour": "red"})), 422, "task_options.colour")
    assert_problem(alice.post("/v1/comparisons", json=_spec(preset="fast")), 422, "preset")
    assert_problem(alice.post("/v1/comparisons", json=_spec(circuits={"sweep": [0, 20]})), 422, "circuits.sweep",
                   "invalid_circuits")
    assert_problem(alice.post("/v1/comparisons", json=_spec(circuits={"threshold": 120})), 422, "circuits.threshold")
    assert_problem(alice.post("/v1/comparisons", json=_spec(bogus=1)), 422, "bogus", "unknown_field")
    assert_problem(alice.post("/v1/comparisons", json=_spec(teacher="zoo:nope")), 422, "teacher.id", "unknown_model")
    assert_problem(alice.post("/v1/comparisons", json=_spec(student={"id": "zoo:gpt-student", "revision": "v1"})),
                   422, "student.revision")
    spec = dict(SMALL_SPEC)
    del spec["task"]
    assert_problem(alice.post("/v1/comparisons", json=spec), 422, "task", "missing_field")


def test_malformed_json(alice, nothing_left_behind):
    r = alice.post("/v1/comparisons", content=b'{"teacher": ', headers={"content-type": "application/json"})
    assert_problem(r, 400, "body", "invalid_json")


def test_model_path_outside_roots(alice, svc_data, tmp_path, nothing_left_behind):
    outside = tmp_path / "ckpt"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (outside / "model.safetensors").write_bytes(b"x")
    assert_problem(alice.post("/v1/comparisons", json=_spec(teacher=str(outside))), 422, "teacher.id",
                   "path_outside_roots")
    # a symlink inside the root that points outside is still outside
    link = svc_data / "models" / "sneaky"
    os.symlink(outside, link)
    try:
        assert_problem(alice.post("/v1/comparisons", json=_spec(student=str(link))), 422, "student.id",
                       "path_outside_roots")
    finally:
        link.unlink()


def test_model_path_with_dotdot(alice, svc_data, nothing_left_behind):
    sneaky = f"{svc_data}/models/../models/x"
    assert_problem(alice.post("/v1/comparisons", json=_spec(teacher=sneaky)), 422, "teacher.id", "path_traversal")
    assert_problem(alice.post("/v1/comparisons", json=_spec(teacher="./../etc")), 422, "teacher.id")


def test_controls_are_checked_like_the_student(alice, svc_data, nothing_left_behind):
    """#29 §1: a control under spec.controls is refused with its own field, and at most 4 are taken."""
    missing = str(svc_data / "models" / "no-such-control")
    assert_problem(alice.post("/v1/comparisons", json=_spec(controls=[missing])), 422, "controls.0.id")
    assert_problem(alice.post("/v1/comparisons", json=_spec(controls=["zoo:gpt-student"] * 5)), 422, "controls")
    assert_problem(alice.post("/v1/comparisons", json=_spec(controls=["0"])), 422, "controls.0.id")


def test_missing_local_model_and_dataset(alice, svc_data, nothing_left_behind):
    assert_problem(alice.post("/v1/comparisons", json=_spec(teacher=f"{svc_data}/models/absent")), 422,
                   "teacher.id", "path_not_found")
    assert_problem(alice.post("/v1/comparisons", json=_spec(task="custom", dataset="ds_" + "0" * 24)), 422,
                   "dataset", "dataset_not_found")
    assert_problem(alice.post("/v1/comparisons", json=_spec(dataset="ds_" + "0" * 24)), 422, "dataset")


def test_nonexistent_job(alice, nothing_left_behind):
    for path in ("", "/result", "/artifacts", "/report", "/artifacts/result.json"):
        assert_problem(alice.get(f"/v1/comparisons/j0000000000000000000000{path}"), 404, "job_id", "job_not_found")
    assert_problem(alice.delete("/v1/comparisons/j0000000000000000000000"), 404, "job_id", "job_not_found")


def test_auth_required(svc_api, nothing_left_behind):
    import httpx

    r = httpx.get(svc_api + "/v1/comparisons")
    assert_problem(r, 401, "Authorization", "unauthorized")
    r = httpx.get(svc_api + "/v1/tasks", headers={"Authorization": "Bearer wrong"})
    assert_problem(r, 401, "Authorization", "unauthorized")


def test_oversized_body(alice, nothing_left_behind):
    big = _spec(task_options={"x" * 100_000: 1})
    assert_problem(alice.post("/v1/comparisons", json=big), 413, "body", "body_too_large")

    def chunks():  # no Content-Length: the limit still holds
        yield b'{"teacher": "zoo:gpt-teacher", "pad": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"}'

    r = alice.post("/v1/comparisons", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(r, 413, "body", "body_too_large")


def test_malformed_dataset_upload(alice, nothing_left_behind):
    bad = b'{"prompt": "a", "answer": 3, "distractor": "b"}\nnot json\n[1, 2]\n{"prompt": "p", "answer": "x"}\n'
    body = assert_problem(alice.post("/v1/datasets", content=bad), 422, "lines[1].answer", "invalid_dataset_line")
    assert body["code"] == "invalid_dataset"
    fields = {e["field"] for e in body["errors"]}
    assert {"lines[2]", "lines[3]", "lines[4].distractor"} <= fields
    assert_problem(alice.post("/v1/datasets", content=b""), 422, "body", "empty_dataset")
    assert_problem(alice.get("/v1/datasets/ds_nothere"), 404, "dataset_id", "dataset_not_found")


def _peak_rss_kib(pid: int) -> int:
    return next(int(x.split()[1]) for x in open(f"/proc/{pid}/status") if x.startswith("VmHWM:"))


def test_local_dataset_is_size_checked_before_it_is_read(alice, svc_api_proc, svc_data, nothing_left_behind):
    """A 1 GB file under a model root named as a dataset: 413 on the `dataset` field, without the API
    reading it (before the fix its peak memory grew by the file's size before the 413)."""
    big = svc_data / "models" / "huge.jsonl"
    with big.open("wb") as f:
        f.truncate(2**30)  # sparse: costs no disk
    try:
        before = _peak_rss_kib(svc_api_proc[0].pid)
        r = alice.post("/v1/comparisons", json=_spec(task="custom", dataset=str(big)))
        assert_problem(r, 413, "dataset", "dataset_too_large")
        assert _peak_rss_kib(svc_api_proc[0].pid) - before < 100 * 1024  # KiB: far below the file's 1 GiB
    finally:
        big.unlink()


def test_local_dataset_without_a_valid_line_is_refused_like_an_upload(alice, svc_data, nothing_left_behind):
    bad = svc_data / "models" / "bad.jsonl"
    bad.write_bytes(b'not json\n{"prompt": "p", "answer": "x"}\n')
    try:
        r = alice.post("/v1/comparisons", json=_spec(task="custom", dataset=str(bad)))
        body = assert_problem(r, 422, "dataset.lines[1]", "invalid_dataset_line")  # before the fix: 202
        assert body["code"] == "invalid_dataset" and "dataset.lines[2].distractor" in {e["field"] for e in body["errors"]}
    finally:
        bad.unlink()


def _dataset(n_lines: int) -> bytes:
    item = {"prompt": "When Mary and John went to the store, John gave a drink to", "answer": "Mary",
            "distractor": "John"}
    return "".join(json.dumps({**item, "prompt": f"{item['prompt']} ({i})"}) + "\n" for i in range(n_lines)).encode()


def test_dataset_the_engine_cannot_run_is_refused_at_upload(alice, nothing_left_behind):
    """6,000 valid lines: more than a comparison can use (n_prompts <= 5,000), so the upload is refused
    whole, with the limit named, instead of being stored and failing later in the worker."""
    body = _dataset(6000)
    r = alice.post("/v1/datasets", content=body, headers={"content-type": "application/x-ndjson"})
    problem = assert_problem(r, 413, "body", "dataset_too_large")
    assert problem["code"] == "dataset_too_large"
    assert f"{MAX_LINES:,} lines" in problem["detail"] and "6,000" in problem["detail"]


def test_dataset_at_the_limit_is_accepted(alice):
    r = alice.post("/v1/datasets", content=_dataset(MAX_LINES), headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 201, r.text
    assert r.json()["n_items"] == MAX_LINES and r.json()["n_rejected"] == 0


def test_bad_query_and_header_parameters(alice, nothing_left_behind):
    assert_problem(alice.get("/v1/comparisons", params={"limit": 0}), 422, "limit")
    assert_problem(alice.get("/v1/comparisons", params={"status": "done"}), 422, "status")
    r = alice.post("/v1/comparisons", json=SMALL_SPEC, headers={"Idempotency-Key": "has space"})
    assert_problem(r, 422, "idempotency-key")


def test_unknown_route_and_method(alice):
    r = alice.get("/v1/nothing")
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    r = alice.put("/v1/tasks")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"


# ------------------------------------------------------------------ issue 11 #6: errors that say what is wrong
def test_json_sent_as_a_form_names_the_content_type(alice, nothing_left_behind):
    """curl -d without -H sends application/x-www-form-urlencoded: the body is fine, the type is not."""
    r = alice.post("/v1/comparisons", content=json.dumps(SMALL_SPEC),
                   headers={"content-type": "application/x-www-form-urlencoded"})
    body = assert_problem(r, 415, "Content-Type", "unsupported_media_type")
    assert "application/json" in body["errors"][0]["fix"] and "dictionary" not in body["detail"]


def test_bad_cursor_says_where_cursors_come_from(alice, nothing_left_behind):
    body = assert_problem(alice.get("/v1/comparisons", params={"cursor": "NOT-A-CURSOR"}), 422, "cursor")
    fix = body["errors"][0]["fix"]
    assert "next_cursor" in fix and "lengthen" not in fix


@pytest.mark.parametrize("payload, says", [
    (b'{"teacher": "zoo:gpt-teacher", "task": "\xff\xfe"}', "UTF-8"),
    (b"[" * 20_000 + b"]" * 20_000, "nested"),
], ids=["not-utf8", "deeply-nested"])
def test_unreadable_json_body_is_invalid_json_with_errors(alice, nothing_left_behind, payload, says):
    r = alice.post("/v1/comparisons", content=payload, headers={"content-type": "application/json"})
    body = assert_problem(r, 400, "body", "invalid_json")
    assert body["code"] == "invalid_json" and says in body["errors"][0]["message"]


# ------------------------------------------------------------------ issue 11 #7: what the contract says is what it does
def test_options_and_405_list_every_method_of_the_path(alice):
    r = alice.options("/v1/comparisons/j0000000000000000000000")
    assert r.status_code == 204
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "DELETE", "OPTIONS"}
    r = alice.options("/v1/comparisons")
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST", "OPTIONS"}
    r = alice.put("/v1/comparisons/j0000000000000000000000")
    assert r.status_code == 405 and r.headers["content-type"].startswith(PROBLEM)
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "DELETE", "OPTIONS"}


def test_empty_task_is_schema_invalid():
    """The committed schema refuses what the API refuses: `task` is one of the known tasks."""
    from circuitdiff.catalogue import TASKS
    from tests.service_fixtures import REPO

    doc = json.loads((REPO / "openapi" / "openapi.json").read_text())
    task = doc["components"]["schemas"]["ComparisonSpec"]["properties"]["task"]
    assert task["enum"] == list(TASKS) and "" not in task["enum"]


@pytest.mark.parametrize("head", [
    b"POST /v1/comparisons HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/comparisons HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/comparisons HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000000000000\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n",
])
def test_requests_the_http_server_cannot_parse_get_a_problem_too(svc_api, head):
    """#24 item 13: these never reach the app; uvicorn answered them with a plain-text 400."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(svc_api)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(head)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status, _, rest = data.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 400"), data
    assert b"content-type: application/problem+json" in headers.lower(), data
    problem = json.loads(body)
    assert problem["code"] == "invalid_http" and problem["status"] == 400 and problem["errors"][0]["fix"]


def test_an_unknown_field_gets_a_did_you_mean(alice, nothing_left_behind):
    """#27: `prompts` is the CLI's old spelling; the API's is `n_prompts`, and the fix says so."""
    body = {k: v for k, v in _spec().items() if k != "n_prompts"}
    r = alice.post("/v1/comparisons", json={**body, "prompts": 8})
    item = assert_problem(r, 422, "prompts", "unknown_field")["errors"][0]
    assert "did you mean `n_prompts`?" in item["fix"], item
    r = alice.post("/v1/comparisons", json={**body, "zzzz_nothing_like_it": 1})
    assert "did you mean" not in assert_problem(r, 422, "zzzz_nothing_like_it")["errors"][0]["fix"]

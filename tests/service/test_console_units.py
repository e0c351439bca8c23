"""The console's rules that need no browser: the session cookie (signature, expiry, sign-out, a
removed key), the CSRF token, the command line a resolved spec becomes (parsed back by the CLI's own
parser), the OpenAPI security scheme and request examples, and the dataset listing's scoping over
real HTTP (the session API and its Redis)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from circuitdiff.spec import ComparisonSpec
from jobs.settings import hash_key
from service.auth import (
    LOCAL_OWNER, csrf_ok, csrf_token, is_revoked, owner_of, request_owner, revoke, session_cookie, session_owner,
    session_secret,
)
from service.console.command import compare_argv, compare_command
from service.problems import Problem

REPO = Path(__file__).resolve().parents[2]
KEYS = [hash_key("alice"), hash_key("bob")]
SECRET = b"s" * 32
NEVER = lambda cookie: False  # noqa: E731


def test_a_session_names_its_owner_until_it_expires_and_only_while_its_key_is_configured():
    alice = owner_of(KEYS[0])
    cookie = session_cookie(alice, SECRET, now=1000.0)
    assert "alice" not in cookie
    assert session_owner(cookie, KEYS, SECRET, now=1001.0) == alice
    assert session_owner(cookie, KEYS, SECRET, now=1000.0 + 13 * 3600) is None  # expired
    assert session_owner(cookie, KEYS[1:], SECRET, now=1001.0) is None  # its key was removed
    assert session_owner(cookie, KEYS, b"t" * 32, now=1001.0) is None  # another deployment's secret
    bob = owner_of(KEYS[1])
    forged = cookie.replace(alice, bob, 1)  # another owner under alice's signature
    assert session_owner(forged, KEYS, SECRET, now=1001.0) is None
    later = cookie.replace(".", ".9", 1)  # a later expiry under the same signature
    assert session_owner(later, KEYS, SECRET, now=1001.0) is None
    assert session_owner("garbage", KEYS, SECRET) is None


def test_the_cookie_reads_but_never_changes_and_the_bearer_key_wins():
    cookie = session_cookie(owner_of(KEYS[0]), SECRET)
    assert request_owner("", cookie, "GET", KEYS, SECRET, NEVER) == owner_of(KEYS[0])
    assert request_owner("", cookie, "HEAD", KEYS, SECRET, NEVER) == owner_of(KEYS[0])
    for method in ("POST", "DELETE", "PATCH", "PUT"):
        with pytest.raises(Problem) as e:
            request_owner("", cookie, method, KEYS, SECRET, NEVER)
        assert e.value.status == 401 and e.value.errors[0]["field"] == "Authorization"
    assert request_owner("Bearer bob", cookie, "DELETE", KEYS, SECRET, NEVER) == owner_of(KEYS[1])
    with pytest.raises(Problem):  # a wrong bearer key is refused even beside a good cookie
        request_owner("Bearer nobody", cookie, "GET", KEYS, SECRET, NEVER)
    with pytest.raises(Problem):  # signed out
        request_owner("", cookie, "GET", KEYS, SECRET, lambda c: c == cookie)
    assert request_owner("", None, "POST", [], SECRET, NEVER) == LOCAL_OWNER  # no keys: open, as the API


def test_sign_out_is_remembered_until_the_cookie_would_have_expired(svc_redis):
    r = redis.Redis.from_url(svc_redis.url)
    try:
        cookie = session_cookie(owner_of(KEYS[0]), SECRET)
        assert not is_revoked(r, cookie)
        revoke(r, cookie)
        assert is_revoked(r, cookie)
        key = "cd:session-revoked:" + cookie.rpartition(".")[2]
        assert 12 * 3600 - 60 < r.ttl(key) <= 12 * 3600
        stale = session_cookie(owner_of(KEYS[0]), SECRET, now=0)  # long expired: nothing to remember
        revoke(r, stale)
        assert not is_revoked(r, stale)
        r.delete(key)
    finally:
        r.close()


def test_csrf_token_is_bound_to_the_browser_nonce():
    token = csrf_token("a" * 32, SECRET)
    assert csrf_ok("a" * 32, token, SECRET)
    assert not csrf_ok("b" * 32, token, SECRET)
    assert not csrf_ok(None, token, SECRET) and not csrf_ok("a" * 32, None, SECRET) and not csrf_ok("a" * 32, "", SECRET)


def test_session_secret_is_made_once_and_private(tmp_path):
    first = session_secret(tmp_path / "data")
    assert len(first) == 32 and session_secret(tmp_path / "data") == first
    assert (tmp_path / "data" / ".session-secret").stat().st_mode & 0o077 == 0


SPECS = [
    {"teacher": "zoo:gpt-teacher", "student": "zoo:gpt-student", "task": "ioi", "n_prompts": 8},
    {"teacher": {"id": "org/teacher", "revision": "v2"}, "student": "zoo:gpt-student", "task": "sequence",
     "task_options": {"members": "months"}, "preset": "paper", "scan": "screened", "screen_top": 12,
     "circuits": {"threshold": 15, "sweep": [10, 20], "null_draws": 300}, "controls": ["zoo:gpt-control-scratch"],
     "metric": "answer_prob", "seed": 3, "bootstrap": 0},
]


@pytest.mark.parametrize("data", SPECS, ids=["small", "many-flags"])
def test_the_command_line_runs_the_same_spec(data):
    """The line the job page shows, parsed by the CLI's own parser, gives the job's resolved spec."""
    spec = ComparisonSpec.model_validate(data).resolve_known().model_dump(mode="json")
    argv = compare_argv(spec)
    assert compare_command(spec).startswith("circuitdiff compare --teacher ")
    code = ("import json, sys\nfrom circuitdiff.cli import build_parser, spec_from_args\n"
            "args = build_parser().parse_args(json.loads(sys.argv[1]))\n"
            "print(json.dumps(spec_from_args(args).resolve_known().model_dump(mode='json')))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(argv[1:])], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout) == spec


def test_openapi_declares_the_bearer_scheme_and_an_example_for_every_body():
    from watches.request import WatchSpec
    from service.api.v1.watches import WatchPatch

    doc = json.loads((REPO / "openapi" / "openapi.json").read_text())
    assert doc["components"]["securitySchemes"]["bearer"] == {**doc["components"]["securitySchemes"]["bearer"],
                                                               "type": "http", "scheme": "bearer"}
    models = {("/v1/comparisons", "post"): ComparisonSpec, ("/v1/watches", "post"): WatchSpec,
              ("/v1/watches/{watch_id}", "patch"): WatchPatch}
    bodies = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/"):
                assert op["security"] == [{"bearer": []}], (path, method)
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                bodies += 1
                assert "example" in content, (path, method, media)
                if (path, method) in models:
                    models[(path, method)].model_validate(content["example"])  # a body the API accepts
    assert bodies == 4


def test_dataset_listing_items_and_download_are_scoped_to_the_key(alice, bob):
    lines = [{"prompt": "When Mary and John went to the store, John gave a drink to", "answer": " Mary",
              "distractor": " John"},
             {"prompt": "When Tom and Anna went to the park, Anna gave a ball to", "answer": " Tom", "distractor": " Anna"}]
    body = "\n".join(json.dumps(x) for x in lines) + "\n"
    up = alice.post("/v1/datasets", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert up.status_code == 201
    did = up.json()["id"]
    assert did in [d["id"] for d in alice.get("/v1/datasets").json()["items"]]
    assert did not in [d["id"] for d in bob.get("/v1/datasets").json()["items"]]
    page = alice.get(f"/v1/datasets/{did}/items", params={"limit": 1}).json()
    assert page["total"] == 2 and page["next_offset"] == 1 and page["items"][0]["answer"] == " Mary"
    last = alice.get(f"/v1/datasets/{did}/items", params={"offset": 1}).json()
    assert last["next_offset"] is None and last["items"][0]["answer"] == " Tom"
    down = alice.get(f"/v1/datasets/{did}/download")
    assert down.status_code == 200 and down.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in down.headers["content-disposition"]
    again = alice.post("/v1/datasets", content=down.content, headers={"Content-Type": "application/x-ndjson"})
    assert again.json()["id"] == did  # the download uploads back to the same dataset
    for path in (f"/v1/datasets/{did}", f"/v1/datasets/{did}/items", f"/v1/datasets/{did}/download"):
        r = bob.get(path)
        assert r.status_code == 404 and r.json()["code"] == "dataset_not_found", path
    assert alice.get(f"/v1/datasets/{did}/items", params={"limit": 0}).json()["errors"][0]["field"] == "limit"


def test_with_no_keys_the_console_is_open_and_a_queued_job_shows_its_place_and_cancels(tmp_path):
    """No API keys: every page answers without signing in, as the API does, and says so. With no
    worker on its own Redis, a submitted job stays queued: the list shows its queue position, and
    its cancel form (with the page's CSRF token) cancels it."""
    import re

    import httpx

    from launcher.redis_server import RedisServer
    from tests.service_fixtures import SMALL_SPEC, service_env, start_api

    server = RedisServer(tmp_path / "redis").start()
    env = service_env(server.url, tmp_path / "data", keys=())
    proc, base = start_api(env, tmp_path)
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            for path in ("/", "/jobs/new", "/datasets", "/watches", "/watches/new"):
                r = c.get(path)
                assert r.status_code == 200 and "open console" in r.text, path
                policy = r.headers["content-security-policy"]
                assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
            assert "no API keys configured" in c.get("/sign-in").text
            assert c.get("/v1/datasets").json() == {"items": []}
            r = c.post("/jobs/new", data={"teacher": "zoo:gpt-teacher"})  # still no form without its token
            assert r.status_code == 403 and "csrf_failed" in r.text
            job = c.post("/v1/comparisons", json=SMALL_SPEC).json()
            page = c.get("/").text
            assert "position 1 in the queue" in page
            token = re.search(r'name="csrf" value="([0-9a-f]+)"', page)[1]
            r = c.post(f"/jobs/{job['id']}/cancel", data={"csrf": token, "back": "/"})
            assert r.status_code == 303 and r.headers["location"] == "/"
            assert c.get(f"/v1/comparisons/{job['id']}").json()["status"] == "cancelled"
            r = c.post(f"/jobs/{job['id']}/cancel", data={"csrf": token}, headers={"Origin": "http://evil.example"})
            assert r.status_code == 403  # another site's form, even with a token
    finally:
        proc.stop()
        server.stop()


def test_the_progress_cell_says_stage_count_and_time_left_when_the_worker_estimates_it():
    """The time left comes from the job's ``progress.eta_seconds`` where the worker gives it."""
    from service.console.render import TEMPLATES, duration

    macro = TEMPLATES.env.get_template("_macros.html").module.progress
    running = {"status": "running", "queue_position": None,
               "progress": {"stage": "influence:teacher", "done": 3, "total": 12, "eta_seconds": 150.4}}
    html = str(macro(running))
    assert "influence:teacher · 3/12 · about 3 min left" in html and 'value="25.0"' in html
    no_eta = str(macro({**running, "progress": {"stage": "load", "done": 0, "total": 1}}))
    assert "load · 0/1<" in no_eta.replace("\n", "") and "left" not in no_eta
    assert "position 2 in the queue" in str(macro({"status": "queued", "queue_position": 2, "progress": None}))
    assert [duration(x) for x in (0, 44.6, 89, 90, 725, 5399, 7530)] == ["0 s", "45 s", "89 s", "2 min", "12 min",
                                                                         "90 min", "2 h 05 min"]

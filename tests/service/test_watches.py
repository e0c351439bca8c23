"""Watches end to end (issue 16): real Redis, the real API, a real GPU worker running the engine on
the zoo pair, a real watch worker, two real beat processes, and a real HTTP receiver on loopback.

One run of a distillation is played out in a temporary model root: a copy of the zoo student
(step-1000, no regression), a half-written checkpoint that must wait until it settles, then a
damaged student (its most influential heads' output projections zeroed, step-2000) that must raise
``regression.detected`` with a valid signature. Repeated ``check`` calls and two beat processes
must not create a second job for a checkpoint, and a Redis restart in the middle loses nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import redis

from circuitdiff.catalogue import zoo_path
from jobs.commands import beat_argv, watcher_argv
from launcher.redis_server import RedisServer, free_port
from watches.checkpoints import last_change, natural_key
from watches.regressions import judge
from watches.webhooks import TargetRefused, check_target, sign
from tests.conftest import require_zoo
from tests.service_fixtures import ALICE_KEY, BOB_KEY, Proc, service_env, start_api, start_worker, wait_for

SECRET = "s3cret-for-tests"
SETTLE = 3
COMPARISON = {"task": "ioi", "n_prompts": 8, "bootstrap": 50}
PUBLIC = "https://cd.example/base"  # CIRCUITDIFF_PUBLIC_BASE_URL: webhook links are absolute


# ---------------------------------------------------------------------------------------- pure rules
def test_regression_rules_fire_with_their_numbers():
    base = {"alignment": 0.80, "student_logit_diff": 4.0, "student_performs_task": True}
    alerts = {"alignment_drop": 0.05, "logit_diff_drop_pct": 25, "stops_performing": True}
    assert judge({"alignment": 0.78, "student_logit_diff": 3.5, "student_performs_task": True}, base, alerts) == []
    reasons = judge({"alignment": 0.70, "student_logit_diff": 2.0, "student_performs_task": True}, base, alerts)
    assert [r["rule"] for r in reasons] == ["alignment_drop", "logit_diff_drop_pct"]
    assert reasons[0]["drop"] == pytest.approx(0.10) and reasons[1]["drop_pct"] == pytest.approx(50.0)
    stopped = judge({"alignment": 0.79, "student_logit_diff": -0.1, "student_performs_task": False}, base, alerts)
    assert [r["rule"] for r in stopped] == ["logit_diff_drop_pct", "stops_performing"]
    # a baseline that never performed: "no longer performs" cannot fire, nor a % of a non-positive LD
    dead = {"alignment": 0.5, "student_logit_diff": -1.0, "student_performs_task": False}
    assert judge({"alignment": 0.5, "student_logit_diff": -2.0, "student_performs_task": False}, dead, alerts) == []
    # plain-text datasets (schema 5): no logit difference, no verdict -> only the alignment rule applies
    text = {"alignment": 0.6, "student_logit_diff": None, "student_performs_task": None}
    assert [r["rule"] for r in judge(text, {**text, "alignment": 0.8}, alerts)] == ["alignment_drop"]


def test_reasons_are_sentences_with_rounded_numbers_and_keep_the_raw_ones():
    base = {"alignment": 0.9373912401824007, "student_logit_diff": 4.123456789, "student_performs_task": True}
    now = {"alignment": 0.8251234567, "student_logit_diff": -0.0412345, "student_performs_task": False}
    r = {x["rule"]: x for x in judge(now, base, {"alignment_drop": 0.05, "logit_diff_drop_pct": 25})}
    assert r["alignment_drop"]["message"] == ("The alignment score fell by 0.112 (from 0.937 to 0.825), "
                                              "at least the 0.05 this watch allows.")
    assert r["alignment_drop"]["baseline"] == 0.9373912401824007 and r["alignment_drop"]["value"] == 0.8251234567
    assert r["logit_diff_drop_pct"]["message"] == ("The student's logit difference fell by 101.0% (from 4.12 to "
                                                   "-0.04), at least the 25% this watch allows.")
    assert r["stops_performing"]["message"] == ("The student no longer performs the task (the baseline did): its "
                                                "logit difference is -0.04, not reliably above 0.")


@pytest.mark.parametrize("files, words", [
    ({"config.json": b"{}"}, ["config.json only", "save the weights too"]),
    ({"config.json": b"{}", "pytorch_model.bin": b"pickle"}, ["pytorch_model.bin found", "never unpickles",
                                                               "safe_serialization=True"]),
    ({}, ["directory is empty", "save_pretrained"]),
    ({"model.safetensors": b"x"}, ["no config.json", "save the config too"]),
])
def test_a_settled_directory_that_cannot_be_compared_is_refused_with_reason_and_fix(tmp_path, files, words):
    from watches.checkpoints import scan_directory

    ckpt = tmp_path / "step-1"
    ckpt.mkdir()
    for name, data in files.items():
        (ckpt / name).write_bytes(data)
    still = scan_directory(tmp_path, "step-*", 60, [tmp_path])
    assert [c.state for c in still] == ["settling"]  # written just now: not judged yet
    [c] = scan_directory(tmp_path, "step-*", 60, [tmp_path], now=time.time() + 120)
    assert c.state == "refused" and c.fingerprint.startswith("refused:"), c
    for w in words:
        assert w in c.reason + " " + c.fix, (w, c)
    # the same content, seen again, is the same entry; re-saved as safetensors it is another
    [again] = scan_directory(tmp_path, "step-*", 60, [tmp_path], now=time.time() + 120)
    assert again.fingerprint == c.fingerprint
    # a link out of the model roots is refused too, without naming where it points
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    outside.mkdir(exist_ok=True)
    (tmp_path / "step-2").symlink_to(outside)
    linked = scan_directory(tmp_path, "step-*", 60, [tmp_path], now=time.time() + 120)[1]
    assert linked.state == "refused" and "outside the allowed model roots" in linked.reason
    assert str(outside) not in linked.reason


def test_natural_order_and_signature():
    assert sorted(["step-10", "step-9", "step-100", "step-2"], key=natural_key) == ["step-2", "step-9", "step-10", "step-100"]
    body = b'{"event": "x"}'
    assert sign(body, "k") == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "http://localhost/x", "http://10.1.2.3/", "http://[::1]/",
                                 "http://169.254.169.254/latest", "http://192.168.0.10/", "ftp://example.com/",
                                 "http://user:pw@example.com/",
                                 # IPv6 forms that embed a private IPv4 address: 6to4 of 169.254.169.254,
                                 # NAT64 of 10.0.0.1, IPv4-mapped and -compatible loopback, Teredo
                                 "http://[2002:a9fe:a9fe::1]/", "http://[64:ff9b::a00:1]/", "http://[::ffff:127.0.0.1]/",
                                 "http://[::127.0.0.1]/", "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
                                 "http://h.example:99999/", "http://[::1/h"])
def test_private_or_odd_webhook_targets_are_refused(url):
    with pytest.raises(TargetRefused):
        check_target(url, allow_private=False)


def test_delivery_connects_to_the_address_it_checked(monkeypatch):
    """DNS rebinding: a name that answers a public address to the check and loopback afterwards. The
    POST goes to the checked (public, here unreachable) address; the loopback receiver gets nothing.
    The resolver is the one test double here: no real resolver can be made to rebind on cue."""
    import socket

    from watches import webhooks

    receiver = Receiver()
    port = receiver.server.server_address[1]
    real, answers = socket.getaddrinfo, iter(["8.8.8.8", "127.0.0.1", "127.0.0.1"])

    def rebinding(host, *a, **kw):
        if host == "rebind.example":
            ip = next(answers)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
        return real(host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        with pytest.raises(httpx.TransportError):
            webhooks.post(f"http://rebind.example:{port}/hook", b"{}", {}, allow_private=False, timeout=1.0)
        assert receiver.got == []  # before the fix: delivered to 127.0.0.1
        # the pinned connection still names the URL's host
        r = webhooks.post(f"http://localhost:{port}/hook", b"{}", {"X-Circuitdiff-Delivery": "d1"},
                          allow_private=True, timeout=5.0)
        assert r.status_code == 503 and receiver.got[0]["headers"]["Host"] == f"localhost:{port}"
    finally:
        receiver.server.shutdown()


def test_allow_private_lets_loopback_through():
    check_target("http://127.0.0.1:9/x", allow_private=True)
    with pytest.raises(TargetRefused):
        check_target("file:///etc/passwd", allow_private=True)


# ---------------------------------------------------------------------------------------- the stack
class Receiver:
    """A loopback HTTP endpoint that records every webhook and answers 503 to each delivery's first try."""

    def __init__(self):
        self.got: list[dict] = []
        seen: set[str] = set()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                did = self.headers.get("X-Circuitdiff-Delivery", "")
                first = did not in seen
                seen.add(did)
                outer.got.append({"headers": dict(self.headers), "body": body, "answered": 503 if first else 200})
                self.send_response(503 if first else 200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, name: str) -> list[dict]:
        return [g for g in self.got if g["answered"] == 200 and json.loads(g["body"])["event"] == name]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_zoo("gpt-teacher", "gpt-student")
    root = tmp_path_factory.mktemp("watches")
    server = RedisServer(root / "redis", port=free_port()).start()
    data = root / "data"
    (data / "models" / "runs" / "42").mkdir(parents=True)
    env = service_env(server.url, data, CIRCUITDIFF_WEBHOOK_ALLOW_PRIVATE="true", CIRCUITDIFF_WATCH_TICK_SECONDS="1",
                      CIRCUITDIFF_WEBHOOK_BACKOFF_SECONDS="0.5", CIRCUITDIFF_PUBLIC_BASE_URL=PUBLIC)
    procs = []
    try:
        api, base = start_api(env, root)
        procs.append(api)
        procs.append(start_worker(env, root, "gpu"))
        procs.append(Proc(watcher_argv("watcher"), env, root / "watcher.log"))
        # two beat processes: every tick arrives twice, and must still give one job per checkpoint
        procs += [Proc(beat_argv(root / f"beat-{i}.schedule"), env, root / f"beat-{i}.log") for i in (1, 2)]
        receiver = Receiver()
        alice = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ALICE_KEY}"}, timeout=30)
        bob = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {BOB_KEY}"}, timeout=30)
        yield {"server": server, "env": env, "root": root, "data": data, "base": base, "alice": alice, "bob": bob,
               "receiver": receiver, "procs": procs}
        alice.close()
        bob.close()
        receiver.server.shutdown()
    finally:
        for p in reversed(procs):
            p.stop()
        server.stop()


def watch_spec(receiver_url: str, **over) -> dict:
    return {
        "name": "distil-run-42", "teacher": "zoo:gpt-teacher",
        "checkpoints": {"directory": "runs/42", "pattern": "step-*", "settle_seconds": SETTLE},
        "comparison": COMPARISON, "interval_seconds": 10, "baseline": "first",
        "alerts": {"alignment_drop": 0.05, "logit_diff_drop_pct": 25, "stops_performing": True,
                   "webhook": {"url": receiver_url, "secret": SECRET}},
        **over,
    }


def test_bad_watches_are_problems_naming_the_field(stack):
    alice, url = stack["alice"], stack["receiver"].url
    cases = [
        (watch_spec(url, interval_seconds=5), "interval_seconds"),
        (watch_spec(url, checkpoints={"directory": "../outside", "pattern": "step-*"}), "checkpoints.directory"),
        (watch_spec(url, checkpoints={"directory": "runs/none", "pattern": "step-*"}), "checkpoints.directory"),
        (watch_spec(url, comparison={**COMPARISON, "student": "zoo:gpt-student"}), "comparison.student"),
        (watch_spec(url, comparison={**COMPARISON, "n_prompts": 0}), "comparison.n_prompts"),
        (watch_spec(url, comparison={"task": "nope"}), "comparison.task"),
        (watch_spec("ftp://example.com/x"), "alerts.webhook.url"),
        (watch_spec(url, checkpoints={"directory": "runs/42", "hub": "org/name"}), "checkpoints.directory"),
        (watch_spec(url, checkpoints={"pattern": "step-*"}), "checkpoints.directory"),
        (watch_spec(url, checkpoints={"directory": "runs/42", "pattern": "../step-*"}), "checkpoints.pattern"),
        (watch_spec(url, checkpoints={"hub": "not a repo"}), "checkpoints.hub"),
        (watch_spec(url, checkpoints={"directory": "runs/42", "settle_seconds": -1}), "checkpoints.settle_seconds"),
        (watch_spec(url, baseline="step-99"), "baseline"),  # no such checkpoint in the directory
        (watch_spec(url, baseline="final"), "baseline"),  # not even matched by the pattern
        # malformed ports and hosts (issue #24: these answered 500 and dropped the connection)
        *[(watch_spec(bad), "alerts.webhook.url")
          for bad in ("http://h.example:99999/", "http://h.example:abc/", "http://h.example:-1/",
                      "http://h.example:65536/", "http://[::1/h", "http://h.example:0/")],
    ]
    for body, field in cases:
        r = alice.post("/v1/watches", json=body)
        assert r.status_code == 422, (field, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in r.json()["errors"]], (field, r.json())
        assert all(e["fix"] for e in r.json()["errors"])


def test_webhook_to_private_address_refused_unless_allowed(stack):
    env = dict(stack["env"], CIRCUITDIFF_WEBHOOK_ALLOW_PRIVATE="false")
    api, base = start_api(env, stack["root"])
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ALICE_KEY}"}, timeout=30) as c:
            r = c.post("/v1/watches", json=watch_spec(stack["receiver"].url))
            assert r.status_code == 422 and r.json()["code"] == "webhook_target_refused", r.text
            assert "127.0.0.1" in r.json()["detail"]
    finally:
        api.stop()


def test_unreachable_hub_is_recorded_and_retried(stack):
    alice = stack["alice"]
    r = alice.post("/v1/watches", json={"name": "hub-run", "teacher": "zoo:gpt-teacher",
                                         "checkpoints": {"hub": "org/does-not-exist", "revisions": "branches"},
                                         "comparison": COMPARISON, "interval_seconds": 10})
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    w = wait_for(lambda: (b := alice.get(f"/v1/watches/{wid}").json())["last_error"] and b, 30, "hub error recorded")
    assert "could not list checkpoints" in w["last_error"] and w["status"] == "active"
    assert w["counts"]["checkpoints"] == 0 and w["next_check_at"] is not None
    first = w["last_checked_at"]
    assert alice.post(f"/v1/watches/{wid}/check").status_code == 202
    again = wait_for(lambda: (b := alice.get(f"/v1/watches/{wid}").json())["last_checked_at"] != first and b, 30,
                     "hub checked again")
    assert again["last_error"] and alice.delete(f"/v1/watches/{wid}").json()["status"] == "deleted"


def _copy_student(dst: Path) -> None:
    tmp = dst.with_name("." + dst.name + ".tmp")  # hidden and not matching step-*: written, then moved in
    shutil.copytree(zoo_path("gpt-student"), tmp)
    tmp.rename(dst)


def _damaged_student(dst: Path, heads: list[str]) -> bytes:
    """The zoo student with the output-projection rows of ``heads`` (``L{l}H{h}``) zeroed; returns
    the bytes of its weights, written to ``dst`` by the caller."""
    import torch
    from transformers import GPT2LMHeadModel

    m = GPT2LMHeadModel.from_pretrained(zoo_path("gpt-student"))
    d_head = m.config.n_embd // m.config.n_head
    with torch.no_grad():
        for c in heads:
            layer, head = (int(x) for x in c[1:].split("H"))
            m.transformer.h[layer].attn.c_proj.weight[head * d_head:(head + 1) * d_head, :] = 0  # Conv1D: [in, out]
    m.save_pretrained(dst, safe_serialization=True)
    return (dst / "model.safetensors").read_bytes()


def _history(alice, wid) -> list[dict]:
    return alice.get(f"/v1/watches/{wid}/history").json()["items"]


def _judged(alice, wid, name):
    return next((h for h in _history(alice, wid) if h["checkpoint"] == name and h["regression"] is not None
                 or h["checkpoint"] == name and h["status"] in ("failed", "cancelled")), None)


def _split(alice, job_id: str, settled_at: float, judged_at: float) -> str:
    """Where the time went: settle -> job created (the watch), queued, engine, finished -> judged seen."""
    from datetime import datetime

    j = alice.get(f"/v1/comparisons/{job_id}").json()
    t = {k: datetime.fromisoformat(j[k]).timestamp() for k in ("created_at", "started_at", "finished_at")}
    return (f"to job {t['created_at'] - settled_at:.1f} s, queued {t['started_at'] - t['created_at']:.1f} s, "
            f"comparison {t['finished_at'] - t['started_at']:.1f} s, to judged entry <= {judged_at - t['finished_at']:.1f} s")


def test_watch_compares_each_checkpoint_once_and_flags_the_damaged_one(stack, tmp_path):
    alice, bob, receiver = stack["alice"], stack["bob"], stack["receiver"]
    run = stack["data"] / "models" / "runs" / "42"
    r = alice.post("/v1/watches", json=watch_spec(receiver.url))
    assert r.status_code == 201, r.text
    w = r.json()
    wid = w["id"]
    assert r.headers["location"] == f"/v1/watches/{wid}"
    assert SECRET not in json.dumps(w) and w["alerts"]["webhook"] == {"url": receiver.url, "has_secret": True}
    assert bob.get(f"/v1/watches/{wid}").status_code == 404
    assert wid not in [x["id"] for x in bob.get("/v1/watches").json()["items"]]

    # step-1000: the zoo student itself. Checks hammered while it settles and after.
    _copy_student(run / "step-1000")
    settled_at = last_change(run / "step-1000") + SETTLE  # copytree keeps old mtimes; the rename is the change
    for _ in range(5):
        assert alice.post(f"/v1/watches/{wid}/check").status_code == 202
    first = wait_for(lambda: _judged(alice, wid, "step-1000"), 300, "step-1000 judged", stack["procs"][1])
    seconds_to_history = time.time() - settled_at
    judged_at = time.time()
    print(f"\nstep-1000: settled -> judged history entry in {seconds_to_history:.1f} s "
          f"({_split(alice, first['job_id'], settled_at, judged_at)})")
    assert first["status"] == "succeeded" and first["regression"] is False and first["reasons"] == []
    assert first["alignment"] is not None and len(first["alignment_ci95"]) == 2 and first["student_performs_task"]
    assert first["fingerprint"].startswith("sha256:") and first["baseline"] is None
    job = alice.get(f"/v1/comparisons/{first['job_id']}").json()
    assert job["watch_id"] == wid and job["checkpoint"] == "step-1000" and job["status"] == "succeeded"
    assert job["spec"]["student"]["id"] == str((run / "step-1000").resolve())

    # the student's most influential heads, from the baseline's own result: the ones to damage
    result = alice.get(f"/v1/comparisons/{first['job_id']}/result").json()
    infl = result["influence"]["student"]
    top = sorted((c for c in infl if "H" in c), key=lambda c: -infl[c]["influence"])[:2]

    # step-2000 appears half-written: config and a truncated weights file, still being appended to
    damaged_bytes = _damaged_student(tmp_path / "damaged", top)
    half = run / "step-2000"
    half.mkdir()
    for f in zoo_path("gpt-student").iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy(f, half / f.name)
    weights = half / "model.safetensors"
    weights.write_bytes(damaged_bytes[: len(damaged_bytes) // 3])
    for _ in range(3):
        alice.post(f"/v1/watches/{wid}/check")
        time.sleep(1.0)
        with open(weights, "ab") as fh:  # the writer is still at it
            fh.write(b"")
        weights.touch()
        wait_for(lambda: alice.get(f"/v1/watches/{wid}").json()["counts"]["settling"] == 1, 15, "step-2000 settling")
        assert [h["checkpoint"] for h in _history(alice, wid)] == ["step-1000"]  # never compared half-written

    # a Redis restart while step-2000 is being written: nothing is lost, everything carries on
    before = _history(alice, wid)
    stack["server"].stop()
    time.sleep(1.0)
    stack["server"].start()  # same port, same AOF directory
    wait_for(lambda: alice.get("/ready").status_code == 200, 60, "/ready after the Redis restart")
    assert _history(alice, wid) == before and alice.get(f"/v1/watches/{wid}").json()["status"] == "active"

    weights.write_bytes(damaged_bytes)  # the writer finishes
    settled_2000 = last_change(half) + SETTLE
    for _ in range(3):
        alice.post(f"/v1/watches/{wid}/check")
    second = wait_for(lambda: _judged(alice, wid, "step-2000"), 300, "step-2000 judged", stack["procs"][1])
    judged_at = time.time()
    print(f"step-2000: settled -> judged history entry in {judged_at - settled_2000:.1f} s "
          f"({_split(alice, second['job_id'], settled_2000, judged_at)}); damaged heads {top}")
    assert second["status"] == "succeeded" and second["regression"] is True, second
    assert second["baseline"] == "step-1000" and second["reasons"], second
    rules = {x["rule"] for x in second["reasons"]}
    assert rules & {"alignment_drop", "logit_diff_drop_pct", "stops_performing"}
    for x in second["reasons"]:
        if x["rule"] == "logit_diff_drop_pct":
            assert x["drop_pct"] >= 25 and x["baseline"] == pytest.approx(first["student_logit_diff"])
        if x["rule"] == "alignment_drop":
            assert x["drop"] >= 0.05 and x["baseline"] == pytest.approx(first["alignment"])
    assert second["fingerprint"] == "sha256:" + hashlib.sha256(
        b"model.safetensors" + hashlib.sha256(damaged_bytes).hexdigest().encode()).hexdigest()

    # the webhook: regression.detected, signed over the raw body, after one refused attempt
    hit = wait_for(lambda: receiver.events("regression.detected"), 60, "regression.detected delivered")
    assert len(hit) == 1
    body = hit[0]["body"]
    assert hit[0]["headers"]["X-Circuitdiff-Signature"] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    event = json.loads(body)
    assert event["watch_id"] == wid and event["checkpoint"] == "step-2000" and event["job_id"] == second["job_id"]
    assert event["reasons"] == second["reasons"] and event["links"]["report"] == f"{PUBLIC}/v1/watches/{wid}/report"
    assert event["links"]["job"] == f"{PUBLIC}/v1/comparisons/{second['job_id']}"
    assert all(x["message"].endswith(".") and "0000" not in x["message"] for x in second["reasons"])
    wait_for(lambda: len(receiver.events("checkpoint.compared")) == 2, 60, "two checkpoint.compared deliveries")
    deliveries = alice.get(f"/v1/watches/{wid}/deliveries").json()["items"]
    by_attempt = sorted((d["attempt"], d["status_code"]) for d in deliveries if d["event"] == "regression.detected")
    assert by_attempt == [(1, 503), (2, 200)], deliveries

    # exactly once: two beats, many checks, a Redis restart, and still one job per checkpoint
    time.sleep(3)
    mine = [j for j in alice.get("/v1/comparisons", params={"limit": 100}).json()["items"] if j.get("watch_id") == wid]
    assert sorted(j["checkpoint"] for j in mine) == ["step-1000", "step-2000"], mine
    hist = _history(alice, wid)
    assert [h["checkpoint"] for h in hist] == ["step-1000", "step-2000"]
    w = alice.get(f"/v1/watches/{wid}").json()
    assert (w["counts"]["checkpoints"], w["counts"]["pending"], w["counts"]["succeeded"], w["counts"]["regressions"],
            w["counts"]["settling"]) == (2, 0, 2, 1, 0)

    # the trend report, in a real browser
    page = alice.get(f"/v1/watches/{wid}/report")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]  # #24 item 9
    _browser_checks(page.text, tmp_path, ["step-1000", "step-2000"])

    # strict types on PATCH (#24 item 11): 0 is not false, "60" is not 60
    for body, field in (({"alerts": {"stops_performing": 0}}, "alerts.stops_performing"),
                        ({"interval_seconds": "60"}, "interval_seconds"), ({"paused": "yes"}, "paused")):
        r = alice.patch(f"/v1/watches/{wid}", json=body)
        assert r.status_code == 422 and field in [e["field"] for e in r.json()["errors"]], (body, r.text)
    # pause / resume / delete: history and jobs stay readable
    paused = alice.patch(f"/v1/watches/{wid}", json={"paused": True}).json()
    assert paused["status"] == "paused" and paused["next_check_at"] is None
    assert alice.post(f"/v1/watches/{wid}/check").status_code == 409
    assert alice.patch(f"/v1/watches/{wid}", json={"paused": False, "interval_seconds": 60}).json()["interval_seconds"] == 60
    assert alice.delete(f"/v1/watches/{wid}").json()["status"] == "deleted"
    assert len(_history(alice, wid)) == 2
    assert alice.get(f"/v1/comparisons/{second['job_id']}/result").status_code == 200


def _browser_checks(html: str, tmp_path: Path, names: list[str]) -> None:
    from tests.report_browser import Browser

    f = tmp_path / "trend.html"
    f.write_text(html)
    with Browser() as b:
        b.open(f.as_uri())
        assert b.console_errors() == []
        assert [u for u in b.requests() if u != f.as_uri() and not u.startswith("data:")] == []
        text = b.eval("document.body.innerText")
        for n in names:
            assert n in text
        assert b.eval("document.querySelectorAll('svg.alignment circle.regression').length") == 1
        assert b.eval("document.querySelectorAll('svg.alignment polygon.band').length") == 1
        assert b.eval("document.querySelectorAll('table.heat tbody tr').length") > 0
        assert b.eval("document.querySelectorAll('table.history tr.regression').length") == 1
        width = b.eval("document.querySelector('svg.alignment').getBoundingClientRect().width")
        assert width > 0.9 * b.eval("document.body.getBoundingClientRect().width")  # the page's width (#27)
        # readable ticks, titled axes, the chance band, the baseline, points linking to their reports (#27)
        ticks = b.eval("Array.from(document.querySelectorAll('svg.alignment text.tick')).map(t => t.textContent)")
        assert len(ticks) >= 3 and all(len(t.split(".")[-1]) <= 3 for t in ticks), ticks
        titles = b.eval("Array.from(document.querySelectorAll('svg.alignment text.axis-title')).map(t => t.textContent)")
        assert titles == ["alignment score (0–1)", "checkpoint (in training order)"]
        assert b.eval("document.querySelectorAll('svg.alignment polygon.chance').length") == 1
        assert b.eval("document.querySelector('svg.alignment text.baseline-label').textContent") == "baseline"
        assert "task is not performed" in b.eval("document.querySelector('svg.logit-diff text.zero-label').textContent")
        hrefs = b.eval("Array.from(document.querySelectorAll('svg.alignment a.point')).map(a => a.getAttribute('href'))")
        assert len(hrefs) == len(names) and all(h.endswith("/report") and "/v1/comparisons/j" in h for h in hrefs)
        assert b.eval("document.querySelector('table.heat thead th.teacher').textContent") == "teacher partner"
        assert b.eval("document.querySelectorAll('table.history a[href*=\"/v1/comparisons/\"]').length") == 2 * len(names)


def test_a_check_that_died_after_creating_its_job_is_finished_by_the_next_one(stack):
    """A restart mid-check: the job-create script linked the pair to a job, then the check died before
    recording the history entry and sending the job. The next check must adopt that job (not make
    a second one) and send it, so it runs. Then the checkpoint is rewritten (a new entry), and both
    jobs are cancelled: recorded, announced as ``checkpoint.failed``, never regressions."""
    from jobs.content import weights_fingerprint
    from jobs.settings import hash_key
    from jobs.store import JobStore
    from watches.store import entry_key
    from service.auth import owner_of

    alice = stack["alice"]
    (stack["data"] / "models" / "runs" / "crash").mkdir()
    body = watch_spec(stack["receiver"].url, name="crash-run", interval_seconds=3600,
                      checkpoints={"directory": "runs/crash", "pattern": "step-*", "settle_seconds": SETTLE})
    wid = alice.post("/v1/watches", json=body).json()["id"]
    wait_for(lambda: alice.get(f"/v1/watches/{wid}").json()["last_checked_at"], 30, "first (empty) check")

    fp = "sha256:" + weights_fingerprint(zoo_path("gpt-student"))
    r = redis.Redis.from_url(stack["server"].url, decode_responses=True)
    spec = {"teacher": {"id": "zoo:gpt-teacher"}, "student": {"id": str(zoo_path("gpt-student"))}, **COMPARISON}
    orphan = JobStore(r).create(owner=owner_of(hash_key(ALICE_KEY)), spec=spec, content_key="died-mid-check",
                                fingerprints={}, link=(f"cd:watch:{wid}:jobs", entry_key("step-1", fp)),
                                extra={"watch_id": wid, "checkpoint": "step-1"})
    assert orphan.kind == "new"  # recorded and linked, but no message was ever sent
    r.close()

    _copy_student(stack["data"] / "models" / "runs" / "crash" / "step-1")
    time.sleep(SETTLE + 0.5)
    alice.post(f"/v1/watches/{wid}/check")
    entry = wait_for(lambda: next((h for h in _history(alice, wid) if h["checkpoint"] == "step-1"), None), 60,
                     "step-1 entry")
    assert entry["job_id"] == orphan.job_id
    # it was sent: a worker picks it up (waiting for the result would only time the engine again)
    wait_for(lambda: alice.get(f"/v1/comparisons/{orphan.job_id}").json()["status"] != "queued", 120,
             "adopted job taken by a worker", stack["procs"][1])
    mine = [j for j in alice.get("/v1/comparisons", params={"limit": 100}).json()["items"] if j.get("watch_id") == wid]
    assert [j["id"] for j in mine] == [orphan.job_id]

    # a rewritten checkpoint (same name, other weights) is a new entry with its own job
    ckpt = stack["data"] / "models" / "runs" / "crash" / "step-1"
    for name in ("config.json", "model.safetensors"):
        shutil.copy(zoo_path("gpt-teacher") / name, ckpt / f".{name}.tmp")
        (ckpt / f".{name}.tmp").rename(ckpt / name)
    time.sleep(SETTLE + 0.5)
    alice.post(f"/v1/watches/{wid}/check")
    both = wait_for(lambda: len(h := [x for x in _history(alice, wid) if x["checkpoint"] == "step-1"]) == 2 and h, 60,
                    "the rewritten step-1 as a second entry")
    assert both[0]["fingerprint"] != both[1]["fingerprint"] and both[0]["job_id"] != both[1]["job_id"]
    assert both[1]["fingerprint"] == "sha256:" + weights_fingerprint(zoo_path("gpt-teacher"))

    # cancelled jobs are recorded and announced as checkpoint.failed, never judged as regressions
    for x in both:
        assert alice.delete(f"/v1/comparisons/{x['job_id']}").status_code in (200, 202)
    wait_for(lambda: all(x["status"] == "cancelled" for x in _history(alice, wid)), 120, "both entries cancelled")
    assert all(x["regression"] is None and x["reasons"] == [] for x in _history(alice, wid))
    mine = lambda name: [g for g in stack["receiver"].events(name) if json.loads(g["body"])["watch_id"] == wid]
    wait_for(lambda: len(mine("checkpoint.failed")) == 2, 60, "two checkpoint.failed deliveries")
    assert mine("regression.detected") == [] and mine("checkpoint.compared") == []
    assert alice.get(f"/v1/watches/{wid}").json()["counts"]["failed"] == 2
    alice.delete(f"/v1/watches/{wid}")


def test_delivery_to_a_private_address_is_refused_at_delivery_time(stack, monkeypatch):
    """The watch worker checks the target again when it delivers (a name may resolve elsewhere by
    then): with private targets not allowed, nothing is sent, the attempt is logged as refused and
    not retried."""
    from jobs.queue import make_celery
    from jobs.settings import get_settings
    from watches.store import WatchStore
    from worker import watching

    alice, receiver = stack["alice"], stack["receiver"]
    (stack["data"] / "models" / "runs" / "refused").mkdir()
    body = watch_spec(receiver.url, name="refused-run", interval_seconds=3600,
                      checkpoints={"directory": "runs/refused", "pattern": "step-*"})
    wid = alice.post("/v1/watches", json=body).json()["id"]  # this API allows private targets (tests)

    monkeypatch.setenv("REDIS_URL", stack["server"].url)
    monkeypatch.setenv("CIRCUITDIFF_WEBHOOK_ALLOW_PRIVATE", "false")
    monkeypatch.setenv("CIRCUITDIFF_DATA_DIR", str(stack["data"]))
    get_settings.cache_clear()
    watching.stores.cache_clear()
    try:
        ws = watching.stores()[1]
        ws.save_delivery_body("dtest0001", wid, "checkpoint.compared", b'{"event": "checkpoint.compared"}')
        before = len(receiver.got)
        watching.deliver(make_celery(get_settings()), "dtest0001", 1)
    finally:
        get_settings.cache_clear()
        watching.stores.cache_clear()
    assert len(receiver.got) == before
    d = alice.get(f"/v1/watches/{wid}/deliveries").json()["items"]
    assert len(d) == 1 and d[0]["attempt"] == 1 and d[0]["status_code"] is None and d[0]["ok"] is False
    assert d[0]["error"].startswith("refused:") and "127.0.0.1" in d[0]["error"] and d[0]["next_attempt_at"] is None
    assert isinstance(ws, WatchStore)
    alice.delete(f"/v1/watches/{wid}")


def test_an_event_whose_emitter_died_before_sending_is_sent_by_a_later_tick(stack):
    """The event is recorded in the outbox in the same script that marks it emitted; an emitter that
    dies before queueing the delivery leaves it there, and beat's tick sends it."""
    from watches.store import OUTBOX, WatchStore

    alice, receiver = stack["alice"], stack["receiver"]
    (stack["data"] / "models" / "runs" / "outbox").mkdir()
    body = watch_spec(receiver.url, name="outbox-run", interval_seconds=3600,
                      checkpoints={"directory": "runs/outbox", "pattern": "step-*"})
    wid = alice.post("/v1/watches", json=body).json()["id"]
    r = redis.Redis.from_url(stack["server"].url, decode_responses=True)
    ws = WatchStore(r)
    payload = json.dumps({"event": "checkpoint.failed", "watch_id": wid}).encode()
    assert ws.emit(wid, "step-9@sha256:x", "checkpoint.failed", "doutbox0001", payload)
    assert not ws.emit(wid, "step-9@sha256:x", "checkpoint.failed", "doutbox0002", payload)  # once per event
    r.zadd(OUTBOX, {"doutbox0001": time.time() - 3600})  # its emitter died long ago
    got = wait_for(lambda: [g for g in receiver.events("checkpoint.failed") if g["body"] == payload], 30,
                   "the orphaned event delivered")
    assert len(got) == 1 and got[0]["headers"]["X-Circuitdiff-Delivery"] == "doutbox0001"
    assert r.zscore(OUTBOX, "doutbox0001") is None
    r.close()
    alice.delete(f"/v1/watches/{wid}")


def test_cli_watch_commands_through_the_client(stack, cli, tmp_path):
    """``circuitdiff watch create|list|history|check|report --server URL`` against the real stack."""
    (stack["data"] / "models" / "runs" / "cli").mkdir()
    server = ["--server", stack["base"], "--api-key", ALICE_KEY]
    made = cli("watch", "create", *server, "--name", "cli-run", "--teacher", "zoo:gpt-teacher", "--directory",
               "runs/cli", "--task", "ioi", "--n-prompts", "8", "--interval-seconds", "3600", "--json")
    assert made.returncode == 0, made.stderr
    w = json.loads(made.stdout)
    assert w["name"] == "cli-run" and w["checkpoints"]["directory"] == "runs/cli" and w["comparison"]["n_prompts"] == 8
    listed = cli("watch", "list", *server)
    assert listed.returncode == 0 and any(line.startswith(w["id"]) and "cli-run" in line for line in listed.stdout.splitlines())
    checked = cli("watch", "check", *server, w["id"])
    assert checked.returncode == 0 and w["id"] in checked.stdout
    hist = cli("watch", "history", *server, w["id"])
    assert hist.returncode == 0 and hist.stdout.splitlines()[0].split()[:2] == ["checkpoint", "status"]
    out = tmp_path / "trend.html"
    rep = cli("watch", "report", *server, w["id"], "--out", str(out))
    assert rep.returncode == 0 and out.read_text().lstrip().lower().startswith("<!doctype html>")

    bad = cli("watch", "create", *server, "--name", "x", "--teacher", "zoo:gpt-teacher", "--directory", "runs/cli",
              "--interval-seconds", "5")
    assert bad.returncode == 2 and "interval_seconds" in bad.stderr and bad.stderr.count("\n") == 1
    gone = cli("watch", "history", "--server", stack["base"], "--api-key", BOB_KEY, w["id"])
    assert gone.returncode == 2 and "404 watch_not_found" in gone.stderr
    down = cli("watch", "list", "--server", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 2 and "cannot reach" in down.stderr

    # pause, resume, deliveries, delete (#27)
    paused = cli("watch", "pause", *server, w["id"])
    assert paused.returncode == 0 and f"{w['id']} paused" in paused.stdout
    assert stack["alice"].get(f"/v1/watches/{w['id']}").json()["status"] == "paused"
    resumed = cli("watch", "resume", *server, w["id"], "--json")
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["status"] == "active"
    dl = cli("watch", "deliveries", *server, w["id"])
    assert dl.returncode == 0 and dl.stdout.split()[:4] == ["at", "event", "try", "answer"]
    deleted = cli("watch", "delete", *server, w["id"])
    assert deleted.returncode == 0 and "deleted" in deleted.stdout
    assert stack["alice"].get(f"/v1/watches/{w['id']}").json()["status"] == "deleted"
    again = cli("watch", "pause", *server, w["id"])
    assert again.returncode == 2 and "409 watch_deleted" in again.stderr

    # jobs list|get|cancel (#27): the watch jobs the earlier tests made are alice's
    listed = cli("jobs", "list", *server, "--status", "succeeded", "--limit", "2", "--json")
    jobs = json.loads(listed.stdout)
    assert listed.returncode == 0 and 1 <= len(jobs) <= 2 and all(j["status"] == "succeeded" for j in jobs)
    table = cli("jobs", "list", *server, "--limit", "3")
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 3
    got = cli("jobs", "get", *server, jobs[0]["id"])
    assert got.returncode == 0 and got.stdout.startswith(jobs[0]["id"]) and "result: /v1/comparisons/" in got.stdout
    finished = cli("jobs", "cancel", *server, jobs[0]["id"])
    assert finished.returncode == 2 and "409 job_finished" in finished.stderr
    other = cli("jobs", "get", "--server", stack["base"], "--api-key", BOB_KEY, jobs[0]["id"])
    assert other.returncode == 2 and "404 job_not_found" in other.stderr


def test_every_listed_checkpoint_ends_as_a_history_entry(stack):
    """Issue #27: a checkpoint saved as pickles, or with its config alone, used to show under
    ``counts.settling`` and vanish. Each becomes a failed history entry with no job, the reason and
    the fix, and a ``checkpoint.failed`` event whose links are absolute (the public base URL)."""
    alice, receiver = stack["alice"], stack["receiver"]
    run = stack["data"] / "models" / "runs" / "refusals"
    for name, files in (("step-1", {"config.json": b"{}", "pytorch_model.bin": b"not unpickled"}),
                        ("step-2", {"config.json": b"{}"})):
        tmp = run / f".{name}.tmp"
        tmp.mkdir(parents=True)
        for f, data in files.items():
            (tmp / f).write_bytes(data)
        tmp.rename(run / name)
    wid = alice.post("/v1/watches", json=watch_spec(receiver.url, name="refusals", interval_seconds=3600,
                     checkpoints={"directory": "runs/refusals", "pattern": "step-*", "settle_seconds": SETTLE},
                     baseline="step-1")).json()["id"]
    time.sleep(SETTLE + 0.5)
    alice.post(f"/v1/watches/{wid}/check")
    hist = wait_for(lambda: len(h := _history(alice, wid)) == 2 and h, 60, "two refused entries")
    assert [h["checkpoint"] for h in hist] == ["step-1", "step-2"]
    for h in hist:
        assert h["status"] == "failed" and h["job_id"] is None and h["regression"] is None, h
        assert h["error"]["code"] == "checkpoint_refused" and h["error"]["fix"], h
    assert "pytorch_model.bin found" in hist[0]["error"]["detail"] and "safetensors" in hist[0]["error"]["fix"]
    assert "config.json only" in hist[1]["error"]["detail"]
    # the check records what it saw (no longer settling) just after it writes the entries: wait for it
    def counts() -> tuple:
        c = alice.get(f"/v1/watches/{wid}").json()["counts"]
        return c["checkpoints"], c["failed"], c["settling"], c["pending"]

    wait_for(lambda: counts() == (2, 2, 0, 0), 30, "counts: 2 checkpoints, 2 failed, none settling or pending")
    mine = lambda: [json.loads(g["body"]) for g in receiver.events("checkpoint.failed")
                    if json.loads(g["body"])["watch_id"] == wid]
    got = wait_for(lambda: len(mine()) == 2 and mine(), 60, "two checkpoint.failed deliveries")
    assert sorted(g["checkpoint"] for g in got) == ["step-1", "step-2"]
    for g in got:
        assert g["job_id"] is None and g["error"]["code"] == "checkpoint_refused"
        assert g["links"] == {"watch": f"{PUBLIC}/v1/watches/{wid}", "history": f"{PUBLIC}/v1/watches/{wid}/history",
                              "report": f"{PUBLIC}/v1/watches/{wid}/report"}
    # checked again: nothing new (one entry per content), and the trend report shows the fix
    alice.post(f"/v1/watches/{wid}/check")
    time.sleep(2)
    assert len(_history(alice, wid)) == 2
    page = alice.get(f"/v1/watches/{wid}/report").text
    assert "pytorch_model.bin found" in page and "safe_serialization=True" in page
    alice.delete(f"/v1/watches/{wid}")


def test_deleting_a_watch_cancels_its_unfinished_jobs(stack):
    alice = stack["alice"]
    run = stack["data"] / "models" / "runs" / "deleted"
    run.mkdir()
    _copy_student(run / "step-1")
    body = watch_spec(stack["receiver"].url, name="deleted", interval_seconds=3600,
                      comparison={"task": "ioi", "n_prompts": 64, "bootstrap": 50},  # a job no earlier test made
                      checkpoints={"directory": "runs/deleted", "pattern": "step-*", "settle_seconds": 0})
    wid = alice.post("/v1/watches", json=body).json()["id"]
    entry = wait_for(lambda: next(iter(_history(alice, wid)), None), 60, "step-1 given a job")
    assert alice.get(f"/v1/comparisons/{entry['job_id']}").json()["status"] in ("queued", "running")
    gone = alice.delete(f"/v1/watches/{wid}")
    assert gone.status_code == 200 and gone.json()["status"] == "deleted"
    job = wait_for(lambda: (j := alice.get(f"/v1/comparisons/{entry['job_id']}").json())["status"] in
                   ("cancelled", "succeeded", "failed") and j, 180, "the watch's job cancelled", stack["procs"][1])
    assert job["status"] == "cancelled", job
    # the worker logs each job's real outcome once, with its id and duration, and never Celery's own
    # "Task ... succeeded" for a job that was cancelled or failed (#27)
    log = stack["procs"][1].log.read_text()
    assert "] succeeded in" not in log
    ran = [j for j in alice.get("/v1/comparisons", params={"limit": 100}).json()["items"]
           if j["started_at"] and j["status"] in ("succeeded", "failed", "cancelled")]
    assert any(j["status"] == "succeeded" for j in ran) and any(j["status"] == "cancelled" for j in ran)
    for j in ran:
        assert len(re.findall(rf"job {j['id']} {j['status']} in \d+\.\ds", log)) == 1, (j["id"], j["status"])

"""Job and watch records are typed (jobs.store.JobRecord, watches.store.WatchRecord) and still read
every record already in Redis: an older record that lacks a field, holds it empty or holds JSON
null gets the field's default, and a field this version does not know is ignored."""

from __future__ import annotations

import json

from circuitdiff.client.wire import STATUSES, TERMINAL, Status
from jobs.store import JobRecord
from watches.store import WatchRecord

OLD_JOB = {  # as an early version wrote it: no rev, fingerprints, progress or cancel flag
    "id": "j0001", "owner": "local", "status": "failed", "spec": json.dumps({"task": "ioi"}), "content_key": "ck",
    "created_at": "1700000000.25", "attempts": "2", "started_at": "", "warnings": "null",
    "error": json.dumps({"code": "worker_lost", "detail": "d", "field": None, "fix": "f"}), "from_the_future": "x",
}


def test_an_old_job_record_loads_with_defaults():
    job = JobRecord.from_redis(OLD_JOB)
    assert (job.status, job.attempts, job.rev, job.created_at, job.started_at) == ("failed", 2, 0, 1700000000.25, None)
    assert job.spec == {"task": "ioi"} and job.fingerprints == {} and job.progress == {} and job.warnings == []
    assert job.error == {"code": "worker_lost", "detail": "d", "field": None, "fix": "f"}  # as stored, key for key
    assert job.cancel_requested is False and job.artifacts == [] and job.watch_id is None


def test_a_job_record_as_the_scripts_write_it():
    raw = {**OLD_JOB, "status": "succeeded", "rev": "7", "cancel_requested": "1", "model_cache_hits": "1",
           "artifacts": json.dumps([{"name": "result.json", "size": 3, "sha256": "a", "media_type": "application/json"}]),
           "progress": json.dumps({"stage": "done", "done": 4, "total": 4}), "result": "results/j0001/result.json"}
    job = JobRecord.from_redis(raw)
    assert (job.rev, job.cancel_requested, job.model_cache_hits, job.progress["stage"]) == (7, True, 1, "done")
    assert job.artifacts[0]["name"] == "result.json" and job.result == "results/j0001/result.json"


def test_an_old_watch_record_loads_with_defaults():
    w = WatchRecord.from_redis({"id": "w1", "owner": "local", "name": "run", "spec": "{}", "status": "paused",
                                "created_at": "1.5", "last_checked_at": "", "last_error": "", "next_check_at": ""})
    assert (w.status, w.created_at, w.last_checked_at, w.next_check_at) == ("paused", 1.5, None, None)
    assert w.resolved == {} and w.secret == "" and w.last_error == ""


def test_statuses_are_one_list():
    assert STATUSES == Status.__args__ == ("queued", "running", "succeeded", "failed", "cancelled")
    assert set(TERMINAL) < set(STATUSES) and "queued" not in TERMINAL and "running" not in TERMINAL

"""The committed OpenAPI document against the running service, schema-driven (schemathesis).

A private stack (Redis, the API under uvicorn, one real Celery worker) so the fuzzed comparisons
cannot load the session's worker: this worker consumes a queue nothing is sent to, so it keeps
``/ready`` true (its heartbeat) and the accepted jobs simply stay queued. Long polls are capped at
1 s so a generated ``?wait=`` cannot stall the run.

The checks: no 5xx (not_a_server_error), every status documented (status_code_conformance), every
body of the documented media type, so every error is application/problem+json
(content_type_conformance), bodies and headers valid against the schema (response_schema_conformance,
response_headers_conformance), invalid input refused with 4xx (negative_data_rejection), undocumented
methods 405 with an ``Allow`` header that lists the documented ones (unsupported_method,
allow_header_conformance). Bounded: a fixed seed and a few examples per operation.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from jobs.commands import worker_argv
from launcher.redis_server import RedisServer
from tests.service_fixtures import ALICE_KEY, PY, REPO, Proc, service_env, start_api, wait_for

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
          "response_headers_conformance", "negative_data_rejection", "unsupported_method", "allow_header_conformance")
MAX_EXAMPLES = 8


@pytest.fixture(scope="module")
def contract_stack(tmp_path_factory):
    import redis as redis_client

    root = tmp_path_factory.mktemp("contract")
    server = RedisServer(root / "redis").start()
    (root / "data" / "models" / "runs").mkdir(parents=True)  # the directory generated watches watch
    env = service_env(server.url, root / "data", CIRCUITDIFF_MAX_WAIT_SECONDS=1, CIRCUITDIFF_WEBHOOK_ALLOW_PRIVATE="true")
    idle = Proc(worker_argv("contract-idle", "-Q", "contract-idle"), env, root / "worker.log")
    api, base = start_api(env, root)
    r = redis_client.Redis.from_url(server.url, decode_responses=True)
    wait_for(lambda: any(w.endswith(f":{idle.pid}") for w in r.zrange("cd:workers", 0, -1)), 60, "worker heartbeat",
             idle)
    r.close()
    yield base, server.url
    api.stop()
    idle.stop()
    server.stop()


def test_openapi_contract_holds_against_the_running_service(contract_stack, tmp_path):
    import redis as redis_client

    base, redis_url = contract_stack
    args = [PY, "-m", "schemathesis.cli", "run", str(REPO / "openapi" / "openapi.json"), "--url", base,
            "-H", f"Authorization: Bearer {ALICE_KEY}", "--checks", ",".join(CHECKS),
            "--phases", "examples,coverage,fuzzing", "--max-examples", str(MAX_EXAMPLES), "--seed", "11",
            "--generation-database", "none", "--request-timeout", "20", "--no-color", "--workers", "1"]
    env = dict(os.environ, SCHEMATHESIS_HOOKS=str(REPO / "tests" / "schemathesis_hooks.py"))
    out = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    report = out.stdout[-20000:] + out.stderr[-3000:]
    assert out.returncode == 0, report
    generated = int(re.search(r"(\d+) generated", out.stdout).group(1))
    assert generated >= 16 * MAX_EXAMPLES // 2, report  # every operation was exercised, not skipped
    # watches were created, not only refused (tests/schemathesis_hooks.py gives positive cases a world)
    r = redis_client.Redis.from_url(redis_url, decode_responses=True)
    watches = sum(1 for k in r.scan_iter(match="cd:watch:*") if k.count(":") == 2)
    r.close()
    assert watches >= 1, f"only {watches} generated watches were accepted\n{report}"
    print(f"schemathesis: {generated} test cases, {watches} watches created, checks {', '.join(CHECKS)}")

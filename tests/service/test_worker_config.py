"""What goes over the broker: JSON only, the job id only, and the delivery guarantees the job record's
attempt counter relies on. The message is read back from a real Redis queue with no worker attached."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import redis

from jobs.queue import QUEUE, TASK_NAME, make_celery
from jobs.settings import Settings
from launcher.redis_server import RedisServer
from tests.service_fixtures import ALICE_KEY, service_env, start_api


def test_celery_configuration():
    conf = make_celery(Settings(redis_url="redis://127.0.0.1:1/0", visibility_timeout=7200)).conf
    assert conf.task_serializer == "json" and list(conf.accept_content) == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1 and conf.worker_pool == "solo"
    assert conf.task_default_queue == QUEUE == "gpu"
    assert conf.broker_transport_options["visibility_timeout"] == 7200
    assert conf.task_ignore_result  # job records are ours, not a result backend's


def test_message_carries_only_the_job_id(tmp_path, local_pair):
    server = RedisServer(tmp_path / "redis").start()
    env = service_env(server.url, tmp_path / "data", CIRCUITDIFF_MODEL_ROOTS=str(Path(local_pair[0]).parent))
    api, base = start_api(env, tmp_path)
    try:
        spec = {"teacher": local_pair[0], "student": local_pair[1], "task": "ioi", "n_prompts": 8,
                "task_options": {"templates": "ABBA"}}
        r = httpx.post(base + "/v1/comparisons", json=spec, headers={"Authorization": f"Bearer {ALICE_KEY}"})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        raw = redis.Redis.from_url(server.url).lrange(QUEUE, 0, -1)
        assert len(raw) == 1
        envelope = json.loads(raw[0])
        assert envelope["content-type"] == "application/json"
        assert envelope["headers"]["task"] == TASK_NAME
        args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
        assert args == [job_id] and kwargs == {}  # the spec stays in the job record, never in the message
        assert "ioi" not in raw[0].decode() and "teacher" not in base64.b64decode(envelope["body"]).decode()
    finally:
        api.stop()
        server.stop()


def test_service_settings_compose_the_engine_settings(tmp_path, monkeypatch):
    """The worker runs the engine with ``Settings.engine``: cache and datasets under the deployment's
    data_dir (not re-read from the library's variables), the engine's own limits read once."""
    monkeypatch.setenv("CIRCUITDIFF_CACHE_DIR", str(tmp_path / "library-cache"))
    monkeypatch.setenv("CIRCUITDIFF_MEMORY_BUDGET", "2GiB")
    monkeypatch.setenv("CIRCUITDIFF_SCAN_CPU_TOKENS", "1024")
    s = Settings(data_dir=tmp_path / "data", redis_url="redis://127.0.0.1:1/0")
    engine = s.engine
    assert engine.cache and engine.cache_dir == s.cache_dir == s.data_dir / "cache"
    assert engine.datasets_dir == s.datasets_dir
    assert engine.memory_budget == 2 * 2**30 and engine.scan_cpu_tokens == 1024
    monkeypatch.setenv("CIRCUITDIFF_SCAN_CPU_TOKENS", "1")
    assert s.engine is engine  # read once per settings object

"""No Docker engine runs here, so the Dockerfile and docker-compose.yml are checked statically: they
parse, and every module, command, port, target and path they name exists in this repo and agrees
with the settings and command lines the code uses (jobs/settings.py, jobs/commands.py)."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from jobs.commands import api_argv, worker_argv
from jobs.queue import QUEUE
from jobs.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _stages() -> dict[str, list[str]]:
    """Dockerfile instructions per build stage (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    stages: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if m := re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.I):
            current = m.group(2)
            stages[current] = [line]
        elif current:
            stages[current].append(line)
    return stages


def _arg_default(name: str) -> str:
    m = re.search(rf"^ARG {name}=(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    return m.group(1) if m else ""


def _cmd(stage: list[str], word: str = "CMD") -> list[str]:
    line = next(x for x in stage if x.startswith(word + " "))
    body = line[len(word) + 1:].strip()
    if body.startswith("["):
        return json.loads(body)
    return shlex.split(body)


def _module_exists(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


def _check_command(cmd: list[str]) -> None:
    """A python -m / celery -A command must name modules that exist here."""
    if cmd[:2] == ["python", "-c"]:
        compile(cmd[2], "<healthcheck>", "exec")
    elif cmd[:2] == ["python", "-m"]:
        mod = cmd[2]
        assert _module_exists(mod), cmd
        if mod in ("service", "worker"):
            assert (REPO / mod / "__main__.py").is_file()
    elif cmd[0] in ("redis-server", "redis-cli"):
        pass
    else:
        pytest.fail(f"unexpected command {cmd}")


def test_dockerfile_targets_commands_and_ports():
    stages = _stages()
    assert {"api", "worker"} <= set(stages)
    api, worker = stages["api"], stages["worker"]
    worker_base = worker[0].split()[1]
    if worker_base.startswith("${"):
        worker_base = _arg_default(worker_base[2:-1])
    assert "pytorch" in worker_base and "cuda" in worker_base, worker_base  # CUDA PyTorch base
    torch_pin = re.search(r'"torch==([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert worker_base.split(":")[1].startswith(torch_pin), "worker base must ship the pinned torch"
    assert "torch" not in " ".join(x for x in api if x.startswith("RUN")).replace("--no-deps", "")
    for stage in (api, worker):
        _check_command(_cmd(stage))
        hc = next(x for x in stage if x.startswith("HEALTHCHECK"))
        _check_command(json.loads(hc[hc.index("CMD") + 4:]))
        for line in stage:
            if line.startswith("COPY "):
                for src in line.split()[1:-1]:
                    assert (REPO / src).exists(), f"Dockerfile copies missing {src}"
    # each image holds its own side and the shared package, never the other side
    copied = {line.split()[1] for stage in (api, worker) for line in stage if line.startswith("COPY ")}
    assert {"circuitdiff", "jobs", "watches", "service", "worker"} <= copied
    assert not any(line.startswith("COPY worker") for line in api), "the api image must not hold the worker"
    assert not any(line.startswith("COPY service") for line in worker), "the worker image must not hold the API"
    expose = next(x for x in api if x.startswith("EXPOSE")).split()[1]
    env = " ".join(x for x in api if x.startswith("ENV"))
    assert f"CIRCUITDIFF_PORT={expose}" in env and "CIRCUITDIFF_HOST=0.0.0.0" in env
    assert Settings.model_fields["port"].default == int(expose)


def test_compose_services_reference_what_exists():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"redis", "api", "worker"}
    stages = _stages()

    redis = services["redis"]
    cmd = redis["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis["healthcheck"]["test"][1:] == ["redis-cli", "ping"]

    known_env = {f"CIRCUITDIFF_{name.upper()}" for name in Settings.model_fields} | {"REDIS_URL", "HF_HOME"}
    for name in ("api", "worker"):
        svc = services[name]
        assert svc["build"]["target"] in stages
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        env = svc["environment"]
        assert set(env) <= known_env, set(env) - known_env
        assert env["REDIS_URL"].startswith("redis://redis:6379")
        data_mount = next(v for v in svc["volumes"] if v.startswith("circuitdiff-data:"))
        assert data_mount.split(":")[1] == env["CIRCUITDIFF_DATA_DIR"]  # one shared data volume
        assert any(v.split(":")[1] == env["CIRCUITDIFF_MODEL_ROOTS"] for v in svc["volumes"])
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD"
        _check_command(test[1:])
        assert "circuitdiff-data" in compose["volumes"]

    api = services["api"]
    assert api["ports"] == [f"{api['environment']['CIRCUITDIFF_PORT']}:{api['environment']['CIRCUITDIFF_PORT']}"]
    assert "/ready" in api["healthcheck"]["test"][-1]
    assert "CIRCUITDIFF_API_KEYS" in api["environment"]  # non-loopback bind needs keys
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert "gpu" in gpu["capabilities"]
    assert int(services["worker"]["environment"]["CIRCUITDIFF_VISIBILITY_TIMEOUT"]) >= 3600


def test_compose_gives_each_gpu_worker_its_own_devices_named_and_queued_as_make_run_does():
    """Issue 25: one service per GPU, reserving its device ids, running ``python -m worker --gpus IDS``,
    which names the worker after them and picks its queue exactly as ``CIRCUITDIFF_GPUS`` does."""
    from jobs.commands import gpu_worker_argv
    from jobs.queue import MULTI_QUEUE
    from jobs.settings import parse_gpus
    from worker.__main__ import argv_for

    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    workers = {name: svc for name, svc in services.items() if svc.get("command", [])[:3] == ["python", "-m", "worker"]}
    assert {"worker", "worker-gpu1", "worker-multi"} <= set(workers)
    reserved: list[str] = []
    queues = {}
    for name, svc in workers.items():
        cmd = svc["command"]
        assert cmd[3] == "--gpus", cmd
        (group,) = parse_gpus(cmd[4])
        ids = svc["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
        assert ids == [str(d) for d in group], (name, ids, cmd)
        assert svc["environment"]["REDIS_URL"].startswith("redis://redis:") and svc["healthcheck"]
        argv = argv_for(cmd[3:])
        assert argv == gpu_worker_argv(group)
        queues[name] = argv[argv.index("-Q") + 1]
        reserved += ids
    assert len(reserved) == len(set(reserved)), "a GPU is reserved by two services"
    assert queues == {"worker": QUEUE, "worker-gpu1": QUEUE, "worker-multi": MULTI_QUEUE}
    assert "CUDA_VISIBLE_DEVICES" not in str(workers)  # the container sees only its reserved devices


def test_non_loopback_bind_requires_keys():
    with pytest.raises(ValueError, match="API keys"):
        Settings(host="0.0.0.0", api_keys=[], redis_url="redis://x")
    s = Settings(host="0.0.0.0", api_keys=["k1", "sha256:" + "a" * 64], redis_url="redis://x")
    assert "k1" not in s.api_keys and "a" * 64 in s.api_keys  # stored hashed


def test_both_images_run_the_command_lines_of_jobs_commands():
    """One source for the process command lines: the api runs what ``api_argv`` says, the worker
    runs ``python -m worker``, which executes ``worker_argv`` (as ``make run`` and the tests do)."""
    import worker.__main__ as worker_main

    stages = _stages()
    assert _cmd(stages["api"]) == ["python", *api_argv()[1:]]
    assert _cmd(stages["worker"]) == ["python", "-m", "worker"]
    assert worker_main.worker_argv is worker_argv
    argv = worker_argv()
    assert argv[1:4] == ["-m", "celery", "-A"] and _module_exists(argv[4])
    assert argv[argv.index("-Q") + 1] == QUEUE == "gpu" and argv[argv.index("-P") + 1] == "solo"
    assert argv[argv.index("--prefetch-multiplier") + 1] == "1" and argv[argv.index("-c") + 1] == "1"


def test_compose_runs_beat_and_the_watch_worker_with_the_command_lines_of_jobs_commands():
    """Watches (issue 16): a ``beat`` and a ``watcher`` service, each running ``python -m
    worker.watch_main ROLE``, which executes ``beat_argv`` / ``watcher_argv`` (as ``make run`` does)."""
    from jobs.commands import beat_argv, watcher_argv
    from jobs.queue import WATCH_QUEUE
    from launcher.stack import processes
    from worker.watch_main import argv_for

    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    known_env = {f"CIRCUITDIFF_{name.upper()}" for name in Settings.model_fields} | {"REDIS_URL", "HF_HOME"}
    for role in ("beat", "watcher"):
        svc = services[role]
        assert svc["command"] == ["python", "-m", "worker.watch_main", role]
        assert svc["build"]["target"] in _stages()
        assert set(svc["environment"]) <= known_env and svc["environment"]["REDIS_URL"].startswith("redis://redis:")
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        assert any(v.startswith("circuitdiff-data:") for v in svc["volumes"])
    settings = Settings(redis_url="redis://x")
    assert argv_for("watcher") == watcher_argv("watcher")
    assert argv_for("beat")[:-2] == beat_argv(settings.data_dir / "celerybeat-schedule")[:-2]
    w = watcher_argv()
    assert w[w.index("-Q") + 1] == WATCH_QUEUE and _module_exists(w[w.index("-A") + 1])
    assert {c.name for c in processes(settings)} >= {"worker1", "watcher", "beat", "api"}  # make run starts beat

"""circuitdiff.client.Client and `circuitdiff compare --server` against the real stack (uvicorn API,
Redis, a Celery worker running the engine on tiny checkpoints): no mocks."""

from __future__ import annotations

import json
import subprocess

import pytest

from circuitdiff.client import ApiError, Client, JobCancelled, JobFailed
from circuitdiff.result import ComparisonResult
from tests.service_fixtures import ALICE_KEY, BOB_KEY, PY, REPO


@pytest.fixture
def client(svc_api):
    with Client(svc_api, api_key=ALICE_KEY, timeout=30) as c:
        yield c


def test_client_imports_without_torch():
    code = ("import sys, circuitdiff.client\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'transformer_lens')))")
    out = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_submit_wait_result_files_and_listing(client, svc_worker, local_pair, tmp_path):
    spec = {"teacher": local_pair[0], "student": local_pair[1], "task": "ioi", "n_prompts": 8, "seed": 51}
    job = client.submit(spec, idempotency_key="client-51")
    assert job.status in ("queued", "running") and job.links.result.endswith("/result")
    assert client.submit(spec, idempotency_key="client-51").id == job.id
    seen = []
    done = client.wait(job.id, timeout=300, on_update=lambda j: seen.append(j.status))
    assert done.status == "succeeded" and seen[-1] == "succeeded"
    assert client.get(job.id).attempts == 1

    result = client.result(job.id)
    assert isinstance(result, ComparisonResult) and result.alignment.n_pairs > 0
    names = {a.name: a for a in client.artifacts(job.id)}
    saved = client.download(job.id, "result.json", tmp_path / "result.json")
    assert json.loads(saved.read_text())["alignment"]["score"] == result.alignment.score
    assert saved.stat().st_size == names["result.json"].size
    if "report.html" in names:
        assert client.report(job.id).lstrip().lower().startswith(b"<!doctype html")
    assert job.id in [j.id for j in client.list(status="succeeded", page_size=1)]  # pages through cursors


def test_problems_become_exceptions_with_code_errors_and_fix(client, svc_api, local_pair):
    with pytest.raises(ApiError) as e:
        client.submit({"teacher": local_pair[0], "student": local_pair[1], "task": "nope"})
    assert e.value.status == 422 and e.value.code == "unknown_task"
    assert e.value.errors[0]["field"] == "task" and "ioi" in e.value.fix
    with pytest.raises(ApiError) as e:
        client.get("j0000000000000000000000")
    assert e.value.status == 404 and e.value.code == "job_not_found" and e.value.fix
    with Client(svc_api, api_key="wrong") as stranger, pytest.raises(ApiError) as e:
        stranger.list().__next__()
    assert e.value.status == 401 and e.value.code == "unauthorized"


def test_wait_raises_the_jobs_problem_when_it_fails(client, svc_worker, svc_data, local_pair):
    import shutil

    broken = svc_data / "models" / "broken-client"
    shutil.copytree(local_pair[1], broken, dirs_exist_ok=True)
    (broken / "config.json").write_text("{ not JSON")
    job = client.submit({"teacher": local_pair[0], "student": str(broken), "task": "ioi", "n_prompts": 8, "seed": 52})
    with pytest.raises(JobFailed) as e:
        client.wait(job.id, timeout=300)
    assert e.value.code == "model_load_failed" and e.value.field == "student.id" and e.value.fix
    assert e.value.job.status == "failed"


def test_cancel_then_wait_raises_cancelled(client, local_pair):
    job = client.submit({"teacher": local_pair[0], "student": local_pair[1], "task": "ioi", "n_prompts": 24,
                         "seed": 53})
    assert client.cancel(job.id).cancel_requested
    with pytest.raises(JobCancelled) as e:
        client.wait(job.id, timeout=120)
    assert e.value.job.status == "cancelled"
    with pytest.raises(ApiError) as e:
        client.result(job.id)
    assert e.value.code == "job_cancelled"


def test_upload_dataset_items_and_file(client, svc_api, tmp_path):
    items = [{"prompt": "When Lily and Sam went to the park, Sam gave a ball to", "answer": "Lily", "distractor": "Sam"}]
    info = client.upload_dataset(items)
    assert info.n_items == 1 and info.id.startswith("ds_")
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(items[0]) + "\nnot json\n")
    again = client.upload_dataset(path)
    assert again.id == info.id and again.n_rejected == 1
    two = items + [{"prompt": "When Ann and Tom went to the shop, Tom gave a pen to", "answer": "Ann", "distractor": "Tom"}]
    second = client.upload_dataset(two)
    listed = [d.id for d in client.datasets()]
    assert listed.index(second.id) < listed.index(info.id)  # newest upload first
    assert list(client.dataset_items(second.id, page_size=1)) == [dict(sorted(i.items())) for i in two]  # two pages
    saved = client.download_dataset(second.id, tmp_path / "saved.jsonl")
    assert client.upload_dataset(saved).id == second.id  # the stored JSONL uploads to the same id
    with Client(svc_api, api_key=BOB_KEY) as bob:
        assert info.id not in [d.id for d in bob.datasets()]
        for call in (lambda: bob.dataset(info.id), lambda: list(bob.dataset_items(info.id)),
                     lambda: bob.download_dataset(info.id, tmp_path / "not-mine.jsonl")):
            with pytest.raises(ApiError) as e:
                call()
            assert e.value.code == "dataset_not_found"
    assert not (tmp_path / "not-mine.jsonl").exists()


def test_cli_compare_on_a_server_matches_a_local_run(cli, svc_api, svc_worker, local_pair, tmp_path):
    """`compare --server` prints the same summary and writes the same result and report files as the
    same command run locally."""
    args = ["compare", "--teacher", local_pair[0], "--student", local_pair[1], "--task", "ioi", "--prompts", "8",
            "--seed", "54", "--chance-draws", "1000"]
    remote = cli(*args, "--server", svc_api, "--api-key", ALICE_KEY, "--out", str(tmp_path / "remote.json"),
                 "--report", str(tmp_path / "remote.html"))
    assert remote.returncode == 0, remote.stderr
    assert "job j" in remote.stderr  # the job it submitted, then its progress
    local = cli(*args, "--out", str(tmp_path / "local.json"), "--report", str(tmp_path / "local.html"))
    assert local.returncode == 0, local.stderr
    strip = lambda out: [x for x in out.splitlines() if not x.startswith(("result:", "report:"))]  # noqa: E731
    assert strip(remote.stdout) == strip(local.stdout)
    r, l_ = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("remote", "local"))
    assert r["alignment"] == l_["alignment"] and r["influence"] == l_["influence"]
    assert (tmp_path / "remote.html").is_file() and (tmp_path / "plots").is_dir()


def test_cli_server_errors_are_one_line_with_the_fix(cli, svc_api, tmp_path):
    out = cli("compare", "--teacher", "/nowhere/teacher", "--student", "/nowhere/student", "--task", "ioi",
              "--server", svc_api, "--api-key", ALICE_KEY, "--out", str(tmp_path / "r.json"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("error: the server refused it") and "teacher.id" in out.stderr
    down = cli("compare", "--teacher", "zoo:gpt-teacher", "--student", "zoo:gpt-student", "--task", "ioi",
               "--server", "http://127.0.0.1:9", "--out", str(tmp_path / "r.json"))
    assert down.returncode == 2 and "cannot reach" in down.stderr

"""Plain-text datasets and the job's metric end to end (issue #17): the validator, the CLI, HTTP
(real Redis, API and worker) and the report in a real browser, on the bundled zoo GPT pair."""

from __future__ import annotations

import json

import pytest

from circuitdiff.tasks.custom import dataset_kind, validate_lines
from tests.conftest import require_zoo
from tests.plain_texts import TEXTS
from tests.report_browser import Browser, chromium_path
from tests.service_fixtures import poll_until

BODY = "\n".join(json.dumps({"text": t}) for t in TEXTS) + "\n"
PAIR = ("zoo:gpt-teacher", "zoo:gpt-student")


def test_plain_text_lines_validate_and_one_dataset_is_one_kind():
    items, rejected = validate_lines(BODY + '{"text": "Sam met Lee.", "corrupted_text": "Ann met Bo."}\n'
                                     '{"prompt": "Mary and John. John gave it to", "answer": "Mary", "distractor": "John"}\n'
                                     '{"text": "x", "answer": "y"}\n{"text": ""}\n')
    assert dataset_kind(items) == "text" and len(items) == len(TEXTS) + 1
    assert items[-1] == {"text": "Sam met Lee.", "corrupted_text": "Ann met Bo."}
    assert [(r["line"], r["field"]) for r in rejected] == [(8, "line"), (9, "answer"), (10, "text")]
    assert "one dataset is one kind" in rejected[0]["reason"]


def test_loss_on_plain_text_through_the_cli_with_a_report_in_a_browser(tmp_path, cli):
    require_zoo(*[m[4:] for m in PAIR])
    data = tmp_path / "texts.jsonl"
    data.write_text(BODY)
    out, report = tmp_path / "result.json", tmp_path / "report.html"
    refused = cli("compare", "--teacher", PAIR[0], "--student", PAIR[1], "--task", "custom", "--dataset", str(data),
                  "--metric", "answer_prob", "--prompts", "6", "--no-cache", "--out", str(out))
    assert refused.returncode == 2 and "metric" in refused.stderr and "plain text" in refused.stderr, refused.stderr
    assert not out.exists()

    run = cli("compare", "--teacher", PAIR[0], "--student", PAIR[1], "--task", "custom", "--dataset", str(data),
              "--metric", "loss", "--prompts", "6", "--bootstrap", "50", "--no-cache", "--out", str(out),
              "--report", str(report))
    assert run.returncode == 0, run.stderr
    r = json.loads(out.read_text())
    assert r["spec"]["metric"] == "loss" and r["metric"]["name"] == "loss" and r["metric"]["units"] == "nats per token"
    assert r["task"]["kind"] == "text" and r["task"]["n_prompts"] == 6 and r["task"]["max_tokens"] == 128
    item = {k: v for k, v in r["task"]["items"][0].items() if v is not None}
    assert item == {"text": TEXTS[0]}  # what a dataset line needs to re-run it
    for side in ("teacher", "student"):
        p = r["performance"][side]
        assert 0.5 < p["value"] < 20 and p["performs_task"] is None and p["accuracy"] is None
        assert p["value_ci95"][0] < p["value"] < p["value_ci95"][1]
        infl = r["influence"][side]
        assert all(c["retained_pct"] is None and c["logit_diff"] is None for c in infl.values())
        assert max(c["influence"] for c in infl.values()) > 0.01  # some component matters to the loss
    assert 0 < r["alignment"]["score"] <= 1
    assert r["robustness"]["teacher"] is None and "no retained %" in r["robustness"]["note"]
    print(run.stdout)
    assert "metric: next-token loss (loss, nats per token)" in run.stdout

    with Browser() as b:
        b.open(report.as_uri())
        assert b.console_errors() == []
        text = b.eval("document.body.innerText")
        assert "next-token loss (nats per token): clean mean" in text
        heads = b.eval("[...document.querySelectorAll('#components-teacher th')].map(e => e.innerText).join('|')")
        assert "loss ablated" in heads and "Δ loss" in heads and "LD" not in heads, heads


def test_loss_on_plain_text_over_http_and_answer_metrics_refused_at_submission(alice, svc_worker):
    require_zoo(*[m[4:] for m in PAIR])
    chromium_path()
    ds = alice.post("/v1/datasets", content=BODY.encode()).json()
    assert ds["kind"] == "text" and ds["n_items"] == len(TEXTS)
    spec = {"teacher": PAIR[0], "student": PAIR[1], "task": "custom", "dataset": ds["id"], "n_prompts": 6,
            "bootstrap": 50}
    for metric in ("logit_diff", "answer_prob", "answer_logprob"):
        refused = alice.post("/v1/comparisons", json={**spec, "metric": metric})
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        body = refused.json()
        assert body["code"] == "invalid_metric" and body["errors"][0]["field"] == "metric", body
        assert "kl or loss" in body["errors"][0]["fix"]

    job = alice.post("/v1/comparisons", json={**spec, "metric": "loss"}).json()
    done = poll_until(alice, job["id"], {"succeeded", "failed"}, timeout=300)
    assert done["status"] == "succeeded", done.get("error")
    result = alice.get(f"/v1/comparisons/{job['id']}/result").json()
    assert result["metric"]["name"] == "loss" and result["task"]["kind"] == "text"
    page = alice.get(f"/v1/comparisons/{job['id']}/report")
    assert page.status_code == 200 and "next-token loss" in page.text and "loss ablated" in page.text


@pytest.mark.parametrize("metric, field", [("loss", "metric")])
def test_loss_is_refused_for_a_masked_model_with_the_field_named(alice, metric, field):
    r = alice.post("/v1/comparisons", json={"teacher": "zoo:bert-teacher", "student": "zoo:distilbert-student",
                                            "task": "ioi", "metric": metric})
    assert r.status_code == 422 and r.json()["code"] == "invalid_metric", r.text
    assert r.json()["errors"][0]["field"] == field and "masked" in r.json()["detail"]

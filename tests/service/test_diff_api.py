"""``GET /v1/comparisons/{a}/diff/{b}`` and its page against the real stack (API, Redis, a worker
running the engine on tiny checkpoints), through the client."""

from __future__ import annotations

import pytest

from circuitdiff.client import ApiError, Client
from tests.service_fixtures import ALICE_KEY, BOB_KEY


@pytest.fixture
def client(svc_api):
    with Client(svc_api, api_key=ALICE_KEY, timeout=60) as c:
        yield c


def test_diff_of_two_results_and_of_one_with_itself(client, svc_api, svc_worker, local_pair, tmp_path):
    spec = {"teacher": local_pair[0], "student": local_pair[1], "task": "ioi", "n_prompts": 8}
    a = client.wait(client.submit({**spec, "seed": 71}).id, timeout=300)
    b = client.wait(client.submit({**spec, "seed": 72}).id, timeout=300)

    same = client.diff(a.id, a.id)
    assert same["same_comparison"] and same["teacher"]["same"] and same["teacher"]["note"].startswith("same teacher")
    assert same["score"]["difference"] == 0.0 and same["score"]["ci95"] == [0.0, 0.0]
    assert all(r["difference"] == 0.0 for role in ("teacher", "student") for r in same["influence"][role])
    assert same["matches"]["changed"] == [] and same["verdict"]["changed"] is False

    d = client.diff(a.id, b.id)
    ra, rb = client.result(a.id), client.result(b.id)
    assert d["teacher"]["same"] and not d["same_prompts"]  # other seeds: other prompts
    assert d["score"]["difference"] == pytest.approx(rb.alignment.score - ra.alignment.score)
    assert d["score"]["ci95"][0] < d["score"]["difference"] < d["score"]["ci95"][1]

    # the tables beside result.json, as CSV with units in the headers, and the summary picture
    names = {x.name: x for x in client.artifacts(a.id)}
    assert {"influence.csv", "matches.csv", "similarity_heads.csv", "similarity_mlps.csv", "plots/summary.png"} <= set(names)
    assert names["influence.csv"].media_type.startswith("text/csv")
    saved = client.download(a.id, "influence.csv", tmp_path / "influence.csv")
    header, *rows = saved.read_text().splitlines()
    assert header.startswith("model,component,kind,influence (logits)")
    assert len(rows) == len(ra.influence["teacher"]) + len(ra.influence["student"])

    page = client.diff_report(a.id, b.id)
    assert page.lstrip().lower().startswith(b"<!doctype html") and b"Same teacher" in page
    raw = client._http.get(f"/v1/comparisons/{a.id}/diff/{b.id}/report")
    assert raw.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in raw.headers["content-security-policy"]

    # both must be the caller's: another key's job is missing, named by the field it came in
    with Client(svc_api, api_key=BOB_KEY) as bob:
        with pytest.raises(ApiError) as e:
            bob.diff(a.id, b.id)
        assert e.value.status == 404 and e.value.errors[0]["field"] == "job_id"
        mine = bob.submit({**spec, "seed": 73})
        with pytest.raises(ApiError) as e:
            bob.diff(mine.id, a.id)
        assert e.value.status == 404 and e.value.code == "job_not_found" and e.value.errors[0]["field"] == "other_id"
        bob.cancel(mine.id)
    # and both must have succeeded
    queued = client.submit({**spec, "seed": 74, "n_prompts": 12})
    client.cancel(queued.id)
    with pytest.raises(ApiError) as e:
        client.diff(a.id, queued.id)
    assert e.value.status == 409 and e.value.code in ("job_cancelled", "job_not_finished")

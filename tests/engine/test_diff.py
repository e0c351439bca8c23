"""Two results side by side (circuitdiff.analysis.diff, ``circuitdiff diff``, the A/B page) on real
zoo comparisons: the distilled student and a control student of the same teacher."""

from __future__ import annotations

import copy
import functools
import json

import pytest

from circuitdiff.analysis.diff import diff_results
from circuitdiff.report.diff_page import render_diff
from tests.conftest import require_zoo
from tests.report_zoo import ZOO_SPEC, zoo_ioi_result


@functools.lru_cache(maxsize=1)
def _control() -> dict:
    from circuitdiff.pipeline import run_comparison

    require_zoo("gpt-control-kd")
    return run_comparison({**ZOO_SPEC, "student": "zoo:gpt-control-kd"}).model_dump(mode="json")


def control_result() -> dict:
    return copy.deepcopy(_control())


def test_a_result_diffed_with_itself_is_all_zeros():
    a = zoo_ioi_result()
    d = diff_results(a, copy.deepcopy(a))
    assert d["same_comparison"] and d["same_prompts"] and d["teacher"]["same"]
    assert d["score"]["difference"] == 0.0 and d["score"]["ci95"] == [0.0, 0.0]
    assert d["verdict"]["changed"] is False and d["verdict"]["direction"] == "same"
    assert d["verdict"]["chance"]["margin_difference"] == 0.0
    for role in ("teacher", "student"):
        rows = d["influence"][role]
        assert rows and all(r["difference"] == 0.0 and r["in"] == "both" for r in rows)
        assert sum(r["a"] for r in rows) == pytest.approx(1.0)
        assert d["circuits"][f"{role}_jaccard"] == 1.0 and d["circuits"][f"{role}_only_a"] == []
    assert d["matches"]["changed"] == [] and d["matches"]["n_same"] == len({m["student"] for m in a["matches"]
                                                                             if m["matched"]})


def test_two_students_of_one_teacher():
    a, b = zoo_ioi_result(), control_result()
    d = diff_results(a, b)
    assert d["teacher"]["same"] and d["teacher"]["note"].startswith("same teacher") and d["same_prompts"]
    assert not d["same_comparison"]
    s = d["score"]
    assert s["difference"] == pytest.approx(b["alignment"]["score"] - a["alignment"]["score"])
    lo, hi = s["ci95"]
    assert lo < s["difference"] < hi
    half = lambda ci: (ci[1] - ci[0]) / 2  # noqa: E731 - wider than either interval, narrower than their sum
    assert max(half(a["alignment"]["ci95"]), half(b["alignment"]["ci95"])) < (hi - lo) / 2 < \
        half(a["alignment"]["ci95"]) + half(b["alignment"]["ci95"])
    assert d["verdict"]["a"] == a["alignment"]["verdict"] and d["verdict"]["b"] == b["alignment"]["verdict"]
    rows = {r["component"]: r for r in d["influence"]["student"]}
    total_b = sum(v["influence"] for v in b["influence"]["student"].values())
    assert rows["L0MLP"]["b"] == pytest.approx(b["influence"]["student"]["L0MLP"]["influence"] / total_b)
    assert all(r["difference"] == 0.0 for r in d["influence"]["teacher"])  # one teacher, the same prompts
    pa = {m["student"]: m["teacher"] for m in a["matches"] if m["matched"]}
    pb = {m["student"]: m["teacher"] for m in b["matches"] if m["matched"]}
    assert {c["student"] for c in d["matches"]["changed"]} == {x for x in set(pa) | set(pb) if pa.get(x) != pb.get(x)}
    assert d["circuits"]["teacher_jaccard"] == 1.0


def test_a_different_teacher_is_said_first():
    a, b = zoo_ioi_result(), zoo_ioi_result()
    b["models"]["teacher"]["sha256"] = "0" * 64  # the same name, other weights
    d = diff_results(a, b)
    assert not d["teacher"]["same"] and d["teacher"]["note"].startswith("different teachers")
    assert not d["same_comparison"] and d["score"]["ci95"][0] < 0 < d["score"]["ci95"][1]
    page = render_diff(d)
    assert 'class="banner different"' in page and "two different references" in page


def test_cli_diff_prints_a_summary_and_writes_the_page(cli, tmp_path):
    from tests.report_browser import Browser

    (tmp_path / "a.json").write_text(json.dumps(zoo_ioi_result()))
    (tmp_path / "b.json").write_text(json.dumps(control_result()))
    p = cli("diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--report", str(tmp_path / "ab.html"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("same teacher: both compare against zoo:gpt-teacher") and "B - A: " in p.stdout
    assert "student components changed teacher partner" in p.stdout and "report:" in p.stdout
    as_json = cli("diff", str(tmp_path / "a.json"), str(tmp_path / "a.json"), "--json")
    assert json.loads(as_json.stdout)["score"]["difference"] == 0.0
    bad = cli("diff", str(tmp_path / "a.json"), str(tmp_path / "missing.json"))
    assert bad.returncode == 2 and "no such result file" in bad.stderr
    with Browser(width=1400, height=1000) as b:
        b.open((tmp_path / "ab.html").as_uri())
        assert b.console_errors() == []
        assert [u for u in b.requests() if not u.startswith(("file:", "data:"))] == []
        assert b.eval("document.querySelector('#teacher').innerText").startswith("Same teacher")
        assert b.eval("document.querySelectorAll('svg.ab circle').length") == 2
        assert b.eval("document.querySelector('table.shares.student tbody').rows.length") > 0
        assert b.eval("document.documentElement.scrollWidth") <= 1400  # nothing wider than the window

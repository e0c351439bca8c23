"""``scan: "screened"``: attribution everywhere, the exact scan where an estimate could change the top-k.

Checked against the full exact scan on real models: every value marked exact equals the exact
scan's to 1e-5 of the clean LD scale, the top-k is the exact scan's top-k, and the screen's error
on the components it did not re-scan stays within the margin it used (the SAFETY factor's basis,
circuitdiff.scan.screened).
"""

from __future__ import annotations

import pytest

from circuitdiff.scan.screened import SAFETY, screen

TOL = 1e-5


# ----------------------------------------------------------------------------- the rule alone
def _exact_from(truth: dict[str, float], calls: list[list[str]]):
    def exact_of(ids):
        calls.append(list(ids))
        return {c: truth[c] for c in ids}
    return exact_of


def test_screen_rescans_what_could_reach_the_top_within_the_measured_error():
    truth = {"a": 10.0, "b": 8.0, "c": 5.0, "d": 4.9, "e": 1.0}
    est = {"a": 9.0, "b": 8.5, "c": 4.0, "d": 5.2, "e": 1.1}
    calls: list[list[str]] = []
    exact, how = screen(est, _exact_from(truth, calls), top=2, safety=2.0)
    # round 1: the top-2 estimates; err = max(|9-10|, |8.5-8|) = 1, margin 2, tau = 8:
    # d (5.2 + 2 < 8) and c cannot reach tau, so nothing else is re-scanned
    assert calls == [["a", "b"]] and set(exact) == {"a", "b"}
    assert how == {"max_abs_error": 1.0, "margin": 2.0, "threshold": 8.0, "rounds": 1}
    # a larger safety factor widens the net to every estimate within 3 * err of tau
    calls.clear()
    exact, how = screen(est, _exact_from(truth, calls), top=2, safety=3.0)
    assert calls == [["a", "b"], ["d"]] and how["rounds"] == 2


def test_screen_repeats_until_no_estimate_can_reach_the_kth_exact_value():
    # the estimate underrates "c" badly; the re-scanned "b" reveals the error, which pulls "c" in,
    # whose exact value then raises tau and the measured error in turn
    truth = {"a": 10.0, "b": 2.0, "c": 9.0, "d": 0.5}
    est = {"a": 10.0, "b": 6.0, "c": 1.0, "d": 0.4}
    calls: list[list[str]] = []
    exact, how = screen(est, _exact_from(truth, calls), top=2, safety=1.0)
    assert calls[0] == ["a", "b"] and "c" in exact
    top2 = sorted(truth, key=lambda c: -truth[c])[:2]
    assert sorted(exact, key=lambda c: -exact[c])[:2] == top2
    assert how["max_abs_error"] == 8.0  # |1 - 9| on c


def test_screen_rescans_the_always_set_and_measures_its_error_on_the_rest():
    truth = {"m": 1.0, "a": 5.0, "b": 4.0, "c": 0.1}
    est = {"m": 0.01, "a": 5.5, "b": 3.9, "c": 0.2}  # "m" badly estimated: always re-scanned
    calls: list[list[str]] = []
    exact, how = screen(est, _exact_from(truth, calls), top=1, safety=1.0, always=["m"])
    assert calls[0] == ["m", "a"] and how["max_abs_error"] == 0.5  # |5.5 - 5| on a, not |0.01 - 1| on m
    assert set(exact) == {"m", "a"} and how["threshold"] == 5.0  # b: 3.9 + 0.5 < 5

# ----------------------------------------------------------------------------- against the full exact scan
def _view(adapter, task: str, n: int):
    from circuitdiff.catalogue import task_items
    from circuitdiff.tasks.dataset import build_task_data

    tok = adapter.tokenizer
    return build_task_data(task_items(task, {}, n, seed=0), {"teacher": tok, "student": tok}, name=task).view("teacher")


def _check_against_exact(model_id: str, task: str, n: int, top: int, estimator: str = "gradient") -> dict:
    from circuitdiff.models.loading import load_model
    from circuitdiff.scan import scan

    adapter = load_model(model_id)
    view = _view(adapter, task, n)
    full = scan(adapter, view, "mean", method="exact")
    scr = scan(adapter, view, "mean", method="screened", screen_top=top, estimator=estimator)
    assert scr.method == "screened" and scr.components == full.components
    scale = float(full.clean_ld.abs().mean())
    fi, si = full.influences(), scr.influences()
    flags = dict(zip(scr.components, scr.is_exact()))
    ag = scr.agreement
    assert ag["n_exact"] == sum(flags.values()) >= min(top, len(flags))
    assert ag["screen"] == "attribution" and ag["screen_top"] == top and ag["safety"] == SAFETY
    assert ag["estimator"] == estimator and scr.estimator == estimator
    for c in scr.components:
        if flags[c]:
            assert abs(si[c] - fi[c]) <= TOL * scale, (c, si[c], fi[c])
    k = min(top, len(fi))
    assert set(sorted(fi, key=lambda c: -fi[c])[:k]) == set(sorted(si, key=lambda c: -si[c])[:k])
    # the margin held: no component left estimated is off by more than the margin the screen used
    assert all(flags[c] for c in scr.components if c.endswith("MLP"))  # every MLP is re-scanned
    off = [abs(si[c] - fi[c]) for c in scr.components if not flags[c]]
    worst = max(off, default=0.0)
    ratio = worst / ag["max_abs_error"] if ag["max_abs_error"] > 0 else 0.0
    print(f"{model_id} {task}: {ag['n_exact']}/{len(flags)} exact in {ag['rounds']} rounds; screen error on "
          f"re-scanned {ag['max_abs_error']:.3g}, on the rest {worst:.3g} ({ratio:.2f}x); spearman {ag['spearman']}")
    assert worst <= ag["error_margin"] + TOL * scale
    # #28 §1: agreement per kind over the re-scanned components of that kind (the screen's estimate is
    # the attribution scan's), errors relative to the metric's scale
    est = scan(adapter, view, "mean", method="attribution", estimator=estimator).influences()
    for kind, is_kind in (("heads", lambda c: not c.endswith("MLP")), ("mlps", lambda c: c.endswith("MLP"))):
        done = [c for c in scr.components if flags[c] and is_kind(c)]
        by = ag["by_kind"][kind]
        assert by["n_checked"] == len(done)
        err = max(abs(est[c] - fi[c]) for c in done)
        assert by["max_abs_error"] == pytest.approx(err, abs=TOL * scale)
        assert by["max_abs_error_rel"] == pytest.approx(err / scale, abs=TOL)
    summary = scr.summary()
    assert all(summary[c]["exact"] == flags[c] for c in summary)
    return {"ratio": ratio, "n_exact": ag["n_exact"], "n": len(flags)}


def test_screened_equals_exact_where_marked_exact_on_a_tiny_checkpoint(tiny_gpt_dir):
    out = _check_against_exact(str(tiny_gpt_dir), "ioi", 12, top=2)
    assert out["n_exact"] < out["n"], "every component was re-scanned: the screen would be untested"


def test_screened_with_the_relp_screen_equals_exact_where_marked_exact(tiny_gpt_dir, tiny_llama_dir):
    for model_dir in (tiny_gpt_dir, tiny_llama_dir):
        _check_against_exact(str(model_dir), "ioi", 12, top=2, estimator="relp")


def test_screened_equals_exact_where_marked_exact_on_the_zoo_pair(zoo_gpt_pair):
    for model_id in zoo_gpt_pair:
        _check_against_exact(model_id, "ioi", 24, top=4)


def test_screen_top_is_refused_with_another_scan():
    from pydantic import ValidationError

    from circuitdiff.spec import ComparisonSpec

    with pytest.raises(ValidationError) as info:
        ComparisonSpec.model_validate({"teacher": "zoo:gpt-teacher", "student": "zoo:gpt-student", "task": "ioi",
                                       "scan": "exact", "screen_top": 5})
    [err] = info.value.errors()
    assert err["type"] == "invalid_scan_option" and "screened" in err["ctx"]["fix"]
    spec = ComparisonSpec.model_validate({"teacher": "zoo:gpt-teacher", "student": "zoo:gpt-student", "task": "ioi",
                                          "scan": "screened"}).resolve()
    assert spec.screen_top == 20


def test_a_screened_comparison_marks_estimates_in_the_result_and_the_report(loud_gpt_dir, tiny_gpt_dir_b):
    import json

    import jsonschema

    from circuitdiff.pipeline import run_comparison
    from circuitdiff.report import render_html
    from circuitdiff.result import result_json_schema

    r = run_comparison({"teacher": str(loud_gpt_dir), "student": str(tiny_gpt_dir_b), "task": "ioi", "n_prompts": 6,
                        "scan": "screened", "screen_top": 2, "bootstrap": 0, "dtype": "bfloat16"}, cache=False)
    data = json.loads(r.model_dump_json())
    jsonschema.validate(data, result_json_schema())
    assert data["scan"]["method"] == "screened" and data["spec"]["screen_top"] == 2
    assert data["scan"]["estimator"] == data["spec"]["estimator"] == "gradient"  # the default screen, said
    assert data["scan"]["precision"]["dtype"] == "bfloat16" and data["scan"]["precision"]["accumulation"] == "float32"
    assert data["scan"]["precision"]["top_k_identical"] == 10
    flags = {role: {c: v["exact"] for c, v in data["influence"][role].items()} for role in ("teacher", "student")}
    for role, f in flags.items():
        ag = data["scan"]["agreement"][role]
        assert ag["n_exact"] == sum(f.values()) and ag["screen"] == "attribution"
        assert all(f[c] for c in f if c.endswith("MLP"))
    estimated = sum(not v for f in flags.values() for v in f.values())
    assert estimated > 0 and data["scan"]["approximate"] is True
    html = render_html(r)
    assert html.count('class="num estimated"') == estimated and 'id="estimated-note"' in html
    assert "screened (estimator gradient)" in html

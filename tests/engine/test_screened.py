"""``scan: "screened"``: attribution everywhere, the exact scan where an estimate could change the top-k.

Checked against the full exact scan on real models: every value marked exact equals the exact
scan's to 1e-5 of the clean LD scale, the top-k is the exact scan's top-k, and the screen's error
on each component it did not re-scan stays within that component's own margin (the safety factors'
basis, circuitdiff.scan.screened.ERROR_MODELS).
"""

from __future__ import annotations

import pytest

from circuitdiff.scan.screened import ERROR_MODELS, screen

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
    assert how == {"max_abs_error": 1.0, "error_per_scale": 1.0, "margin": 2.0, "threshold": 8.0, "rounds": 1}
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

def test_screen_gives_each_component_a_margin_in_proportion_to_its_error_scale():
    # round 1, a and b: errors 1.0 (scale 2) and 0.5 (scale 0.25): e = max(0.5, 2) = 2 error units per unit of
    # scale; tau = 8. c (estimate 5, scale 1) gets the margin 2 * 2 * 1 = 4 and could reach 8: re-scanned.
    # d (estimate 5.5, scale 0.1) gets 0.4: stays estimated. Round 2: c's error 3.5 raises e to 3.5 and tau
    # to 8.5; d's margin 0.7 still cannot reach it.
    truth = {"a": 10.0, "b": 8.0, "c": 8.5, "d": 5.6}
    est = {"a": 9.0, "b": 8.5, "c": 5.0, "d": 5.5}
    scale = {"a": 2.0, "b": 0.25, "c": 1.0, "d": 0.1}
    calls: list[list[str]] = []
    exact, how = screen(est, _exact_from(truth, calls), top=2, safety=2.0, scale=scale)
    assert calls == [["a", "b"], ["c"]] and set(exact) == {"a", "b", "c"}
    assert how["error_per_scale"] == 3.5 and how["threshold"] == 8.5 and how["margin"] == pytest.approx(0.7)
    assert sorted(exact, key=lambda c: -exact[c])[:2] == ["a", "c"]
    calls.clear()
    screen(est, _exact_from(truth, calls), top=2, safety=2.0)  # uniform: one margin, 2 x 1.0, for c and d alike
    assert calls == [["a", "b"]]  # neither 5 + 2 nor 5.5 + 2 reaches 8: one margin for all misses c (8.5)
    calls.clear()
    _, how = screen(est, _exact_from(truth, calls), top=2, safety=2.0, scale={**scale, "d": 0.0})
    assert "d" not in sum(calls, []) and how["margin"] < 1e-9  # a zero scale: no margin, no division by zero


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
    model, safety = ERROR_MODELS[estimator]
    assert ag["screen"] == "attribution" and ag["screen_top"] == top
    assert (ag["error_model"], ag["safety"]) == (model, safety)
    assert ag["estimator"] == estimator and scr.estimator == estimator
    for c in scr.components:
        if flags[c]:
            assert abs(si[c] - fi[c]) <= TOL * scale, (c, si[c], fi[c])
    k = min(top, len(fi))
    assert set(sorted(fi, key=lambda c: -fi[c])[:k]) == set(sorted(si, key=lambda c: -si[c])[:k])
    # the margin held: no component left estimated is off by more than the margin the screen used
    assert all(flags[c] for c in scr.components if c.endswith("MLP"))  # every MLP is re-scanned
    left = [c for c in scr.components if not flags[c]]
    if model == "perturbation":  # each head left estimated: within its own margin, safety * e * s_c
        from circuitdiff.scan.exact import ExactScanner, task_tensors

        sizes = ExactScanner(adapter.functional(), ablation="mean", **task_tensors(view)).perturbation(left)
    else:
        sizes = {c: 1.0 for c in left}
    units = [abs(si[c] - fi[c]) / (ag["error_per_scale"] * sizes[c]) for c in left if ag["error_per_scale"] > 0]
    ratio = max(units, default=0.0)  # the largest error left outside re-scanning, in units of e * s_c
    print(f"{model_id} {task} ({estimator}, {model}): {ag['n_exact']}/{len(flags)} exact in {ag['rounds']} rounds; "
          f"screen error on re-scanned {ag['max_abs_error']:.3g}, on the rest {ratio:.2f} units of its own scale "
          f"(safety {safety}); spearman {ag['spearman']}")
    for c in left:
        assert abs(si[c] - fi[c]) <= safety * ag["error_per_scale"] * sizes[c] + TOL * scale, c
    assert max((abs(si[c] - fi[c]) for c in left), default=0.0) <= ag["error_margin"] + TOL * scale
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


def test_the_perturbation_scale_is_the_residual_change_of_each_ablation_computed_plainly(tiny_gpt_dir, tiny_llama_dir):
    """ExactScanner.perturbation (a head's ||δ||² as dz G dz, by length group) against the change of the
    residual stream measured plainly: the attention block's output with the head's z replaced, minus
    the clean one; the MLP's replaced output minus the clean one; over one full-length clean pass."""
    import torch

    from circuitdiff.models.loading import load_model
    from circuitdiff.scan.ablation import replacement
    from circuitdiff.scan.exact import NORM_EPS, ExactScanner, corrupted_run, run_clean, task_tensors

    for model_dir in (tiny_gpt_dir, tiny_llama_dir):
        adapter = load_model(str(model_dir))
        stack, inputs = adapter.functional(), task_tensors(_view(adapter, "ioi", 12))
        for ablation in ("mean", "zero", "resample"):
            scanner = ExactScanner(stack, ablation=ablation, **inputs)
            ids = [c.id for c in adapter.components()]
            got = scanner.perturbation(ids)
            t = int(inputs["end_pos"].max()) + 1
            tokens, mask = inputs["tokens"][:, :t], inputs["attention_mask"][:, :t]
            with torch.no_grad():
                clean = run_clean(stack, tokens, mask)
                corrupt, c_mask = corrupted_run(stack, ablation, inputs["corrupted_tokens"], inputs["corrupted_mask"], t)
                reads = torch.arange(t)[None] <= inputs["end_pos"][:, None]
                for c in adapter.components():
                    l = c.layer
                    if c.head is not None:
                        z = clean.z[l].clone()
                        rep = replacement(clean.z[l], corrupt.z[l] if corrupt else None, ablation, c_mask)
                        z[:, :, c.head] = rep[:, :, c.head]
                        delta, x = stack.attn_out(l, z) - stack.attn_out(l, clean.z[l]), clean.resid_mid[l]
                    else:
                        rep = replacement(clean.mlp_out[l], corrupt.mlp_out[l] if corrupt else None, ablation, c_mask)
                        delta, x = rep - clean.mlp_out[l], clean.resid_mid[l] + clean.mlp_out[l]
                    x2 = x.double().pow(2).sum(-1) + x.shape[-1] * NORM_EPS
                    plain = ((delta.double().pow(2).sum(-1) / x2) * reads).sum(1).mean()
                    assert got[c.id] == pytest.approx(float(plain), rel=1e-4, abs=1e-9), (model_dir.name, ablation, c.id)
            assert len(scanner.groups) >= 1 and any(v > 0 for v in got.values())


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

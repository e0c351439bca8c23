"""The HTML report and its plots: rendered from a real zoo comparison, plus crafted results for
escaping, failing models and bad input. The browser checks live in test_report_browser.py."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib import image as mpimg

from circuitdiff.report import ResultFileError, load_result, plots, render_html, render_report
from circuitdiff.vocabulary import SCHEMA_VERSION
from tests.report_synthetic import synthetic_result
from tests.report_zoo import ZOO_SPEC, zoo_ioi_result

FIGURES = ("influence", "matching", "similarity", "drops", "circuit_transfer", "circuit_faithfulness", "attention_1",
           "summary")
EMBEDDED = len(FIGURES) - 2  # every figure but the attention views (counted below) and summary.png (for slides)


class Page(HTMLParser):
    """Every start tag with its attributes, and the text of <script> elements."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if tag == "script":
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data

    def by_id(self, id_: str) -> dict | None:
        return next((a for _, a in self.tags if a.get("id") == id_), None)


@pytest.fixture(scope="module")
def zoo_report(tmp_path_factory) -> tuple[dict, dict[str, Path]]:
    result = zoo_ioi_result()
    out = tmp_path_factory.mktemp("zoo-report")
    return result, render_report(result, out)


def _png_checks(path: Path) -> tuple[int, int]:
    img = mpimg.imread(path)  # [h, w, channels] floats in 0..1
    h, w = img.shape[:2]
    rgb = img[..., :3]
    ink = (rgb.min(axis=2) < 0.9).mean()  # share of pixels that are not (near) white
    assert ink > 0.03, f"{path.name} is almost blank ({ink:.1%} non-white pixels)"
    assert rgb.std() > 0.05, f"{path.name} has no contrast"
    return w, h


def test_zoo_result_carries_the_circuits_and_their_sweep(zoo_report):
    """The shared zoo comparison asks for circuits with a sweep (tests/report_zoo.py): the sweep's
    baseline row is the one search's circuit (``search_components``: the sweep rows are single searches on
    all prompts), the others overlap it by Jaccard."""
    c = zoo_report[0]["circuits"]
    for side in ("teacher", "student"):
        rows = c["sweep"][side]
        assert [r["threshold"] for r in rows] == [10.0, 20.0, 30.0]
        base = next(r for r in rows if r["threshold"] == c["threshold"])
        assert base["jaccard"] == 1.0 and base["components"] == c[side]["search_components"]
        assert all(0.0 <= r["jaccard"] <= 1.0 for r in rows)
    assert c["diff"]["transfer"]["nulls"].keys() == {"random", "depth"}


def test_zoo_report_writes_html_and_every_plot_as_png_and_svg(zoo_report):
    result, files = zoo_report
    assert files["report.html"].stat().st_size > 50_000
    for name in FIGURES:
        png, svg = files[f"plots/{name}.png"], files[f"plots/{name}.svg"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        w, h = _png_checks(png)
        assert 500 <= w <= 4000 and 250 <= h <= 4000, f"{name}.png is {w}x{h}"
        root = ET.parse(svg).getroot()
        assert root.tag.endswith("svg") and svg.stat().st_size > 5_000
    n_views = min(len(result["attention"]), 4)
    assert n_views >= 1, "the zoo comparison should carry attention views of matched heads"
    assert sorted(k for k in files if k.startswith("plots/attention_") and k.endswith(".png")) == \
        [f"plots/attention_{i}.png" for i in range(1, n_views + 1)]


def test_zoo_report_is_self_contained(zoo_report):
    _, files = zoo_report
    text = files["report.html"].read_text()
    page = Page(text)
    for tag, attrs in page.tags:
        for attr in ("src", "href", "srcset", "action", "data"):
            v = attrs.get(attr)
            if v is not None:
                assert v.startswith(("data:", "#")), f"<{tag} {attr}={v[:60]!r}> would leave the page"
        assert not (tag == "link" and attrs.get("rel") == "stylesheet")
    assert len([t for t, _ in page.tags if t == "img"]) == EMBEDDED + len(zoo_report[0]["attention"][:4])
    csp = next(a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "img-src data:" in csp and "unsafe-inline" not in csp


def test_zoo_report_summary_shows_the_numbers(zoo_report):
    result, files = zoo_report
    text = files["report.html"].read_text()
    a = result["alignment"]
    assert f"{a['score']:.3f}" in text
    assert a["ci95"] is not None, "the default preset bootstraps a CI"
    assert f"95% CI {a['ci95'][0]:.3f}–{a['ci95'][1]:.3f}" in text
    for side in ("teacher", "student"):
        perf, model = result["performance"][side], result["models"][side]
        assert model["id"] in text
        assert f"{perf['logit_diff']:.3f} ± {perf['logit_diff_std']:.3f}" in text
        assert f"{perf['accuracy']:.1%}" in text
        assert f"{model['n_params']:,}" in text
        if result["robustness"][side] is not None:
            assert f"{result['robustness'][side]['severity']:.4f}" in text
    assert f"{result['robustness']['compression_ratio']:.3f}" in text
    assert result["task"]["dataset_sha256"] in text and result["models"]["teacher"]["sha256"] in text


def test_zoo_report_pairs_table_reproduces_the_alignment_score(zoo_report):
    """The page explains the score: the mean of the per-pair terms it lists is the score."""
    result, files = zoo_report
    import re

    table = files["report.html"].read_text().split('id="matches-table"')[1].split("</table>")[0]
    terms = [float(v) for v in re.findall(r'<td class="num" data-v="([^"]+)">[^<]*</td></tr>', table)]
    assert len(terms) == result["alignment"]["n_pairs"] == len(result["matches"])
    assert np.mean(terms) == pytest.approx(result["alignment"]["score"], abs=1e-9)


def test_zoo_report_component_tables_cover_every_component(zoo_report):
    result, files = zoo_report
    text = files["report.html"].read_text()
    for side in ("teacher", "student"):
        table = text.split(f'id="components-{side}"')[1].split("</table>")[0]
        assert table.count("<tr") == len(result["influence"][side]) + 1  # + header row
        for cid in result["influence"][side]:
            assert f">{cid}</td>" in table
        # the most influential first; past the first ten the rows are folded (#27)
        shown = re.findall(r'<tr>.*?<td class="mono" data-v="\d+">([^<]+)</td>', table)
        folded = re.findall(r'<tr class="fold">.*?<td class="mono" data-v="\d+">([^<]+)</td>', table)
        ranked = sorted(result["influence"][side], key=lambda c: -result["influence"][side][c]["influence"])
        assert shown == ranked[:10] and sorted(folded) == sorted(ranked[10:])
        assert (f'for="unfold-{side}"' in text) == (len(ranked) > 10)


def test_injected_markup_in_prompts_tokens_and_ids_is_escaped():
    evil = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
    r = synthetic_result(teacher_id="./models/<b>t</b>", prompt="When " + evil + " gave a drink to")
    r["attention"][0]["tokens"][3] = evil
    r["warnings"] = [evil]
    r["task"]["options"] = {"templates": evil}
    r["engine"]["plugin</td><script>x()</script>"] = evil
    html = render_html(r)
    assert "window.__pwned" in html  # present, but only as text
    assert "<script>window" not in html and "<img src=x" not in html and "<b>t</b>" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    page = Page(html)
    assert len(page.scripts) == 1 and "__pwned" not in page.scripts[0]
    assert not [(t, a) for t, a in page.tags for k in a if k.startswith("on")], "event-handler attribute injected"
    assert all(a.get("src", "data:").startswith("data:") for t, a in page.tags if t == "img")


def _draw(fig, path: Path) -> Path:
    with matplotlib.rc_context(plots.RC):
        path.write_bytes(plots.figure_bytes(fig, "png"))
    return path


def test_dollar_signs_in_tokens_do_not_turn_into_mathtext(tmp_path):
    r = load_result(synthetic_result())
    r.attention[0].tokens[2] = "$\\nope{$"  # as mathtext this is a parse error (ValueError when drawn)
    with matplotlib.rc_context(plots.RC):
        fig = plots.attention_figure(r, r.attention[0])
    _png_checks(_draw(fig, tmp_path / "a.png"))


def test_failing_student_is_called_out_and_drop_plot_explains_missing_data(tmp_path):
    r = synthetic_result(student_ld=-0.23)
    files = render_report(r, tmp_path)
    text = files["report.html"].read_text()
    assert "does not perform the ioi task" in text and 'class="verdict flag"' in text
    assert "no: LD not above 0" in text
    _png_checks(files["plots/drops.png"])


def test_large_models_render(tmp_path):
    """GPT-2-small shapes (12x12 teacher, 6x12 student): sizes stay sane."""
    r = load_result(synthetic_result(teacher_layers=12, student_layers=6, n_heads=12))
    for name in ("influence", "matching", "similarity"):
        with matplotlib.rc_context(plots.RC):
            fig = getattr(plots, f"{name}_figure")(r)
        w, h = _png_checks(_draw(fig, tmp_path / f"{name}.png"))
        assert w <= 4000 and h <= 4000


def test_result_model_and_file_inputs(tmp_path):
    r = synthetic_result()
    model = load_result(r)
    assert load_result(model) is model
    path = tmp_path / "result.json"
    path.write_text(json.dumps(r))
    assert load_result(path) == model


def test_a_result_of_schema_version_1_still_renders(tmp_path):
    """tests/data/result_v1.json was written by the first release (zoo GPT pair, IOI, 8 prompts)."""
    data = json.loads((Path(__file__).resolve().parents[1] / "data" / "result_v1.json").read_text())
    assert data["schema_version"] == 1 and "worst5_mean" not in data["robustness"]["teacher"]
    r = load_result(data)
    assert r.schema_version == SCHEMA_VERSION and r.alignment.score == data["alignment"]["score"]
    files = render_report(data, tmp_path)
    page = files["report.html"].read_text()
    assert f"{data['alignment']['score']:.3f}" in page and "zoo:gpt-teacher" in page
    assert r.circuits is None and 'id="circuits"' not in page and "circuit_transfer" not in str(files)
    # before schema 8 delta_mean_drop was the mean of the bootstrap differences: it moves, and the point
    # difference is the two mean drops' difference (#29 §5)
    rb = data["robustness"]
    assert r.robustness.delta_mean_drop_bootstrap_mean == rb["delta_mean_drop"]
    assert r.robustness.delta_mean_drop == pytest.approx(rb["student"]["mean_drop"] - rb["teacher"]["mean_drop"])
    assert all(m.ambiguous is None and m.margin is None for m in r.matches)  # not computed then


@pytest.mark.parametrize("method, estimator", [("screened", "gradient"), ("attribution", "gradient"), ("exact", None)])
def test_a_schema_9_result_says_its_estimates_were_gradient_x_activation(tmp_path, method, estimator):
    """Before schema 10 every estimate was gradient x activation: upgrading says so where something
    was estimated and claims no estimator for a computed scan; it renders."""
    data = synthetic_result()
    data.update(schema_version=9, scan={**data["scan"], "method": method})
    data["scan"].pop("estimator", None)
    r = load_result(data)
    assert r.schema_version == SCHEMA_VERSION and r.scan.estimator == estimator
    assert 'id="reproducibility"' in render_report(data, tmp_path)["report.html"].read_text()


def test_a_schema_10_screened_result_says_it_had_one_margin_for_every_head(tmp_path):
    """Before schema 11 the screened scan's margin was the same for every head: upgrading names that
    error model, with the error per unit of scale the one measured error; it renders."""
    data = synthetic_result()
    old = {"screen": "attribution", "max_abs_error": 0.25, "error_margin": 0.75, "safety": 3.0, "n_exact": 12}
    data.update(schema_version=10, scan={**data["scan"], "method": "screened", "approximate": True,
                                         "estimator": "gradient", "agreement": {"teacher": old, "student": dict(old)}})
    r = load_result(data)
    assert r.schema_version == SCHEMA_VERSION
    for model in ("teacher", "student"):
        ag = r.scan.agreement[model]
        assert (ag["error_model"], ag["error_per_scale"], ag["error_margin"]) == ("uniform", 0.25, 0.75)
    assert 'id="reproducibility"' in render_report(data, tmp_path)["report.html"].read_text()


def test_a_schema_8_result_with_circuits_reads_its_circuit_as_the_one_search(tmp_path):
    """Before schema 9 a model's circuit was always the one search on all prompts: upgrading keeps it
    as the circuit, records it as ``search_components`` and claims no inclusion rule; it renders."""
    data = synthetic_result()
    one = {"threshold": 20.0, "components": ["L0H1", "L1MLP"], "n_heads": 1, "n_mlps": 1, "kept_pct": 91.0,
           "removed_pct": 12.0, "trace_length": 10, "n_passes": 2, "n_evaluations": 9, "inclusion": None}
    data.update(schema_version=8, circuits={"threshold": 20.0, "ablation": "mean",
                                            "method": {"teacher": "exact", "student": "exact"},
                                            "teacher": one, "student": dict(one), "sweep": {}, "diff": None,
                                            "search_s": {"teacher": 0.1, "student": 0.1}})
    r = load_result(data)
    assert r.schema_version == SCHEMA_VERSION
    for m in (r.circuits.teacher, r.circuits.student):
        assert m.search_components == ["L0H1", "L1MLP"] == m.components and m.min_inclusion is None
    assert 'id="circuits"' in render_report(data, tmp_path)["report.html"].read_text()


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a JSON result file"),
    (json.dumps({"schema_version": 99}), "schema_version 99 is not supported"),
    (json.dumps({"schema_version": 1, "models": {}}), "not a valid result file"),
])
def test_bad_result_files_raise_a_specific_error(tmp_path, content, message):
    path = tmp_path / "result.json"
    path.write_text(content)
    with pytest.raises(ResultFileError, match=message) as info:
        load_result(path)
    assert info.value.code == "invalid_result"


def test_cli_report_renders_a_result_file(tmp_path, cli):
    (tmp_path / "result.json").write_text(json.dumps(synthetic_result()))
    proc = cli("report", "result.json", "--out", "out/page.html", cwd=tmp_path)
    assert proc.returncode == 2 and "does not exist" in proc.stderr  # out/ is missing: one line, no traceback
    assert "Traceback" not in proc.stderr
    (tmp_path / "out").mkdir()
    proc = cli("report", "result.json", "--out", "out/page.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out/page.html").read_text().startswith("<!doctype html>")
    assert (tmp_path / "out/plots/influence.svg").exists() and (tmp_path / "out/plots/drops.png").exists()
    proc = cli("report", "missing.json", "--out", "x.html", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no such result file")


def test_cli_compare_with_report_flag(tmp_path, cli):
    zoo_ioi_result()  # fails clearly when the zoo is not trained
    proc = cli("compare", "--teacher", ZOO_SPEC["teacher"], "--student", ZOO_SPEC["student"], "--task", "ioi",
                "--prompts", "6", "--device", "cpu", "--out", "result.json", "--report", "report.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    html = (tmp_path / "report.html").read_text()
    assert f"{result['alignment']['score']:.3f}" in html
    assert (tmp_path / "plots/similarity.png").exists()


def test_masked_pair_with_end_row_attention_views_renders(tmp_path):
    """Word-aligned pairs may carry only the end query's attention row; masked LMs attend both ways."""
    r = synthetic_result()
    for side in ("teacher", "student"):
        r["models"][side]["family"] = "masked"
    for v in r["attention"]:
        v["teacher_pattern"], v["student_pattern"] = v["teacher_pattern"][-1:], v["student_pattern"][-1:]
    r = load_result(r)
    with matplotlib.rc_context(plots.RC):
        fig = plots.attention_figure(r, r.attention[0])
    w, h = _png_checks(_draw(fig, tmp_path / "a.png"))
    assert h < w / 2  # one row per model, not a square


def test_rerender_into_the_same_folder_leaves_no_stale_attention_views(tmp_path):
    r = synthetic_result()
    assert "plots/attention_3.png" in render_report(r, tmp_path)
    r["attention"] = r["attention"][:1]
    files = render_report(r, tmp_path)
    assert sorted(p.name for p in (tmp_path / "plots").glob("attention_*")) == ["attention_1.png", "attention_1.svg"]
    assert set(files) == {f"plots/{p.name}" for p in (tmp_path / "plots").iterdir()} | {"report.html"}


def test_the_page_reads_as_prose_not_python_and_links_back_to_its_job():
    """#27: no raw Python/JSON values, timings in stage order with the total last, a watch job's
    checkpoint path shortened in the title, and a link back to the job and its watch."""
    from circuitdiff.report.html import render_html as render_page

    r = synthetic_result(student_id="/srv/data/models/runs/42/step-1000")
    r["timings"] = {"load": 1.2, "total": 5.3, "task": 0.1, "influence:teacher": 3.4, "similarity": 0.5}
    r["scan"]["precision"] = {"dtype": "bfloat16", "max_abs_error": 0.00123456, "within_tolerance": True}
    r["alignment"].update(chance={"method": "permuted", "n": 1000, "mean": 0.819, "ci95": [0.79, 0.84], "p_value": 0.01},
                          above_chance=True)
    page = render_page(r, job={"id": "j0123", "watch_id": "w0456", "checkpoint": "step-1000",
                               "base_url": "https://cd.example"})
    title = page.split("<title>")[1].split("</title>")[0]
    h1 = page.split("<h1>")[1].split("</h1>")[0]
    assert "…/42/step-1000" in title and "…/42/step-1000" in h1 and "/srv/data" not in title + h1
    assert "/srv/data/models/runs/42/step-1000" in page.split('id="repro-models"')[1]  # kept where it is reproducible
    scan = page.split('id="repro-scan"')[1].split("</table>")[0]
    assert "False" not in scan and "True" not in scan and "{" not in scan
    assert "exact ablations" in scan and "max abs error: 0.001235" in scan and "within tolerance: yes" in scan
    timings = re.findall(r"<tr><th>(?:<b>)?([^<]+)(?:</b>)?</th>", page.split('id="repro-timings"')[1].split("</table>")[0])
    assert timings == ["load", "task", "influence:teacher", "similarity", "total"]
    job = page.split('id="job"')[1].split("</div>")[0]
    assert 'href="https://cd.example/v1/comparisons/j0123"' in job
    assert 'href="https://cd.example/v1/watches/w0456/report"' in job and "step-1000" in job
    card = page.split('id="alignment-score"')[1].split("</div>\n  <div")[0]
    assert "null" not in card and "by chance the score is 0.819 on average and up to 0.840 (95%)" in card
    assert 'id="job"' not in render_page(r)  # rendered without a job (the CLI): no links to nowhere

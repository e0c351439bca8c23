"""The report in a real browser: Debian's headless Chromium driven over the DevTools protocol.

Opens the report of a real zoo comparison from disk and checks what a reader gets: it loads with
no console errors, makes no network requests, shows the alignment score and both model names,
stays readable with scripts off, sorts its tables with scripts on, and runs nothing a prompt smuggles in.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from matplotlib import image as mpimg

from circuitdiff.report import render_report
from tests.report_browser import Browser, chromium_path
from tests.report_synthetic import synthetic_result
from tests.report_zoo import zoo_ioi_result

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        return chromium_path()
    except RuntimeError as e:
        pytest.fail(str(e))  # a missing browser is a broken setup, never a silent skip


@pytest.fixture(scope="module")
def zoo_page(tmp_path_factory, chromium) -> tuple[dict, Path]:
    result = zoo_ioi_result()
    out = tmp_path_factory.mktemp("browser-report")
    files = render_report(result, out)
    return result, files["report.html"]


def _offsite(requests: list[str], page_url: str) -> list[str]:
    """Requests other than the page itself and its inline data: images."""
    return [u for u in requests if u != page_url and not u.startswith("data:")]


def test_zoo_report_in_headless_chromium(zoo_page, tmp_path):
    result, html = zoo_page
    url = html.as_uri()
    with Browser() as b:
        b.open(url)
        shot = tmp_path / "report.png"
        b.screenshot(shot)
        full = tmp_path / "report-full.png"
        b.screenshot(full, full_page=True)
        assert b.console_errors() == []
        assert _offsite(b.requests(), url) == []
        assert b.requests()[0] == url
        text = b.eval("document.body.innerText")
        score = f"{result['alignment']['score']:.3f}"
        assert score in text
        for side in ("teacher", "student"):
            assert result["models"][side]["id"] in text
        # Visible above the fold: the header with both names and the score card, laid out and on screen.
        boxes = b.eval("""['teacher-id', 'student-id', 'alignment-score'].map(id => {
            const r = document.getElementById(id).getBoundingClientRect();
            return [r.top, r.bottom, r.width, r.height, getComputedStyle(document.getElementById(id)).visibility]; })""")
        for top, bottom, w, h, vis in boxes:
            assert w > 0 and h > 0 and vis == "visible" and 0 <= top and bottom <= 900
        assert b.eval("document.getElementById('alignment-score').innerText").count(score) == 1
        # Every figure decoded to a real image.
        sizes = b.eval("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        assert sizes and all(ok and w > 300 and h > 200 for ok, w, h in sizes)
    img = mpimg.imread(shot)  # [h, w, 4]
    assert img.shape[:2] == (900, 1280)
    assert (img[..., :3].min(axis=2) < 0.9).mean() > 0.05  # not a blank page
    assert mpimg.imread(full).shape[0] > 3 * img.shape[0]  # the whole report, not just the header


def test_zoo_report_readable_without_scripts_and_sortable_with_them(zoo_page):
    result, html = zoo_page
    with Browser() as b:
        b.open(html.as_uri(), scripts=False)
        # Runtime.evaluate still runs with page scripts disabled; the page's own script did not.
        assert b.eval("document.documentElement.classList.contains('js')") is False
        rows = b.eval("document.querySelectorAll('#components-teacher tbody tr').length")
        assert rows == len(result["influence"]["teacher"])
        assert f"{result['alignment']['score']:.3f}" in b.eval("document.body.innerText")
    with Browser() as b:
        b.open(html.as_uri())
        assert b.eval("document.documentElement.classList.contains('js')") is True
        col = "Array.from(document.querySelectorAll('#components-student tbody tr')).map(r => r.cells[4].dataset.v)"
        b.eval("document.querySelector('#components-student thead th:nth-child(5) button').click()")
        asc = [float(v) for v in b.eval(col)]
        b.eval("document.querySelector('#components-student thead th:nth-child(5) button').click()")
        desc = [float(v) for v in b.eval(col)]
        assert asc == sorted(asc) and desc == sorted(asc, reverse=True) and len(asc) == len(result["influence"]["student"])
        assert b.eval("document.querySelector('#components-student thead th:nth-child(5)').getAttribute('aria-sort')") == "descending"
        assert b.console_errors() == []


def test_prompt_injection_does_not_run_in_the_browser(tmp_path, chromium):
    evil = ('<script>document.title="pwned";window.__pwned=1</script><img src="https://example.invalid/x.png" '
            'onerror="window.__pwned=2"><a href="javascript:alert(1)">x</a>')
    r = synthetic_result(prompt="When Mary and John went " + evil)
    r["attention"][0]["tokens"][4] = evil
    r["warnings"] = [evil]
    files = render_report(r, tmp_path)
    url = files["report.html"].as_uri()
    with Browser() as b:
        b.open(url)
        assert b.eval("window.__pwned === undefined") is True
        assert not b.eval("document.title").startswith("pwned")
        assert b.dialogs() == []
        assert _offsite(b.requests(), url) == []
        assert "https://example.invalid" in b.eval("document.body.innerText")  # shown as text
        assert re.search(r"<script>document\.title", b.eval("document.body.innerText"))
        assert b.console_errors() == []


def test_zoo_circuits_section_in_the_browser(zoo_page):
    """Both circuits on the layer/head grid, the diff's counts, the sweep table and the transfer
    figure, readable with scripts off (the grids are tables whose cells carry their state as text)."""
    result, html = zoo_page
    c = result["circuits"]
    assert c is not None and c["diff"] is not None
    with Browser() as b:
        b.open(html.as_uri(), scripts=False)
        for side in ("teacher", "student"):
            m = result["models"][side]
            cells = b.eval(f"Array.from(document.querySelectorAll('#circuit-grid-{side} td.cc'))"
                           ".map(td => [td.dataset.component, td.className])")
            assert len(cells) == m["n_layers"] * (m["n_heads"] + 1)
            marked = sorted(cid for cid, cls in cells
                            if any(s in cls.split() for s in ("kept", "discarded", "new", "unstable")))
            assert marked == sorted(c[side]["components"])
        discarded = b.eval("Array.from(document.querySelectorAll('#circuit-grid-teacher td.discarded'))"
                           ".map(td => td.dataset.component)")
        assert sorted(discarded) == sorted(c["diff"]["discarded"])
        text = b.eval("document.getElementById('circuits').innerText")
        assert f"{c['diff']['jaccard']:.2f}" in text and f"{c['diff']['transfer']['kept_pct']:.1f}%" in text
        assert b.eval("document.querySelectorAll('#circuit-sweep tbody tr').length") == 6
        box = b.eval("(() => { const r = document.querySelector('#fig-circuit_transfer img'); "
                     "return [r.complete, r.naturalWidth, r.naturalHeight]; })()")
        assert box[0] and box[1] > 300
        assert b.console_errors() == []

"""The report's stylesheet and script, inline in every report (no network, no files beside it).

The Content-Security-Policy of the page allows exactly these two blocks (by hash) and ``data:``
images; anything a crafted prompt might smuggle into the page could neither run nor fetch.
"""

from __future__ import annotations

import base64
import hashlib

CSS = """
:root { --teacher: #3b6ea5; --student: #d9822b; --ok: #2e7d4f; --bad: #c0392b; --muted: #5f6368;
        --line: #dadce0; --bg-soft: #f6f7f9; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #202124;
       margin: 0; background: #fff; }
header { padding: 1.4rem 2rem 1rem; border-bottom: 1px solid var(--line); background: var(--bg-soft); }
header h1 { margin: 0 0 .3rem; font-size: 1.45rem; font-weight: 600; }
header .sub { color: var(--muted); }
nav { padding: .5rem 2rem; border-bottom: 1px solid var(--line); font-size: .9rem; position: sticky; top: 0;
      background: #fff; z-index: 2; }
nav a { margin-right: 1.1rem; color: #1a57a6; text-decoration: none; }
nav a:hover { text-decoration: underline; }
main { max-width: 1180px; padding: 0 2rem 3rem; }
section { margin-top: 2.2rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; }
h3 { font-size: 1rem; margin-bottom: .4rem; }
.teacher { color: var(--teacher); font-weight: 600; }
.student { color: var(--student); font-weight: 600; }
.cards { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1rem 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: .8rem 1.1rem; min-width: 11rem; background: #fff; }
.card .label { font-size: .78rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.card .value { font-size: 1.9rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .detail { font-size: .85rem; color: var(--muted); }
.card.score .value { font-size: 2.6rem; }
.card.score.ok { border-left: 4px solid var(--ok); }
.card.score.bad { border-left: 4px solid var(--bad); }
.card .verdict-name { text-transform: uppercase; letter-spacing: .03em; font-size: .85rem; margin: .15rem 0 .2rem; }
.card .verdict-name small { text-transform: none; letter-spacing: 0; color: var(--muted, #666); }
.verdict { font-size: 1.02rem; max-width: 62rem; }
.verdict p:first-child { font-weight: 500; }
.flag { border-left: 4px solid var(--bad); background: #fdf3f2; padding: .5rem .9rem; }
.warnings li { color: #8a4b00; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .88rem; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: .28rem .7rem; text-align: left; vertical-align: top; }
th { background: var(--bg-soft); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; }
table.sortable th button { all: inherit; cursor: pointer; padding: 0; border: 0; background: none; }
table.sortable th button::after { content: " \\2195"; color: #9aa0a6; font-size: .8em; }
table.sortable th[aria-sort=ascending] button::after { content: " \\25B2"; color: #202124; }
table.sortable th[aria-sort=descending] button::after { content: " \\25BC"; color: #202124; }
tr.below td { color: var(--bad); }
.badge { display: inline-block; border-radius: 4px; padding: 0 .35rem; font-size: .78rem; white-space: nowrap; }
.badge.ok { background: #e6f4ea; color: var(--ok); }
.badge.bad { background: #fce8e6; color: var(--bad); }
.badge.none { background: #f1f3f4; color: var(--muted); }
figure { margin: 1rem 0 1.6rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: .88rem; max-width: 62rem; margin-top: .3rem; }
pre { background: var(--bg-soft); border: 1px solid var(--line); border-radius: 6px; padding: .8rem; overflow-x: auto;
      font-size: .8rem; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .85em; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; }
table.circuit-grid td.cc { text-align: center; width: 2rem; padding: .15rem; border: 1px solid var(--line); }
.cc.kept { background: #e6f4ea; color: var(--ok); }
.cc.discarded { background: #fce8e6; color: var(--bad); }
.cc.new { background: #fff1e0; color: var(--student); }
.cc.mapped { color: var(--muted); }
.cc.unstable { background: #f1f3f4; color: var(--muted); font-style: italic; }
.legend .cc { padding: 0 .3rem; border-radius: 3px; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
b.ok { color: var(--ok); } b.bad { color: var(--bad); }
details { margin: .5rem 0 1rem; }
table.components tr.fold { display: none; }
input.unfold { position: absolute; opacity: 0; }
label.unfold { display: block; cursor: pointer; color: #1a57a6; margin: .3rem 0; font-size: .9rem; }
label.unfold::before { content: "\\25B8  "; }
input.unfold:checked + label.unfold::before { content: "\\25BE  "; }
input.unfold:checked + label + table tr.fold, table.components.sorted tr.fold { display: table-row; }
input.unfold:focus-visible + label { outline: 2px solid #1a57a6; }
summary { cursor: pointer; color: #1a57a6; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(28rem, 1fr)); gap: 0 2rem; }
footer { color: var(--muted); font-size: .8rem; padding: 1rem 2rem 2rem; border-top: 1px solid var(--line); }
@media print { nav { display: none; } section { break-inside: avoid-page; } }
"""

# Progressive enhancement only: every table is complete HTML without it. Sorts by the cell's
# data-v (numbers) or its text; clicking again reverses.
JS = """
(function () {
  'use strict';
  function key(cell) {
    var v = cell.getAttribute('data-v');
    if (v !== null && v !== '' && !isNaN(Number(v))) { return {n: Number(v)}; }
    return {s: cell.textContent.trim().toLowerCase()};
  }
  function compare(a, b) {
    if (a.n !== undefined && b.n !== undefined) { return a.n - b.n; }
    if (a.n !== undefined) { return -1; }
    if (b.n !== undefined) { return 1; }
    return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;
  }
  function sortBy(table, col, th) {
    var body = table.tBodies[0];
    var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) { return dir * compare(key(r1.cells[col]), key(r2.cells[col])); });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    table.classList.add('sorted');  // sorted by a column: every row, not only the most influential
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      var b = document.createElement('button');
      b.type = 'button';
      b.title = 'sort by this column';
      while (th.firstChild) { b.appendChild(th.firstChild); }
      th.appendChild(b);
      b.addEventListener('click', function () { sortBy(table, col, th); });
    });
  });
  document.documentElement.classList.add('js');
})();
"""


def csp_hash(source: str) -> str:
    """The CSP source expression that allows one inline block with exactly this text."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def content_security_policy() -> str:
    return (
        f"default-src 'none'; img-src data:; style-src {csp_hash(CSS)}; script-src {csp_hash(JS)}; "
        "base-uri 'none'; form-action 'none'"
    )

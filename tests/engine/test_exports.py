"""A result's tables as CSV (circuitdiff.report.exports) and its summary as a picture, on a real zoo
comparison: every number in a file is the result's, and every header names its unit."""

from __future__ import annotations

import csv
import io

import pytest

from circuitdiff.report.exports import csv_files
from tests.report_zoo import zoo_ioi_result


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_influence_matches_and_similarity_as_csv_with_units():
    r = zoo_ioi_result()
    files = csv_files(r)
    assert sorted(files) == ["influence.csv", "matches.csv", "similarity_heads.csv", "similarity_mlps.csv"]

    infl = _rows(files["influence.csv"])
    assert "influence (logits)" in infl[0] and "share of total influence (0-1)" in infl[0]
    assert len(infl) == len(r["influence"]["teacher"]) + len(r["influence"]["student"])
    for row in infl:
        c = r["influence"][row["model"]][row["component"]]
        assert float(row["influence (logits)"]) == c["influence"]  # full precision, not rounded for display
        assert float(row["signed change when ablated (logits)"]) == c["delta"]
    for role in ("teacher", "student"):
        assert sum(float(x["share of total influence (0-1)"]) for x in infl if x["model"] == role) == pytest.approx(1.0)

    matches = _rows(files["matches.csv"])
    assert len(matches) == len(r["matches"])
    sim_col = next(k for k in matches[0] if k.startswith("similarity ("))
    assert r["similarity"]["head_method"] in sim_col and r["similarity"]["mlp_method"] in sim_col
    for row, m in zip(matches, r["matches"]):
        assert (row["student"], row["teacher"]) == (m["student"], m["teacher"])
        assert float(row[sim_col]) == m["similarity"] and row["matched (at or above the threshold)"] == str(m["matched"])

    heads = list(csv.reader(io.StringIO(files["similarity_heads.csv"])))
    h = r["similarity"]["heads"]
    assert heads[0][0].startswith("student \\ teacher: " + r["similarity"]["head_method"])
    assert heads[0][1:] == h["cols"] and [x[0] for x in heads[1:]] == h["rows"]
    assert [[float(v) for v in x[1:]] for x in heads[1:]] == h["values"]


def test_a_metric_with_other_units_names_them():
    r = zoo_ioi_result()
    r["metric"]["units"] = "nats"
    assert "influence (nats)" in files_header(csv_files(r)["influence.csv"])


def files_header(text: str) -> list[str]:
    return next(csv.reader(io.StringIO(text)))


def test_the_summary_picture_for_a_slide(tmp_path):
    from PIL import Image

    from circuitdiff.report import render_report

    files = render_report(zoo_ioi_result(), tmp_path)
    with Image.open(files["plots/summary.png"]) as im:
        w, h = im.size
        assert abs(w / h - 16 / 9) < 0.01 and w >= 1280  # a 16:9 slide, sharp on a projector
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50  # text and marks drawn, not a blank canvas
    assert files["plots/summary.svg"].stat().st_size > 5_000

"""Job files: written into a temp directory, published by one rename, listed with sha256.

The manifest (name, size, sha256, media type) goes into the job record, so the API can answer
``ETag`` and ``Content-Length`` without re-reading files.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import shutil
from pathlib import Path

from circuitdiff.fingerprint import file_sha256
from circuitdiff.report import render_report
from circuitdiff.report.exports import csv_files
from circuitdiff.result import ComparisonResult

log = logging.getLogger("circuitdiff.worker")


def write(result: ComparisonResult, out_dir: Path, job: dict | None = None) -> list[str]:
    """result.json, its tables as CSV beside it (circuitdiff.report.exports: influence.csv,
    matches.csv, similarity_heads.csv, similarity_mlps.csv), then the HTML report and its plots
    (plots/summary.png among them: the summary as one picture for a slide).

    Returns the job's warnings: the result's own (so a job's status says what its result says), then
    the files' (a report that fails to render must not lose a finished comparison).
    """
    data = result.model_dump(mode="json")
    warnings = list(data.get("warnings") or [])
    (out_dir / "result.json").write_text(json.dumps(data, indent=2, sort_keys=True))
    for name, text in csv_files(data).items():
        (out_dir / name).write_text(text, encoding="utf-8")
    try:
        render_report(data, out_dir, job=job)  # job: the page links back to it (and its watch)
    except Exception as e:  # noqa: BLE001 - recorded as a warning on the job, traceback in the log
        log.exception("report rendering failed")
        warnings.append(f"report not rendered: {type(e).__name__}: {e}")
    return warnings


def manifest(root: Path) -> list[dict]:
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            name = p.relative_to(root).as_posix()
            media = mimetypes.guess_type(name)[0] or "application/octet-stream"
            out.append({"name": name, "size": p.stat().st_size, "sha256": file_sha256(p), "media_type": media})
    return out


def publish(tmp_dir: Path, final_dir: Path) -> list[dict]:
    """Rename the finished temp directory into place; a stale one from a dead attempt is replaced."""
    files = manifest(tmp_dir)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(tmp_dir, final_dir)
    return files

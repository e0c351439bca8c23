"""What a watch's source holds now: checkpoint directories (settled or still being written) or hub
revisions, each with the fingerprint that identifies its weights.

A directory checkpoint is a subdirectory of the watch's directory whose name matches the pattern
and which holds ``config.json`` and ``.safetensors`` weights (the same test as a local model path).
It counts as settled once nothing in it (the directory itself included) has changed for
``settle_seconds`` (:func:`last_change`): a checkpoint still being written is reported as ``settling`` and never hashed
or compared. Symlinks are resolved, and a checkpoint whose real path leaves the allowed model
roots is skipped, as a local model path would be refused.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from circuitdiff.fingerprint import WEIGHT_SUFFIXES

from jobs.content import weights_fingerprint, weights_stamp


@dataclass(frozen=True)
class Checkpoint:
    name: str
    state: str  # "settled" | "settling" | "incomplete" | "outside_roots"
    path: str | None = None  # a directory checkpoint's real path
    revision: str | None = None  # a hub checkpoint's commit sha
    fingerprint: str | None = None  # set when settled
    order: float = 0.0  # hub: revision date (directories sort by name)
    settles_at: float | None = None


def natural_key(name: str) -> tuple:
    """``step-2`` < ``step-10``: digit runs compare as numbers."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t)


def _inside(real: Path, roots: list[Path]) -> bool:
    return any(real == r.resolve() or real.is_relative_to(r.resolve()) for r in roots)


def last_change(d: Path) -> float:
    """The latest change to anything in ``d``: max of mtime and ctime over the directory and every
    entry below it. ctime counts because copies that keep timestamps (``cp -a``, ``rsync -t``,
    ``shutil.copytree``) set old mtimes, while every write, rename or chmod moves the ctime."""
    st = d.stat()
    newest = max(st.st_mtime, st.st_ctime)
    for base, dirs, files in os.walk(d):
        for n in dirs + files:
            try:
                st = os.lstat(os.path.join(base, n))
            except FileNotFoundError:  # removed while we looked: it is changing, so not settled
                return time.time()
            newest = max(newest, st.st_mtime, st.st_ctime)
    return newest


def scan_directory(directory: Path, pattern: str, settle_seconds: float, roots: list[Path],
                   now: float | None = None, known: dict[str, dict] | None = None) -> list[Checkpoint]:
    """``known``: checkpoint name -> ``{"stamp", "fingerprint"}`` from earlier scans; a checkpoint whose
    weight files kept their names, sizes and mtimes is not hashed again (updated in place)."""
    now = time.time() if now is None else now
    known = {} if known is None else known
    out = []
    for c in sorted((p for p in directory.iterdir() if p.is_dir() and fnmatch.fnmatchcase(p.name, pattern)),
                    key=lambda p: natural_key(p.name)):
        real = c.resolve()
        if not _inside(real, roots):
            out.append(Checkpoint(c.name, "outside_roots"))
            continue
        newest = last_change(real)
        if now - newest < settle_seconds:
            out.append(Checkpoint(c.name, "settling", str(real), settles_at=newest + settle_seconds))
            continue
        if not (real / "config.json").is_file() or not any(p.name.endswith(WEIGHT_SUFFIXES) for p in real.iterdir()):
            out.append(Checkpoint(c.name, "incomplete", str(real)))
            continue
        stamp = json.dumps(weights_stamp(real))
        if known.get(c.name, {}).get("stamp") != stamp:
            known[c.name] = {"stamp": stamp, "fingerprint": "sha256:" + weights_fingerprint(real)}
        out.append(Checkpoint(c.name, "settled", str(real), fingerprint=known[c.name]["fingerprint"]))
    return out


def scan_hub(repo: str, kind: str) -> list[Checkpoint]:
    """Branches, tags or commits of a hub model repo, oldest first; raises when the hub is unreachable."""
    from huggingface_hub import HfApi

    api = HfApi()
    if kind == "commits":
        commits = api.list_repo_commits(repo)
        return [Checkpoint(c.commit_id[:12], "settled", revision=c.commit_id, fingerprint=f"hub:{repo}@{c.commit_id}",
                           order=c.created_at.timestamp()) for c in reversed(commits)]
    refs = api.list_repo_refs(repo)
    items = refs.branches if kind == "branches" else refs.tags
    return [Checkpoint(r.name, "settled", revision=r.target_commit, fingerprint=f"hub:{repo}@{r.target_commit}")
            for r in sorted(items, key=lambda r: natural_key(r.name))]

"""What a watch's source holds now: checkpoint directories (settled or still being written) or hub
revisions, each with the fingerprint that identifies its weights.

A directory checkpoint is a subdirectory of the watch's directory whose name matches the pattern.
It counts as settled once nothing in it (the directory itself included) has changed for
``settle_seconds`` (:func:`last_change`): a checkpoint still being written is reported as ``settling``
and never hashed or compared. A settled one that holds ``config.json`` and ``.safetensors`` weights
(the same test as a local model path) is compared; any other settled one is ``refused``, with the
reason and the fix (pickled weights such as ``pytorch_model.bin`` are never loaded; a config
without weights; a real path outside the allowed model roots), so that every listed directory ends
as a history entry and none silently disappears. Symlinks are resolved.
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
    state: str  # "settled" | "settling" | "refused"
    path: str | None = None  # a directory checkpoint's real path
    revision: str | None = None  # a hub checkpoint's commit sha
    fingerprint: str | None = None  # set when settled or refused ("refused:<sha256 of what was there>")
    order: float = 0.0  # hub: revision date (directories sort by name)
    settles_at: float | None = None
    reason: str | None = None  # refused: why, and what to do about it
    fix: str | None = None


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
SAVE_FIX = "save it with model.save_pretrained(path, safe_serialization=True)"


def refusal(real: Path, roots: list[Path]) -> tuple[str, str] | None:
    """Why a settled checkpoint directory cannot be compared, and the fix; None when it can."""
    if not _inside(real, roots):
        return ("it links to a directory outside the allowed model roots",
                "move it under a model root (CIRCUITDIFF_MODEL_ROOTS) rather than linking to it")
    names = sorted(p.name for p in real.iterdir() if p.is_file())
    weights = [n for n in names if n.endswith(WEIGHT_SUFFIXES)]
    pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
    if not weights and pickles:
        return (f"{', '.join(pickles)} found but no .safetensors weights: circuitdiff never unpickles weights",
                "re-save the checkpoint with safetensors: " + SAVE_FIX)
    if "config.json" not in names and not weights:
        return ("neither config.json nor .safetensors weights found" + (f" (it holds {', '.join(names[:5])})" if names else
                " (the directory is empty)"), SAVE_FIX)
    if "config.json" not in names:
        return "no config.json beside the weights", "save the config too: " + SAVE_FIX
    if not weights:
        return "config.json only, no .safetensors weights", "save the weights too: " + SAVE_FIX
    return None


def refused_fingerprint(real: Path) -> str:
    """What a refused directory held (file names and sizes): the same content refused once; a
    re-saved checkpoint is a new history entry."""
    import hashlib

    try:
        items = sorted((p.name, p.stat().st_size) for p in real.iterdir() if p.is_file())
    except OSError:
        items = []
    return "refused:" + hashlib.sha256(json.dumps([str(real), items]).encode()).hexdigest()[:16]


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
        if _inside(real, roots):
            newest = last_change(real)
            if now - newest < settle_seconds:
                out.append(Checkpoint(c.name, "settling", str(real), settles_at=newest + settle_seconds))
                continue
        why = refusal(real, roots)
        if why:
            out.append(Checkpoint(c.name, "refused", str(real), fingerprint=refused_fingerprint(real),
                                  reason=why[0], fix=why[1]))
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

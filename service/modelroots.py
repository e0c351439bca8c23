"""Local model paths: only directories inside the allowed roots, checked without loading weights.

A path is refused if any segment is ``..`` (before resolving, so the intent is visible in the
error), and after resolving symlinks it must still lie inside a root: a symlink under a root that
points elsewhere is refused too. ``./name`` is looked up under each root in order.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from circuitdiff.fingerprint import WEIGHT_SUFFIXES

from .problems import Problem


def _roots_fix(roots: list[Path]) -> str:
    return "put the checkpoint under an allowed model root (" + ", ".join(str(r) for r in roots) + ") and name it by its path"


def _inside(real: Path, roots: list[Path]) -> bool:
    return any(real == r.resolve() or real.is_relative_to(r.resolve()) for r in roots)


def resolve_under_roots(raw: str, roots: list[Path], field: str, *, want_dir: bool) -> Path:
    """The real path of ``raw`` if it exists inside a root; else a 422 problem naming ``field``."""
    if ".." in PurePosixPath(raw).parts:
        raise Problem.field("path_traversal", field, "'..' path segments are not allowed", _roots_fix(roots))
    if raw.startswith("~"):
        raise Problem.field("path_outside_roots", field, "home-relative paths are not allowed", _roots_fix(roots))
    candidates = [Path(raw)] if raw.startswith("/") else [r / raw for r in roots]
    found_outside = False
    for c in candidates:
        real = c.resolve()
        if not _inside(real, roots):
            found_outside = True
            continue
        if real.exists() and (real.is_dir() if want_dir else real.is_file()):
            return real
    if found_outside:
        raise Problem.field("path_outside_roots", field, f"{raw!r} is outside the allowed roots", _roots_fix(roots))
    kind = "directory" if want_dir else "file"
    raise Problem.field("path_not_found", field, f"no such {kind}: {raw!r}", _roots_fix(roots))


def check_checkpoint(path: Path, field: str) -> None:
    """A checkpoint directory in transformers format with safetensors weights (never pickles)."""
    if not (path / "config.json").is_file():
        raise Problem.field("not_a_checkpoint", field, f"{path} has no config.json")
    if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in path.iterdir()):
        raise Problem.field("unsupported_weights", field,
                            f"{path} has no .safetensors weights (pickled weights are never loaded)")


def list_local_models(roots: list[Path], max_depth: int = 2) -> list[dict]:
    """Checkpoint directories (config.json inside) under the roots, up to ``max_depth`` levels."""
    out = []
    for root in roots:
        if not root.is_dir():
            continue
        frontier = [root]
        for _ in range(max_depth):
            nxt = []
            for d in frontier:
                for c in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
                    if (c / "config.json").is_file():
                        real = c.resolve()
                        if _inside(real, roots):
                            has_weights = any(p.name.endswith(WEIGHT_SUFFIXES) for p in real.iterdir())
                            out.append({"id": str(real), "kind": "local", "description": "", "available": has_weights})
                    else:
                        nxt.append(c)
            frontier = nxt
    return out

"""Imports run one way (docs/design.md "Layout"): read from the source, and checked in a fresh interpreter.

The static check parses every module's imports (``import x``, ``from x import y``, relative ones
resolved) and fails on an arrow that points the wrong way; the runtime checks import modules in a
new process and look at ``sys.modules``: the torch-free engine leaves, and every module of the
service, the jobs core, the watches, the launcher and the worker, each without the package it must never reach.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    return out


def modules_under(package: str) -> list[Path]:
    return sorted((REPO / package.replace(".", "/")).rglob("*.py"))


def _violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in modules_under(package):
        for name in sorted(imports_of(path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    return bad


TORCH = ("torch", "transformers", "transformer_lens", "safetensors")
# engine modules that load torch: the service and the jobs package use only the torch-free leaves
ENGINE_WITH_TORCH = ("circuitdiff.models", "circuitdiff.scan", "circuitdiff.pipeline", "circuitdiff.cache",
                     "circuitdiff.stages", "circuitdiff.tasks.dataset", "circuitdiff.cli")

RULES = [
    # (package, what it must never import, why)
    ("circuitdiff.models", ("circuitdiff.analysis", "circuitdiff.scan", "circuitdiff.pipeline", "circuitdiff.stages"),
     "models are the bottom layer: analyses use models, never the reverse"),
    ("circuitdiff.analysis", TORCH + ("circuitdiff.models", "circuitdiff.scan", "circuitdiff.pipeline"),
     "statistics are numpy-only, so the report and the service may use them"),
    ("circuitdiff.vocabulary", TORCH + ("pydantic",), "the vocabulary is a stdlib-only leaf"),
    ("circuitdiff.catalogue", TORCH, "the catalogue is torch-free"),
    ("circuitdiff.spec", TORCH, "the spec is torch-free"),
    ("circuitdiff.metrics", TORCH, "the metric records are torch-free: the service checks a metric with them"),
    ("circuitdiff.architectures", TORCH, "the model-type records are torch-free: a family is known before loading"),
    ("circuitdiff.sizing", TORCH, "model sizes from a config are torch-free: the API estimates memory before loading"),
    ("circuitdiff.result", TORCH, "the result schema is torch-free"),
    ("circuitdiff.errors", TORCH, "errors are torch-free"),
    ("circuitdiff.tasks.custom", TORCH, "dataset validation is shared with the service"),
    ("circuitdiff.client.wire", TORCH + ENGINE_WITH_TORCH + ("httpx",),
     "the API's bodies and the job statuses are shared by the service, the jobs core and the client: pydantic only"),
    ("circuitdiff.client", TORCH + ENGINE_WITH_TORCH, "the HTTP client runs where torch is not installed"),
    ("circuitdiff.report", TORCH + ("circuitdiff.models", "circuitdiff.scan", "circuitdiff.pipeline"),
     "a stored result re-renders anywhere matplotlib is installed"),
    ("circuitdiff", ("fastapi", "celery", "jobs", "watches", "launcher", "service", "worker"),
     "the engine knows nothing of HTTP or Celery"),
    ("jobs", ("service", "worker", "watches", "launcher", "fastapi") + TORCH + ENGINE_WITH_TORCH,
     "the jobs package is the core the API, the workers, the watches and the launcher share: it depends on "
     "none of them, and never on torch"),
    ("watches", ("service", "worker", "launcher", "fastapi") + TORCH + ENGINE_WITH_TORCH,
     "the watch feature is used by the API and the watch worker: it depends on neither, and never on torch"),
    ("launcher", ("service", "worker", "watches", "fastapi") + TORCH + ENGINE_WITH_TORCH,
     "make run's launcher starts the API and the workers as processes (jobs.commands), never imports them"),
    ("service", ("worker", "launcher") + TORCH + ENGINE_WITH_TORCH,
     "the API sends work by task name (jobs.queue) and never loads torch"),
    ("worker", ("service", "launcher", "fastapi"), "the worker shares only jobs and watches with the API"),
]


@pytest.mark.parametrize("package, forbidden, why", RULES, ids=[r[0] for r in RULES])
def test_imports_run_one_way(package, forbidden, why):
    target = REPO / package.replace(".", "/")
    if not target.is_dir():  # a single module
        paths = [target.with_suffix(".py")]
        bad = [f"{p.relative_to(REPO)} imports {n}" for p in paths for n in sorted(imports_of(p))
               if any(n == f or n.startswith(f + ".") for f in forbidden)]
    else:
        bad = _violations(package, forbidden)
    assert not bad, f"{why}:\n" + "\n".join(bad)


TORCH_FREE = [
    "circuitdiff.vocabulary", "circuitdiff.catalogue", "circuitdiff.spec", "circuitdiff.result", "circuitdiff.errors",
    "circuitdiff.metrics", "circuitdiff.architectures", "circuitdiff.sizing",
    "circuitdiff.tasks.custom", "circuitdiff.analysis.similarity", "circuitdiff.analysis.matching",
    "circuitdiff.analysis.alignment", "circuitdiff.analysis.robustness", "circuitdiff.analysis.pruning",
    "circuitdiff.analysis.performance", "circuitdiff.analysis.authors", "circuitdiff.report",
    "circuitdiff.report.html", "circuitdiff.report.plots", "circuitdiff.client.wire", "circuitdiff.client",
    "circuitdiff.client.watch_cli",
]


def test_torch_free_modules_load_no_torch_at_runtime():
    code = (
        "import importlib, sys\n"
        f"for m in {TORCH_FREE!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {TORCH!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_wire_models_load_without_the_http_client():
    """The jobs core and the service import the statuses and bodies of ``circuitdiff.client.wire``;
    that must not load httpx (the client package exports its HTTP names lazily)."""
    code = "import sys, circuitdiff.client.wire\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'httpx'))\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def _modules(package: str) -> list[str]:
    return [_module_name(p) for p in modules_under(package)]


# package -> top-level names that must not be in sys.modules after importing all its modules
RUNTIME_RULES = {
    "jobs": ("service", "worker", "watches", "launcher", "fastapi") + TORCH,
    "watches": ("service", "worker", "launcher", "fastapi") + TORCH,
    "launcher": ("service", "worker", "watches", "fastapi") + TORCH,
    "service": ("worker", "launcher") + TORCH,
    "worker": ("service", "launcher", "fastapi"),
}


@pytest.mark.parametrize("package", sorted(RUNTIME_RULES))
def test_packages_load_without_what_they_must_not_reach(package):
    """Import every module of ``package`` in a fresh interpreter; transitive imports count too."""
    code = (
        "import importlib, sys\n"
        f"for m in {_modules(package)!r}: importlib.import_module(m)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(RUNTIME_RULES[package])!r}))\n"
    )
    env = dict(os.environ, REDIS_URL="redis://127.0.0.1:1/0")  # the worker's app is built at import; nothing connects
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]", f"{package} loaded {out.stdout.strip()}"


def test_route_handlers_get_state_through_dependencies():
    """Handlers name ``StoreDep``/``SettingsDep``/``OwnerDep``/``ProducerDep``; only service/deps.py
    reads ``app.state`` (the FastAPI full-stack template's deps.py)."""
    bad = [str(p.relative_to(REPO)) for p in modules_under("service.api") if "app.state" in p.read_text()]
    assert not bad, bad


def test_scan_methods_are_one_explicit_table():
    from circuitdiff.scan import METHODS, scan
    from circuitdiff.vocabulary import ScanMethod, choices

    assert set(METHODS) == set(choices(ScanMethod))
    with pytest.raises(ValueError, match="choose one of: naive, exact, attribution"):
        scan(None, None, "zero", method="fast")  # type: ignore[arg-type]


# Documents that live outside a clone, written so that this file does not cite them itself.
OUTSIDE_DOCS = re.compile(r"\.\./shared|(?<![\w/.-])(?i:paper\.md|paper[-]notes)|DESIGN\.md|STYLE\.md")
# a page under docs/, then maybe a section: ``§7 pitfall 4`` (also wrapped onto a comment's next line),
# ``§3.1``, ``§Method 5``, ``§Decisions``, or a quoted heading (``"Layout"``)
DOCS_CITATION = re.compile(r"(?<![\w/.-])(docs/[\w./-]*?\.md)"
                           r"(,?[ \t]*(?:§7[\s#*]+pitfall[\s#*]+\d+|§[^\s,;:)]+(?:[ \t]+\d+)?|\"[^\"\n]+\"))?")


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.decode()
        names = [n for n in out.split("\0") if n]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but the venv
        names = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file() and ".venv" not in p.parts]
    return [REPO / n for n in names if not n.startswith("docs/") and (REPO / n).is_file()]


def _anchor_exists(doc: str, anchor: str) -> bool:
    """``§3.1 D``, ``§7 pitfall 8``, ``§Method 5``, ``§Activation cache`` or ``"Layout"``: a heading (or
    a numbered pitfall) of that name in the cited page."""
    anchor = " ".join(anchor.replace("#", " ").replace("*", " ").split()).strip(",. ")
    if anchor.startswith('"'):
        return anchor.strip('"').lower() in doc.lower()
    anchor = anchor.lstrip("§")
    headings = [h.strip() for h in re.findall(r"^#+ (.+)$", doc, re.MULTILINE)]
    if m := re.fullmatch(r"7 pitfall (\d+)", anchor):
        section7 = doc.split("\n## 7.", 1)[-1].split("\n## ", 1)[0]
        return re.search(rf"^{m[1]}\. ", section7, re.MULTILINE) is not None
    if m := re.match(r"Method (\d+)", anchor):
        return any(h.startswith(f"{m[1]}. ") for h in headings)
    if m := re.match(r"(\d+(?:\.\d+)?)", anchor):
        return any(re.match(rf"{re.escape(m[1])}\.?(\s|$)", h) for h in headings)
    first = anchor.split()[0].lower()
    return any(h.lower().startswith(first) for h in headings)


def test_references_stay_inside_the_repository():
    """Issue 22 §5: nothing outside docs/ cites a document a clone lacks (the old notes outside the
    repository), and every page under docs/ cited, with its section, exists."""
    outside, missing = [], []
    for path in _tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        rel = path.relative_to(REPO)
        outside += [f"{rel}: {m[0]}" for m in OUTSIDE_DOCS.finditer(text)]
        for m in DOCS_CITATION.finditer(text):
            page = REPO / m[1]
            if not page.is_file():
                missing.append(f"{rel}: {m[1]} does not exist")
            elif m[2] and not _anchor_exists(page.read_text(encoding="utf-8"), m[2].lstrip(", \t")):
                missing.append(f"{rel}: {m[1]} has no section {m[2].strip()!r}")
    assert not outside, "cites documents outside the repository (point at docs/):\n" + "\n".join(outside)
    assert not missing, "\n".join(missing)


def test_the_engine_reads_its_environment_in_one_place():
    """Issue 22 §4: only circuitdiff/settings.py reads the process environment (the zoo's
    reproducibility mode, which prepares training processes, aside), and it is a stdlib-only leaf."""
    allowed = {REPO / "circuitdiff" / "settings.py", REPO / "circuitdiff" / "zoo" / "reproducible.py"}
    readers = []
    for path in modules_under("circuitdiff"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb")
                    and isinstance(node.value, ast.Name) and node.value.id == "os") or (
                    isinstance(node, ast.ImportFrom) and node.module == "os"
                    and any(a.name in ("environ", "getenv") for a in node.names)):
                readers.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not [r for r in readers if REPO / r.split(":")[0] not in allowed], readers
    imported = {n.split(".")[0] for n in imports_of(REPO / "circuitdiff" / "settings.py")}
    assert imported <= set(sys.stdlib_module_names) | {"__future__", "circuitdiff"}, imported


def test_each_name_is_one_record_and_each_table_covers_its_literal():
    """A new ablation, metric or model type is its literal in circuitdiff.vocabulary plus one record:
    every table of records has exactly the literal's names, in its order, each record under its own name."""
    from circuitdiff.architectures import ARCHITECTURES
    from circuitdiff.metrics import METRICS
    from circuitdiff.scan.ablation import ABLATIONS
    from circuitdiff.vocabulary import Ablation, Metric, ModelType, choices

    for table, literal, key in ((ABLATIONS, Ablation, "name"), (METRICS, Metric, "name"),
                                (ARCHITECTURES, ModelType, "model_type")):
        assert tuple(table) == choices(literal)
        assert all(getattr(record, key) == name for name, record in table.items())


def test_a_model_type_is_one_record():
    """The hook adapter, the functional view and the family all read the record; nothing else lists
    model types."""
    from circuitdiff import architectures, vocabulary
    from circuitdiff.models import functional, hooks

    assert not hasattr(hooks, "LAYOUTS") and not hasattr(functional, "VIEWS")
    assert set(functional.STACKS) == {c.__name__ for c in functional.LayerStack.__subclasses__()}
    for t, a in architectures.ARCHITECTURES.items():
        assert a.stack is None or a.stack in functional.STACKS, t
        assert architectures.family_of_model_type(t) == a.family
    assert architectures.family_of_model_type("gpt_neox") == "causal"  # a bridge-only decoder
    assert architectures.LLAMA_MODEL_TYPES == ("llama", "mistral", "qwen2")
    assert architectures.MASKED_LM_MODEL_TYPES == ("bert", "distilbert")
    assert not hasattr(vocabulary, "LLAMA_MODEL_TYPES")  # one source for each name

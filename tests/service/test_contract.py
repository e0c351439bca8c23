"""Contracts other tools rely on: the committed OpenAPI document, problem+json on every error
response, and a service process that never loads torch."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.service_fixtures import PY, REPO

TORCH_FREE_MODULES = [
    "circuitdiff.spec", "circuitdiff.errors", "circuitdiff.fingerprint", "circuitdiff.catalogue", "circuitdiff.vocabulary",
    "circuitdiff.result", "circuitdiff.tasks.custom", "circuitdiff.client.wire", "circuitdiff.client", "service.main", "service.__main__", "service.openapi_dump",
    "jobs.settings", "jobs.store", "jobs.queue", "jobs.errors", "jobs.commands", "launcher.stack",
]


def test_openapi_is_committed_and_current():
    """`make openapi` regenerates it; this fails when the app and the committed file differ."""
    out = subprocess.run([PY, "-c", "from service.openapi_dump import openapi_text; print(openapi_text(), end='')"],
                         cwd=REPO, capture_output=True, text=True, check=True)
    committed = (REPO / "openapi" / "openapi.json").read_text()
    assert out.stdout == committed, "openapi/openapi.json is stale: run `make openapi` and commit it"


def test_openapi_documents_every_endpoint_and_problem_responses():
    doc = json.loads((REPO / "openapi" / "openapi.json").read_text())
    paths = doc["paths"]
    expected = {
        ("/v1/comparisons", "post"), ("/v1/comparisons", "get"), ("/v1/comparisons/{job_id}", "get"),
        ("/v1/comparisons/{job_id}", "delete"), ("/v1/comparisons/{job_id}/result", "get"),
        ("/v1/comparisons/{job_id}/report", "get"), ("/v1/comparisons/{job_id}/artifacts", "get"),
        ("/v1/comparisons/{job_id}/artifacts/{name}", "get"), ("/v1/models", "get"), ("/v1/tasks", "get"),
        ("/v1/datasets", "post"), ("/v1/datasets/{dataset_id}", "get"), ("/health", "get"), ("/ready", "get"),
        ("/version", "get"), ("/metrics", "get"),
    }
    assert expected <= {(p, m) for p, ops in paths.items() for m in ops}
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    body = paths["/v1/comparisons"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/ComparisonSpec")
    for p, ops in paths.items():
        for m, op in ops.items():
            for code, resp in op.get("responses", {}).items():
                if code[0] in "45":
                    assert list(resp["content"]) == ["application/problem+json"], (p, m, code)
                    assert resp["content"]["application/problem+json"]["schema"]["$ref"].endswith("/ProblemDetail")


def test_service_modules_are_torch_free():
    code = (
        "import sys, importlib\n"
        f"for m in {TORCH_FREE_MODULES!r}: importlib.import_module(m)\n"
        "from service.main import create_app\n"
        "from jobs.settings import Settings\n"
        "from jobs.queue import make_celery\n"
        "create_app(Settings(redis_url='redis://127.0.0.1:1/0')).openapi()\n"
        "make_celery(Settings(redis_url='redis://127.0.0.1:1/0'))\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'transformers', 'transformer_lens'))))\n"
    )
    out = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_running_api_never_loaded_torch(svc_api_proc, alice, local_spec):
    """After serving the whole API surface, the live API process has mapped no torch library."""
    proc, _ = svc_api_proc
    for path in ("/v1/models", "/v1/tasks", "/version", "/metrics", "/ready", "/v1/comparisons"):
        alice.get(path)
    r = alice.post("/v1/comparisons", json={**local_spec, "seed": 99})
    assert r.status_code == 202
    alice.delete(f"/v1/comparisons/{r.json()['id']}")
    maps = Path(f"/proc/{proc.pid}/maps").read_text()
    assert "libtorch" not in maps and "/torch/" not in maps


def test_readme_documents_every_setting_and_endpoint():
    from jobs.settings import Settings

    readme = (REPO / "README.md").read_text()
    for name in Settings.model_fields:
        env = "REDIS_URL" if name == "redis_url" else f"CIRCUITDIFF_{name.upper()}"
        assert f"| `{env}` |" in readme, f"README configuration table misses {env}"
    # the variables the engine reads itself (cache, datasets, scan batching, CLI debugging)
    engine_env = {v for p in (REPO / "circuitdiff").rglob("*.py") for v in re.findall(r"CIRCUITDIFF_[A-Z_]*[A-Z]", p.read_text())}
    assert {"CIRCUITDIFF_DATASETS_DIR", "CIRCUITDIFF_SCAN_CPU_TOKENS", "CIRCUITDIFF_CACHE_DIR"} <= engine_env
    for env in sorted(engine_env):
        assert f"| `{env}` |" in readme, f"README configuration tables miss {env}, which the engine reads"
    doc = json.loads((REPO / "openapi" / "openapi.json").read_text())
    for path in doc["paths"]:
        stem = path.split("{")[0].rstrip("/")
        assert stem in readme, f"README has no example for {path}"


def test_docs_load_every_asset_from_the_service(svc_api):
    """Issue 11 #8: /docs and /redoc reference no other host (a CDN leaves them blank offline), and
    every script, stylesheet and icon they name is served by the API itself."""
    import httpx

    for page, needed in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))):
        html = httpx.get(svc_api + page, timeout=30)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
        refs += re.findall(r"""\burl:\s*["']([^"']+)["']""", html.text)  # Swagger UI's spec URL
        assert not [u for u in refs if "//" in u], f"{page} loads from another host: {refs}"
        assert all(any(r.endswith(n) for r in refs) for n in needed), refs
        for ref in refs:
            r = httpx.get(svc_api + ref, timeout=30)
            assert r.status_code == 200 and len(r.content) > 1000, (page, ref, r.status_code)
        assert "fonts.googleapis" not in html.text and "cdn" not in html.text.lower()

"""The HTTP client of the circuitdiff service: typed methods over HTTP, no torch.

    from circuitdiff.client import Client

    with Client("http://127.0.0.1:8000", api_key="...") as cd:
        job = cd.wait(cd.submit({"teacher": "zoo:gpt-teacher", "student": "zoo:gpt-student", "task": "ioi"}).id)

- :mod:`circuitdiff.client.http`: :class:`Client` (comparisons, datasets) and its errors;
- :mod:`circuitdiff.client.watch`: the watch methods mixed into :class:`Client`;
- :mod:`circuitdiff.client.wire`: the API's bodies and the job statuses, shared with the service
  and the jobs core (pydantic only);
- :mod:`circuitdiff.client.watch_cli`: ``circuitdiff watch ... --server URL``.

The names below load lazily (as ``circuitdiff.run_comparison`` does), so ``circuitdiff.client.wire``
and the CLI's parser stay free of httpx until a client is made. Imports only pydantic, httpx and the
torch-free engine leaves (``tests/system/test_layout.py``).
"""

import importlib

_EXPORTS = {  # module (relative to this package) -> the names it gives
    ".http": ("ApiError", "Client", "Job", "JobCancelled", "JobEnded", "JobFailed", "WaitTimeout"),
    ".watch": ("WatchMethods",),
    ".wire": ("Artifact", "ArtifactList", "DatasetInfo", "JobList", "JobStatus", "STATUSES", "Status", "TERMINAL"),
    "..result": ("ComparisonResult",),
}
__all__ = sorted(name for names in _EXPORTS.values() for name in names)


def __getattr__(name: str):
    for module, names in _EXPORTS.items():
        if name in names:
            return getattr(importlib.import_module(module, __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The pipeline's use of the activation cache: per-model clean statistics and influence scans.

Everything cached is a function of one model and that model's token batches, never of the other
model of the pair, so a new student checkpoint compared against the same teacher finds every
teacher-side entry warm and recomputes only the student side (docs/design.md §Activation cache).

Keys (:func:`circuitdiff.cache.cache_key`):
- model: the weight sha256 the loader recorded (hub models: id@revision); a model without an
  identity is never cached;
- dataset: sha256 of the exact tensors the model runs (clean + corrupted tokens, masks, end
  positions, answer / distractor ids), so BOS policy, prompt count, seed and rejections are in it;
- hooks: what the entry holds (``clean:pattern,mlp_out,correct,blocks`` or ``influence:<method>:<ablation>``);
- dtype, device type and engine version, where the engine version includes a digest of the source
  of every module that computes a cached value: editing that code invalidates old entries instead
  of serving stale numbers.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch

from .. import ENGINE_VERSION
from ..settings import EngineSettings, current
from .store import ActivationCache, cache_key

_ENGINE_SOURCES = ("models", "scan", "tasks/dataset.py", "cache/pipeline_cache.py")


@lru_cache(maxsize=1)
def engine_digest() -> str:
    """ENGINE_VERSION + sha256 of the source files that produce cached values."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(ENGINE_VERSION.encode())
    for rel in _ENGINE_SOURCES:
        p = root / rel
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                h.update(str(f.relative_to(root)).encode())
                h.update(f.read_bytes())
    return f"{ENGINE_VERSION}+{h.hexdigest()[:16]}"


def model_identity(adapter: Any) -> str | None:
    info = getattr(adapter, "info", {}) or {}
    if info.get("sha256"):
        return f"sha256:{info['sha256']}"
    if info.get("kind") == "hub" and info.get("revision"):
        return f"hub:{info['id']}@{info['revision']}"
    return None


def view_digest(view: Any) -> str:
    """sha256 over the token tensors one model runs for the task (a TokenizedTask)."""
    h = hashlib.sha256()
    for t in (
        view.clean.tokens, view.clean.attention_mask, view.clean.end_pos,
        view.corrupted.tokens, view.corrupted.attention_mask, view.corrupted.end_pos,
        view.answer_ids, view.distractor_ids,
    ):
        if t is None:  # plain texts have no answer / distractor ids
            h.update(b"none")
            continue
        t = t.detach().to("cpu", torch.int64).contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


class PipelineCache:
    """Cache lookups of one comparison; ``status`` is the result's ``scan.cache`` (role -> hit |
    miss | disabled; hit only when everything of that model came from the cache)."""

    def __init__(self, cache: ActivationCache | None):
        self.cache = cache
        self.status: dict[str, str] = {}

    def _key(self, adapter: Any, view: Any, hooks: list[str]) -> str | None:
        ident = model_identity(adapter)
        if self.cache is None or ident is None:
            return None
        return cache_key(
            model=ident, dataset=view_digest(view), hooks=hooks, dtype=str(adapter.dtype),
            engine=engine_digest(), extra={"device": torch.device(adapter.device).type},
        )

    def _note(self, role: str, outcome: str) -> None:
        prev = self.status.get(role)
        if prev is None or prev == outcome:
            self.status[role] = outcome
        elif "disabled" in (prev, outcome):
            self.status[role] = "disabled"
        else:
            self.status[role] = "miss"  # part computed: not a full hit

    def _put(self, key: str, tensors: dict, meta: dict) -> None:
        try:
            self.cache.put(key, tensors, meta)
        except OSError:
            pass  # a full or read-only disk costs the next run time, never this run its result

    def _through(self, role: str, key: str | None, compute: Callable[[], Any], load: Callable[[Any], Any],
                 store: Callable[[Any], tuple[dict, dict]]) -> Any:
        """Serve ``key`` from the cache (noting hit / miss / disabled for ``role``) or compute and store it."""
        if key is None:
            self._note(role, "disabled")
            return compute()
        entry = self.cache.get(key)
        if entry is not None:
            self._note(role, "hit")
            return load(entry)
        self._note(role, "miss")
        value = compute()
        self._put(key, *store(value))
        return value

    def clean(self, role: str, adapter: Any, view: Any, compute: Callable[[], Any], build: Callable[..., Any]) -> Any:
        """Clean-pass statistics (circuitdiff.scan.clean.CleanStats); ``build(**fields)`` rebuilds it."""
        key = self._key(adapter, view, ["clean:pattern,mlp_out,correct,blocks"])

        def load(entry) -> Any:
            t, n = entry.tensors, entry.meta["n_layers"]
            return build(patterns=[t["patterns"][str(i)] for i in range(n)],
                         mlp_rows=[t["mlp_rows"][str(i)] for i in range(n)], correct=t["misc"]["correct"],
                         block_patterns=[t["block_patterns"][str(i)] for i in range(n)],
                         block_counts=t["misc"]["block_counts"], row_block=t["misc"]["row_block"])

        def store(stats) -> tuple[dict, dict]:
            tensors = {
                "patterns": {str(i): p for i, p in enumerate(stats.patterns)},
                "mlp_rows": {str(i): r for i, r in enumerate(stats.mlp_rows)},
                "block_patterns": {str(i): p for i, p in enumerate(stats.block_patterns)},
                "misc": {"correct": stats.correct, "block_counts": stats.block_counts, "row_block": stats.row_block},
            }
            return tensors, {"n_layers": len(stats.patterns), "role_when_written": role}

        return self._through(role, key, compute, load, store)

    def scan(
        self, role: str, adapter: Any, view: Any, params: dict[str, Any], compute: Callable[[], Any], build: Callable[..., Any]
    ) -> Any:
        """An InfluenceScan; ``params`` (method, ablation, options) are part of the key."""
        hooks = [f"influence:{params['method']}:{params['ablation']}"] + [
            f"{k}={v}" for k, v in sorted(params.items()) if k not in ("method", "ablation")
        ]
        key = self._key(adapter, view, hooks)

        def load(entry) -> Any:
            m, ld = entry.meta, entry.tensors["ld"]
            return build(components=m["components"], clean_ld=ld["clean"], ablated_ld=ld["ablated"],
                         ablation=m["ablation"], method=m["method"], agreement=m.get("agreement"),
                         metric=m.get("metric", "logit_diff"), microbatch_rows=m.get("microbatch_rows"), exact=m.get("exact"),
                         estimator=m.get("estimator"))

        def store(s) -> tuple[dict, dict]:
            meta = {"components": s.components, "ablation": s.ablation, "method": s.method, "agreement": s.agreement,
                    "metric": s.metric, "microbatch_rows": s.microbatch_rows, "exact": s.exact,
                    "estimator": s.estimator}
            return {"ld": {"clean": s.clean_ld, "ablated": s.ablated_ld}}, meta

        return self._through(role, key, compute, load, store)


def open_cache(cache: ActivationCache | bool | str | Path | None,
               settings: EngineSettings | None = None) -> ActivationCache | None:
    """The pipeline's ``cache`` argument: an ActivationCache, a root directory, True / None (the
    settings' cache root, unless their ``cache`` is off), or False (disabled). ``settings``: the
    engine settings (default: the active ones, circuitdiff.settings)."""
    settings = settings or current()
    if cache is False:
        return None
    if isinstance(cache, ActivationCache):
        return cache
    if isinstance(cache, (str, Path)):
        return ActivationCache(cache, settings.cache_max_bytes)
    if not settings.cache:
        return None
    try:
        return ActivationCache(settings.cache_dir, settings.cache_max_bytes)
    except OSError:
        return None  # unwritable cache dir: run uncached rather than fail the comparison

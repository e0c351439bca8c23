"""The engine's settings: one object, read from the environment once per process, passed down.

:class:`EngineSettings` holds every variable the engine reads (README, "Configuration"):

| field | variable | default |
|---|---|---|
| ``cache`` | ``CIRCUITDIFF_CACHE`` | on (``0``/``false``/``no``/``off``: the default cache is off) |
| ``cache_dir`` | ``CIRCUITDIFF_CACHE_DIR`` | ``$CIRCUITDIFF_DATA_DIR/cache``, else ``~/.cache/circuitdiff`` |
| ``cache_max_bytes`` | ``CIRCUITDIFF_CACHE_MAX_BYTES`` | 20 GiB |
| ``datasets_dir`` | ``CIRCUITDIFF_DATASETS_DIR`` | none |
| ``memory_budget`` | ``CIRCUITDIFF_MEMORY_BUDGET`` | none: what each device has free |
| ``scan_cpu_tokens`` | ``CIRCUITDIFF_SCAN_CPU_TOKENS`` | 8192 |

Who reads them, once: the CLI when a command starts (``circuitdiff.cli``); the worker through the
service's settings, which compose an ``EngineSettings`` with their own data directory
(``jobs.settings.Settings.engine``); the library on first use (:func:`current`) when its caller
made none active. The object is passed to what needs it (``open_cache``, ``ActivationCache``,
``resolve_dataset`` take it or its values); code deep below the pipeline (the memory plan made while
a model loads, micro-batch sizes inside a scan) reads the settings active for the run, which
:func:`use` sets for a block (a context variable, so runs in different threads each keep theirs).

:class:`CliSettings` holds the command line's own three variables (API key, webhook secret, debug).
No other module under ``circuitdiff/`` reads ``os.environ`` (the zoo's reproducibility mode, which
prepares training processes, excepted). Stdlib only, importable without torch. Why it is laid out
this way: docs/design.md §Engine settings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .vocabulary import MEMORY_BUDGET_ENV

__all__ = [
    "EngineSettings", "CliSettings", "SettingsError", "current", "use", "parse_bytes", "quiet_tokenizers",
    "CACHE_ENV", "CACHE_DIR_ENV", "DATA_DIR_ENV", "CACHE_MAX_BYTES_ENV", "DATASETS_DIR_ENV", "MEMORY_BUDGET_ENV",
    "SCAN_CPU_TOKENS_ENV", "KEY_ENV", "WEBHOOK_SECRET_ENV", "DEBUG_ENV",
]

CACHE_ENV = "CIRCUITDIFF_CACHE"
CACHE_DIR_ENV = "CIRCUITDIFF_CACHE_DIR"
DATA_DIR_ENV = "CIRCUITDIFF_DATA_DIR"
CACHE_MAX_BYTES_ENV = "CIRCUITDIFF_CACHE_MAX_BYTES"
DATASETS_DIR_ENV = "CIRCUITDIFF_DATASETS_DIR"
SCAN_CPU_TOKENS_ENV = "CIRCUITDIFF_SCAN_CPU_TOKENS"
KEY_ENV = "CIRCUITDIFF_KEY"
WEBHOOK_SECRET_ENV = "CIRCUITDIFF_WEBHOOK_SECRET"
DEBUG_ENV = "CIRCUITDIFF_DEBUG"

DEFAULT_CACHE_MAX_BYTES = 20 * 2**30
DEFAULT_SCAN_CPU_TOKENS = 8192
"""Tokens per exact-scan micro-batch on CPU: beyond it a bigger batch brings no speed, only cache misses."""
OFF = ("0", "false", "no", "off")


class SettingsError(ValueError):
    """A variable's value cannot be read; the message names the variable and what it expects."""


def parse_bytes(text: str, name: str = MEMORY_BUDGET_ENV) -> int:
    """``"24GiB"``, ``"512MB"``, ``"1e9"``, ``"1048576"`` -> bytes."""
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]i?B?|B)?\s*", text or "")
    if not m:
        raise SettingsError(f"{name}={text!r}: expected bytes like 24GiB, 512MB or 1000000")
    unit = (m[2] or "B").upper().rstrip("B")
    scale = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}[unit]
    return int(float(m[1]) * scale)


def _default_cache_dir() -> Path:
    return Path("~/.cache/circuitdiff").expanduser()


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r}: expected a whole number") from None


@dataclass(frozen=True)
class EngineSettings:
    """What the engine reads from its environment, in one place (the table in the module docstring)."""

    cache: bool = True
    cache_dir: Path = field(default_factory=_default_cache_dir)
    cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES
    datasets_dir: Path | None = None
    memory_budget: int | None = None  # bytes per device; None: what each device has free
    scan_cpu_tokens: int = DEFAULT_SCAN_CPU_TOKENS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, data_dir: Path | None = None) -> "EngineSettings":
        """Read the variables (from ``environ``, default ``os.environ``). ``data_dir``: a deployment's
        data directory (the service's settings pass theirs): then the activation cache is always on
        under ``<data_dir>/cache`` and uploaded datasets are ``<data_dir>/datasets``, and the
        variables that would put them elsewhere are not read."""
        env = os.environ if environ is None else environ
        budget = env.get(MEMORY_BUDGET_ENV)
        common = dict(
            cache_max_bytes=_int(env, CACHE_MAX_BYTES_ENV, DEFAULT_CACHE_MAX_BYTES),
            memory_budget=parse_bytes(budget) if budget else None,
            scan_cpu_tokens=_int(env, SCAN_CPU_TOKENS_ENV, DEFAULT_SCAN_CPU_TOKENS),
        )
        if data_dir is not None:
            return cls(cache=True, cache_dir=Path(data_dir) / "cache", datasets_dir=Path(data_dir) / "datasets",
                       **common)
        if d := env.get(CACHE_DIR_ENV):
            cache_dir = Path(d).expanduser()
        elif d := env.get(DATA_DIR_ENV):
            cache_dir = Path(d).expanduser() / "cache"
        else:
            cache_dir = _default_cache_dir()
        datasets = env.get(DATASETS_DIR_ENV)
        return cls(cache=env.get(CACHE_ENV, "1").lower() not in OFF, cache_dir=cache_dir,
                   datasets_dir=Path(datasets) if datasets else None, **common)


@lru_cache(maxsize=1)
def _process_default() -> EngineSettings:
    return EngineSettings.from_env()


_ACTIVE: ContextVar[EngineSettings | None] = ContextVar("circuitdiff_engine_settings", default=None)


def current() -> EngineSettings:
    """The settings active here: those :func:`use` made active, else the process's, read from the
    environment on first use (a library caller that made none active)."""
    return _ACTIVE.get() or _process_default()


@contextmanager
def use(settings: EngineSettings) -> Iterator[EngineSettings]:
    """Make ``settings`` the active ones for the block (the CLI's and the worker's run, a test)."""
    token = _ACTIVE.set(settings)
    try:
        yield settings
    finally:
        _ACTIVE.reset(token)


@dataclass(frozen=True)
class CliSettings:
    """The command line's own variables: defaults for ``--api-key`` and ``--webhook-secret``, and
    ``CIRCUITDIFF_DEBUG`` (print the traceback of an unexpected error)."""

    api_key: str | None = None
    webhook_secret: str | None = None
    debug: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "CliSettings":
        env = os.environ if environ is None else environ
        return cls(api_key=env.get(KEY_ENV), webhook_secret=env.get(WEBHOOK_SECRET_ENV), debug=bool(env.get(DEBUG_ENV)))


def quiet_tokenizers() -> None:
    """``TOKENIZERS_PARALLELISM=false`` unless set: the tokenizers library warns on every fork
    otherwise. The one variable the engine writes (for a library, not a setting of its own)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

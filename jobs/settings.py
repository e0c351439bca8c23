"""One settings class for the API, the worker and the `make run` launcher.

Every field reads an environment variable named ``CIRCUITDIFF_<FIELD>`` (``REDIS_URL`` is also read
unprefixed, the name every Redis deployment uses). The README's configuration table is this class.
The engine's own variables are read by ``circuitdiff.settings``; :attr:`Settings.engine` composes
them with this deployment's ``data_dir`` (activation cache and uploaded datasets live under it).
"""

from __future__ import annotations

import hashlib
import ipaddress
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from circuitdiff.settings import EngineSettings
from circuitdiff.tasks.custom import MAX_BYTES

from .turns import stride

LOOPBACK_HOSTS = {"localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_gpus(text: str) -> list[tuple[int, ...]]:
    """``CIRCUITDIFF_GPUS``: ``0,1`` -> [(0,), (1,)] (a worker each); ``0-3`` -> [(0, 1, 2, 3)] (one worker)."""
    groups, seen = [], set()
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        lo, sep, hi = item.partition("-")
        if not (lo.isdigit() and (not sep or hi.isdigit())) or (sep and int(hi) <= int(lo)):
            raise ValueError(f"{item!r}: write a device id (`0`) or a range of them (`0-3`)")
        group = tuple(range(int(lo), int(hi) + 1)) if sep else (int(lo),)
        if seen & set(group):
            raise ValueError(f"{item!r}: device {min(seen & set(group))} is given twice")
        seen |= set(group)
        groups.append(group)
    return groups


def owner_of(key_hash: str) -> str:
    """The owner id of a key's jobs (and its line in the turn order): ``k`` + 16 hex digits of its hash."""
    return "k" + key_hash[:16]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CIRCUITDIFF_", extra="ignore")

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CIRCUITDIFF_REDIS_URL", "REDIS_URL"),
        description="Redis for job records and the Celery broker; unset: `make run` starts its own",
    )
    data_dir: Path = Field(default=Path("data"), description="results/, datasets/, cache/ live here")
    model_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="directories local model paths must lie in (comma-separated); default <data_dir>/models",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated API keys, each plain or `sha256:<hex>`; kept only as hashes; empty = open API on loopback",
    )
    key_weights: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict,
        description="turns between keys with queued jobs: `key=weight,...` (key plain or `sha256:<hex>`, weight "
                    "1-16); a key of weight 2 gets two turns for another's one; unlisted keys weigh 1")
    max_queued_per_key: int = Field(
        default=100, ge=0, description="queued jobs one key may have (its watches' included); a submission over "
                                       "it is 429 `too_many_queued`; 0 = no limit")
    metrics_token: str | None = Field(
        default=None, min_length=16,
        description="a bearer token for `/metrics` alone (a Prometheus scraper), kept as its hash; with API keys set, "
                    "`/metrics` answers only this token or an API key")
    host: str = Field(default="127.0.0.1", description="API bind address (non-loopback requires API keys)")
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=64 * 1024, description="request body limit (413 above it)")
    max_upload_bytes: int = Field(
        default=MAX_BYTES, ge=1, le=MAX_BYTES,
        description="dataset upload limit (413 above it); at most the engine's own dataset limit",
    )
    max_wait_seconds: float = Field(default=60.0, description="cap on ?wait= long polls")
    max_attempts: int = Field(default=3, ge=1, description="deliveries of one job before it is marked failed")
    visibility_timeout: int = Field(
        default=8 * 3600, ge=1, description="seconds before an unacknowledged job is redelivered; above the longest job"
    )
    restore_interval: int = Field(default=10, ge=1, description="seconds between sweeps for unacknowledged jobs")
    model_cache_size: int = Field(default=4, ge=0, description="loaded models the worker keeps across jobs")
    split_jobs: bool = Field(
        default=False, description="when another worker of the pool is idle, the worker running a comparison has it "
                                   "scan the student meanwhile and picks the scan up from the activation cache")
    warm_routing: bool = Field(
        default=True, description="a worker handed a job whose teacher or student another idle worker holds loaded, "
                                  "and it does not, passes the job to that worker's own queue")
    progress_interval: float = Field(default=1.0, description="min seconds between progress writes")
    worker_heartbeat_seconds: float = Field(default=5.0, description="worker liveness write interval")
    worker_stale_seconds: float = Field(default=30.0, description="a worker silent this long counts as gone")
    workers: int = Field(default=1, ge=1, le=64, description="worker processes `make run` starts and supervises")
    gpus: Annotated[list[tuple[int, ...]], NoDecode] = Field(
        default_factory=list,
        description="GPUs `make run` gives its workers, comma-separated: `0,1` = one worker per device, each seeing "
                    "only its own (CUDA_VISIBLE_DEVICES) and named after it (gpu0, gpu1); a range `0-3` = one worker "
                    "over those devices, for jobs whose models need several GPUs (queue gpu.multi); empty: "
                    "CIRCUITDIFF_WORKERS workers, no device assignment")
    unsent_grace_seconds: float = Field(
        default=30.0, gt=0,
        description="a queued job whose message is not known to be sent this long after creation is queued by a worker's sweep")
    orphan_sweep: bool = Field(
        default=True, description="workers re-queue running jobs of workers gone silent (else only visibility_timeout)"
    )
    watch_tick_seconds: float = Field(
        default=5.0, gt=0, description="how often beat looks for due watches and finished watch jobs"
    )
    webhook_allow_private: bool = Field(
        default=False, description="allow webhooks to loopback/private/link-local addresses (tests, single-user `make run`)"
    )
    webhook_max_attempts: int = Field(default=6, ge=1, le=20, description="deliveries of one webhook event before giving up")
    webhook_backoff_seconds: float = Field(
        default=2.0, gt=0, description="first retry delay; doubles each attempt (2, 4, 8, ... s)"
    )
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, description="per-attempt HTTP timeout")
    public_base_url: str = Field(
        default="", max_length=2000, pattern=r"^(https?://[^\s/]+(/[^\s]*)?)?$",
        description="the API's address as receivers reach it (e.g. `https://cd.example`): makes webhook `links` absolute; "
                    "unset: links are paths")

    @field_validator("model_roots", mode="before")
    @classmethod
    def _split_roots(cls, v):
        if isinstance(v, str):
            return [p for p in (s.strip() for s in v.split(",")) if p]
        return v

    @field_validator("api_keys", mode="before")
    @classmethod
    def _hash_keys(cls, v):
        # Plain keys never stay in memory past this point: only their sha256 is kept and compared.
        items = [s.strip() for s in v.split(",")] if isinstance(v, str) else list(v or [])
        return [k[7:].lower() if k.startswith("sha256:") else hash_key(k) for k in items if k]

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpu_groups(cls, v):
        return parse_gpus(v) if isinstance(v, str) else v

    @field_validator("key_weights", mode="before")
    @classmethod
    def _weights(cls, v):
        if not isinstance(v, str):
            return v
        out = {}
        for item in (s.strip() for s in v.split(",")):
            if item:
                key, sep, weight = item.rpartition("=")
                if not sep or not key:
                    raise ValueError(f"{item!r}: write key=weight")
                out[key.strip()] = weight.strip()
        return out

    @field_validator("key_weights", mode="after")
    @classmethod
    def _hash_weight_keys(cls, v):
        for k, w in v.items():
            if not 1 <= w <= 16:
                raise ValueError(f"weight {w} of a key is outside 1-16")
        return {k[7:].lower() if k.startswith("sha256:") else hash_key(k): w for k, w in v.items()}

    @field_validator("metrics_token", mode="after")
    @classmethod
    def _hash_token(cls, v):
        return None if not v else (v[7:].lower() if v.startswith("sha256:") else hash_key(v))

    @model_validator(mode="after")
    def _defaults_and_safety(self) -> "Settings":
        self.data_dir = self.data_dir.expanduser().absolute()
        if not self.model_roots:
            self.model_roots = [self.data_dir / "models"]
        self.model_roots = [p.expanduser().absolute() for p in self.model_roots]
        if not self.api_keys and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not loopback and no API keys are set: "
                "set CIRCUITDIFF_API_KEYS or bind to 127.0.0.1"
            )
        return self

    @property
    def strides(self) -> dict[str, int]:
        """Owner -> stride in the turn order (jobs.turns), for the keys given a weight."""
        return {owner_of(h): stride(w) for h, w in self.key_weights.items()}

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @cached_property
    def engine(self) -> EngineSettings:
        """The engine's settings for this deployment, what the worker runs comparisons with: cache
        and datasets under ``data_dir``, the rest (cache size, memory budget, CPU micro-batches) from
        the engine's variables, read here once (circuitdiff.settings)."""
        return EngineSettings.from_env(data_dir=self.data_dir)

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise RuntimeError("REDIS_URL is not set (use `make run`, which starts a Redis server for you)")
        return self.redis_url


@lru_cache
def get_settings() -> Settings:
    return Settings()

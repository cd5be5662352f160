"""The pipeline's configuration, read from the environment and checked before any call.

Every knob has a sane default, so that ``make run`` works on a fresh clone against the local sandbox.
A bad value is an error that names the variable and what is wrong with it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from pipelines.object_store import ObjectStore, is_object_store
from pipelines.progress import INTERVAL_SECONDS
from pipelines.shards import MAX_SHARDS
from pipelines.synctera import DEFAULT_MAX_CONCURRENCY, validate_base_url
from pipelines.synctera.client import MAX_PAGES

LOCAL_SANDBOX_URL = "http://127.0.0.1:8765/v0"
SANDBOX_DEFAULT_KEY = "sandbox-api-key"
DEFAULT_START_DATE = dt.date(2024, 1, 1)


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it."""


def is_local(url: httpx.URL) -> bool:
    """Loopback hosts: the built-in sandbox, where a missing key may fall back to the sandbox's own."""
    host = url.host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_api_key(base_url: str, api_key: str | None) -> str:
    """The key to use: required for a remote API; the sandbox's default key on loopback."""
    url = validate_base_url(base_url)
    if api_key and api_key.strip():
        return api_key
    if is_local(url):
        return os.environ.get("SYNCTERA_SANDBOX_API_KEY") or SANDBOX_DEFAULT_KEY
    raise ConfigError(
        f"SYNCTERA_API_KEY is not set, and {url.host} is not the local sandbox: set the API key"
    )


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(
    env: Mapping[str, str], name: str, default: float, *, low: float, high: float | None = None
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be {bounds}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def start_date_from_env(env: Mapping[str, str] | None = None, *, today: dt.date | None = None) -> dt.date:
    """``SYNCTERA_START_DATE``: the first daily partition (YYYY-MM-DD), not in the future."""
    env = os.environ if env is None else env
    raw = env.get("SYNCTERA_START_DATE")
    if not raw:
        return DEFAULT_START_DATE
    try:
        start = dt.date.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"SYNCTERA_START_DATE must be a date (YYYY-MM-DD), got {raw!r}") from None
    today = today or dt.datetime.now(dt.UTC).date()
    if start >= today:
        raise ConfigError(
            f"SYNCTERA_START_DATE {start} is not in the past: partitions end yesterday ({today})"
        )
    return start


@dataclass(frozen=True)
class IngestSettings:
    """How the ingestion behaves, independent of where the API is.

    ``max_age``: seconds a balance may be old. ``account_concurrency``: accounts fetched at once.
    ``lookback_days``: complete days the daily run re-fetches before yesterday (late postings,
    pending → posted). ``balance_error_threshold``: the share of balance errors the check accepts.
    ``max_listing_pages``: pages a listing may take before it fails (a server that never ends it).
    ``progress_seconds``: how often a long run tells its progress in the run log.
    """

    max_age: int = 3600
    include_history: bool = False
    # As many as the requests in flight: each account has one window in flight at a time. Twice as
    # many (so that an account checking and spooling rows leaves no slot idle) was no faster on the
    # realistic benchmark and cost a run ~40 MiB (bench.paths: 330 MiB PSS instead of ~290).
    account_concurrency: int = DEFAULT_MAX_CONCURRENCY
    lookback_days: int = 3
    balance_error_threshold: float = 0.25
    max_listing_pages: int = MAX_PAGES
    progress_seconds: float = INTERVAL_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestSettings:
        env = os.environ if env is None else env
        return cls(
            max_age=_int(env, "SYNCTERA_MAX_AGE", cls.max_age, minimum=0),
            include_history=_bool(env, "SYNCTERA_INCLUDE_HISTORY", cls.include_history),
            account_concurrency=_int(env, "SYNCTERA_ACCOUNT_CONCURRENCY", cls.account_concurrency, minimum=1),
            lookback_days=_int(env, "SYNCTERA_LOOKBACK_DAYS", cls.lookback_days, minimum=0),
            balance_error_threshold=_float(
                env, "SYNCTERA_BALANCE_ERROR_THRESHOLD", cls.balance_error_threshold, low=0.0, high=1.0
            ),
            max_listing_pages=_int(env, "SYNCTERA_MAX_LISTING_PAGES", cls.max_listing_pages, minimum=1),
            progress_seconds=_float(env, "SYNCTERA_PROGRESS_SECONDS", cls.progress_seconds, low=0.01),
        )


REDIS_URL_VARIABLE = "SYNCTERA_RATE_LIMIT_REDIS_URL"
"""Read by this module (is it set, is it a Redis URL) and, for its value, only through Dagster's EnvVar:
it may carry a password."""
BUDGET_NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


@dataclass(frozen=True)
class RateLimitSettings:
    """The request budget: ``requests_per_second`` (``None``: none) shared by every run on this machine
    through a lock file, or by every run on every machine through Redis when ``redis`` (the URL is set).
    ``name`` tells budgets apart in one Redis, e.g. one per API key against the same API root.
    """

    requests_per_second: float | None = None
    redis: bool = False
    name: str = "default"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RateLimitSettings:
        env = os.environ if env is None else env
        rate = _float(env, "SYNCTERA_REQUESTS_PER_SECOND", 0.0, low=0.0) or None
        url = env.get(REDIS_URL_VARIABLE) or ""
        if url and url.partition("://")[0] not in ("redis", "rediss", "unix"):
            # The value itself is never echoed: it may hold a password.
            raise ConfigError(f"{REDIS_URL_VARIABLE} must be a redis://, rediss:// or unix:// URL")
        if url and rate is None:
            raise ConfigError(
                f"{REDIS_URL_VARIABLE} is set but SYNCTERA_REQUESTS_PER_SECOND is not: set the shared budget"
            )
        name = env.get("SYNCTERA_RATE_LIMIT_NAME") or cls.name
        if not re.match(BUDGET_NAME_PATTERN, name):
            raise ConfigError(
                f"SYNCTERA_RATE_LIMIT_NAME must be 1 to 64 letters, digits, '.', '_' or '-', got {name!r}"
            )
        return cls(requests_per_second=rate, redis=bool(url), name=name)


CELERY_BROKER_VARIABLE = "SYNCTERA_CELERY_BROKER"
"""Read only through Dagster's config ``{"env": ...}`` and the workers' own environment: it may carry
a password, so its value is never stored in run configuration or echoed in an error."""
EXECUTORS = ("in_process", "celery")


@dataclass(frozen=True)
class ExecutionSettings:
    """``SYNCTERA_EXECUTOR``: ``in_process`` (default: a run is one process) or ``celery`` (each step
    of a run goes to a Celery worker, ``python -m pipelines.worker``, through ``SYNCTERA_CELERY_BROKER``)."""

    executor: str = "in_process"
    shards: int = 1
    """``SYNCTERA_SHARDS``: steps a transactions run's accounts are fetched in (a hash of the account
    id picks the shard). More than one pays with the Celery executor, whose workers run them at once;
    in one process they run one after the other. Every machine must load the same value: it shapes
    the run's steps."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ExecutionSettings:
        env = os.environ if env is None else env
        executor = env.get("SYNCTERA_EXECUTOR") or cls.executor
        if executor not in EXECUTORS:
            raise ConfigError(f"SYNCTERA_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {executor!r}")
        if executor == "celery":
            celery_broker_from_env(env)
        shards = _int(env, "SYNCTERA_SHARDS", cls.shards, minimum=1)
        if shards > MAX_SHARDS:
            raise ConfigError(f"SYNCTERA_SHARDS must be at most {MAX_SHARDS}, got {shards}")
        return cls(executor=executor, shards=shards)


def celery_broker_from_env(env: Mapping[str, str] | None = None) -> str:
    """The Celery broker's URL, checked for its scheme only (the value is never echoed)."""
    env = os.environ if env is None else env
    url = env.get(CELERY_BROKER_VARIABLE) or ""
    if not url:
        raise ConfigError(
            f"{CELERY_BROKER_VARIABLE} is not set: the Celery executor and workers need a broker"
        )
    if url.partition("://")[0] not in ("amqp", "pyamqp", "amqps", "redis", "rediss"):
        raise ConfigError(
            f"{CELERY_BROKER_VARIABLE} must be an amqp://, pyamqp://, redis:// or rediss:// URL"
        )
    return url


REPO_ROOT = Path(__file__).resolve().parent.parent
"""Relative data directories are taken from here, never from the current directory."""


def data_dir_from_env(env: Mapping[str, str] | None = None) -> Path:
    """The local data directory: ``SYNCTERA_DATA_DIR`` (default ``data``), or, when that names an
    object store, ``SYNCTERA_WORK_DIR`` (default ``data``: staging and the warehouse file). A
    relative path is relative to the repository root."""
    env = os.environ if env is None else env
    location = env.get("SYNCTERA_DATA_DIR") or "data"
    if is_object_store(location):
        location = env.get("SYNCTERA_WORK_DIR") or "data"
    path = Path(location)
    return path if path.is_absolute() else REPO_ROOT / path


def object_store_from_env(env: Mapping[str, str] | None = None) -> ObjectStore | None:
    """The object store ``SYNCTERA_DATA_DIR`` names (``s3://bucket/prefix``), if it names one."""
    env = os.environ if env is None else env
    location = env.get("SYNCTERA_DATA_DIR") or ""
    if not is_object_store(location):
        return None
    try:
        return ObjectStore.parse(location)
    except ValueError as error:
        raise ConfigError(f"SYNCTERA_DATA_DIR: {error}") from None

"""Dagster resources: where the API is (and its key, through EnvVar), where the lake is, how to ingest."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import httpx
from pydantic import Field

from pipelines.settings import (
    BUDGET_NAME_PATTERN,
    REDIS_URL_VARIABLE,
    ConfigError,
    IngestSettings,
    resolve_api_key,
)
from pipelines.synctera import (
    DEFAULT_MAX_CONCURRENCY,
    AsyncSyncteraClient,
    Budget,
    RetryPolicy,
    SharedRateBudget,
    validate_base_url,
)

if TYPE_CHECKING:
    from pipelines.lake import Lake
    from pipelines.synctera.redis_budget import RedisRateBudget


class SyncteraApi(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Synctera's API: ``SYNCTERA_BASE_URL`` and ``SYNCTERA_API_KEY`` (read only through EnvVar)."""

    base_url: str = Field(description="API root including /v0; wire it with dg.EnvVar('SYNCTERA_BASE_URL').")
    api_key: str | None = Field(
        default=None, repr=False, description="Bearer API key; wire it with dg.EnvVar."
    )
    max_concurrency: int = Field(
        default=DEFAULT_MAX_CONCURRENCY,
        ge=1,
        description="Requests in flight at most: the ceiling of the adaptive limit (or the fixed limit).",
    )
    adaptive_concurrency: bool = Field(
        default=True,
        description="Find the API's limit: grow while answers come fast, shrink on 429/503 or latency.",
    )
    requests_per_second: float | None = Field(
        default=None,
        gt=0,
        description="Request budget shared by every run on this machine against this API (with "
        "rate_limit_redis_url: by every run on every machine using that Redis).",
    )
    rate_limit_redis_url: str | None = Field(
        default=None,
        repr=False,
        description=f"Redis holding the request budget; wire it with dg.EnvVar('{REDIS_URL_VARIABLE}') "
        "(it may hold a password).",
    )
    rate_limit_name: str = Field(
        default="default",
        pattern=BUDGET_NAME_PATTERN,
        description="Tells budgets apart in one Redis (e.g. one per API key).",
    )
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=30.0, ge=0)
    max_retry_wait_seconds: float = Field(default=60.0, ge=0)
    max_response_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)

    def check(self) -> None:
        """Fail before any call if the base URL, the key or the budget's Redis is unusable."""
        validate_base_url(self.base_url)
        resolve_api_key(self.base_url, self.api_key)
        if self.rate_limit_redis_url:
            budget = self._redis_budget()
            try:
                budget.ping()
            finally:
                budget.close()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.check()

    def client(self) -> AsyncSyncteraClient:
        return AsyncSyncteraClient(
            base_url=self.base_url,
            api_key=resolve_api_key(self.base_url, self.api_key),
            timeout=httpx.Timeout(self.timeout_seconds, connect=min(10.0, self.timeout_seconds)),
            retry=RetryPolicy(
                max_attempts=self.max_attempts,
                backoff_base=self.backoff_base_seconds,
                backoff_max=self.backoff_max_seconds,
                max_hint=self.max_retry_wait_seconds,
            ),
            max_concurrency=self.max_concurrency,
            adaptive=self.adaptive_concurrency,
            budget=self.shared_budget(),
            max_response_bytes=self.max_response_bytes,
        )

    def shared_budget(self) -> Budget | None:
        """One requests-per-second budget for every run that calls this API root: through Redis on
        every machine when a Redis URL is set, else through a lock file on this machine."""
        if self.rate_limit_redis_url:
            return self._redis_budget()
        if self.requests_per_second is None:
            return None
        path = Path(tempfile.gettempdir()) / f"synctera-rate-budget-{self._api_digest()}"
        return SharedRateBudget(path, self.requests_per_second)

    def _api_digest(self) -> str:
        return hashlib.sha256(self.base_url.encode()).hexdigest()[:16]

    def _redis_budget(self) -> RedisRateBudget:
        # Imported here: pyrate-limiter takes ~0.15 s to import, paid only when Redis is configured.
        from pipelines.synctera.redis_budget import RedisRateBudget

        url = self.rate_limit_redis_url
        assert url, "only called with a Redis URL"
        if self.requests_per_second is None:
            raise ConfigError(
                f"rate_limit_redis_url ({REDIS_URL_VARIABLE}) is set but requests_per_second "
                "(SYNCTERA_REQUESTS_PER_SECOND) is not: set the shared budget"
            )
        # The API root and a name, never the API key: keys are visible to anyone who can list them.
        key = f"synctera:rate-budget:{self._api_digest()}:{self.rate_limit_name}"
        return RedisRateBudget.from_url(url, key, self.requests_per_second)


class LakeResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The data directory (``SYNCTERA_DATA_DIR``): Parquet lake and ``warehouse.duckdb``; or, for a
    lake on an object store (``object_store``, an ``s3://`` URL), the local work directory."""

    data_dir: str
    object_store: str | None = None

    @property
    def lake(self) -> Lake:
        from pipelines.lake import Lake  # Arrow: for the runs, not for loading the definitions
        from pipelines.object_store import ObjectStore

        store = ObjectStore.parse(self.object_store) if self.object_store else None
        return Lake(Path(self.data_dir), store)


class IngestResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """How ingestion behaves; defaults come from the SYNCTERA_* environment (see README)."""

    max_age: int = Field(default=IngestSettings.max_age, ge=0, description="Seconds a balance may be old.")
    include_history: bool = Field(default=IngestSettings.include_history)
    account_concurrency: int = Field(default=IngestSettings.account_concurrency, ge=1)
    lookback_days: int = Field(default=IngestSettings.lookback_days, ge=0)
    balance_error_threshold: float = Field(default=IngestSettings.balance_error_threshold, ge=0, le=1)
    progress_seconds: float = Field(
        default=IngestSettings.progress_seconds, gt=0, description="How often a long run logs its progress."
    )
    max_listing_pages: int = Field(
        default=IngestSettings.max_listing_pages,
        ge=1,
        description="Pages a listing may take before it fails.",
    )

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> IngestResource:
        return cls(
            max_age=settings.max_age,
            include_history=settings.include_history,
            account_concurrency=settings.account_concurrency,
            lookback_days=settings.lookback_days,
            balance_error_threshold=settings.balance_error_threshold,
            max_listing_pages=settings.max_listing_pages,
            progress_seconds=settings.progress_seconds,
        )

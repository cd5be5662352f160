"""Dagster resources: where the API is (and its key, through EnvVar), where the lake is, how to ingest."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import dagster as dg
import httpx
from pydantic import Field

from pipelines.lake import Lake
from pipelines.settings import IngestSettings, resolve_api_key
from pipelines.synctera import (
    DEFAULT_MAX_CONCURRENCY,
    AsyncSyncteraClient,
    RetryPolicy,
    SharedRateBudget,
    validate_base_url,
)


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
        default=None, gt=0, description="Request budget shared by every run on this machine against this API."
    )
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=30.0, ge=0)
    max_retry_wait_seconds: float = Field(default=60.0, ge=0)
    max_response_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)

    def check(self) -> None:
        """Fail before any call if the base URL or the key is unusable."""
        validate_base_url(self.base_url)
        resolve_api_key(self.base_url, self.api_key)

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

    def shared_budget(self) -> SharedRateBudget | None:
        """One requests-per-second budget for all runs on this machine that call this API root."""
        if self.requests_per_second is None:
            return None
        digest = hashlib.sha256(self.base_url.encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"synctera-rate-budget-{digest}"
        return SharedRateBudget(path, self.requests_per_second)


class LakeResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The data directory (``SYNCTERA_DATA_DIR``): Parquet lake and ``warehouse.duckdb``."""

    data_dir: str

    @property
    def lake(self) -> Lake:
        return Lake(Path(self.data_dir))


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

"""A complete client for Synctera's External Accounts API (OpenAPI 0.153.0), sync and async.

Nothing here imports Dagster: the pipeline builds on this package, never the other way round.
"""

from .adaptive import AdaptiveLimit
from .auth import ApiKey
from .client import (
    DEFAULT_MAX_CONCURRENCY,
    AccountFilters,
    AsyncSyncteraClient,
    PageCursor,
    SyncteraClient,
    validate_base_url,
)
from .errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InvalidResponseError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SyncteraError,
    TransportError,
    UnprocessableEntityError,
)
from .exchange import last_call_attempts
from .limits import Budget, RateBudget, SharedRateBudget
from .operations import MAX_PAGE_SIZE, TRANSACTIONS_CAP, Operation
from .retry import RetryPolicy
from .stats import StatsSnapshot

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "MAX_PAGE_SIZE",
    "TRANSACTIONS_CAP",
    "AccountFilters",
    "AdaptiveLimit",
    "ApiError",
    "ApiKey",
    "AsyncSyncteraClient",
    "AuthenticationError",
    "BadRequestError",
    "Budget",
    "ConflictError",
    "InvalidResponseError",
    "NotFoundError",
    "Operation",
    "PageCursor",
    "PaginationError",
    "PermissionDeniedError",
    "RateBudget",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "SharedRateBudget",
    "StatsSnapshot",
    "SyncteraClient",
    "SyncteraError",
    "TransportError",
    "UnprocessableEntityError",
    "last_call_attempts",
    "validate_base_url",
]

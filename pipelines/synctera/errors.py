"""The client's exceptions: each names the call (method, path) and what went wrong, never a secret."""

from __future__ import annotations

from .models import Problem


class SyncteraError(Exception):
    """Base of every error raised by the Synctera client."""


class ApiError(SyncteraError):
    """The API answered with a non-2xx status.

    ``problem`` is the parsed ``application/problem+json`` body when there was one; ``attempts`` is how
    many times the request was sent (more than one when retryable failures were retried).
    """

    def __init__(
        self,
        *,
        method: str,
        path: str,
        status: int,
        problem: Problem | None,
        attempts: int = 1,
        body_excerpt: str | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.problem = problem
        self.attempts = attempts
        self.body_excerpt = body_excerpt
        super().__init__(self._message())

    @property
    def type(self) -> str | None:
        return self.problem.type if self.problem else None

    @property
    def title(self) -> str | None:
        return self.problem.title if self.problem else None

    @property
    def detail(self) -> str | None:
        return self.problem.detail if self.problem else None

    @property
    def code(self) -> str | None:
        return self.problem.code if self.problem else None

    def _message(self) -> str:
        parts = [f"{self.method} {self.path} -> {self.status}"]
        if self.title:
            parts.append(self.title)
        if self.code:
            parts.append(f"[{self.code}]")
        if self.detail:
            parts.append(f"- {self.detail}")
        if self.problem is None and self.body_excerpt:
            parts.append(f"- non-problem body: {self.body_excerpt!r}")
        if self.attempts > 1:
            parts.append(f"(after {self.attempts} attempts)")
        return " ".join(parts)


class BadRequestError(ApiError):
    """400: the request was malformed (bad body, bad query parameter, missing max_age, ...)."""


class AuthenticationError(ApiError):
    """401: the API key is missing or invalid."""


class PermissionDeniedError(ApiError):
    """403: the API key may not do this."""


class NotFoundError(ApiError):
    """404: no such external account."""


class ConflictError(ApiError):
    """409: the resource already exists or is in a conflicting state."""


class UnprocessableEntityError(ApiError):
    """422: well-formed but refused (wrong status, idempotency key reused with another payload, ...)."""


class RateLimitError(ApiError):
    """429: too many requests, still refused after the allowed retries."""


class ServerError(ApiError):
    """5xx: Synctera or its vendor failed, still failing after the allowed retries."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def api_error_class(status: int) -> type[ApiError]:
    """The most specific exception class for an HTTP status."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, ApiError)


class TransportError(SyncteraError):
    """The request never got a complete answer (connection refused or reset, timeout), after retries."""

    def __init__(self, *, method: str, path: str, reason: str, attempts: int) -> None:
        self.method = method
        self.path = path
        self.reason = reason
        self.attempts = attempts
        super().__init__(f"{method} {path} failed: {reason} (after {attempts} attempts)")


class InvalidResponseError(SyncteraError):
    """A 2xx answer that does not match the API's schema: not JSON, wrong content type, wrong types."""

    def __init__(self, *, method: str, path: str, status: int, reason: str, attempts: int = 1) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.attempts = attempts
        super().__init__(f"{method} {path} -> {status} with an invalid body: {reason}")

    def __str__(self) -> str:
        suffix = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"{self.method} {self.path} -> {self.status} with an invalid body: {self.reason}{suffix}"


class PaginationError(SyncteraError):
    """Paging went wrong: a page token came back that was already followed (a cycle), or was empty."""

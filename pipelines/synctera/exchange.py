"""One API call as a transport-free conversation: send, maybe wait and resend, then parse or raise.

``exchange`` is a generator that yields ``Send`` and ``Wait`` steps and is told each response (or has
the transport failure thrown into it). The sync and async clients drive the same generator, each with
its own I/O, so the retry policy, error mapping and response parsing exist once.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Generator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import httpx
import pydantic

from . import errors, models
from .adaptive import CONGESTION_STATUSES
from .operations import Operation
from .retry import RetryPolicy, is_retryable_status, is_retryable_transport_error, retry_hint
from .stats import CallStats

log = logging.getLogger("pipelines.synctera")

T = TypeVar("T", bound=models.ApiRecord)

BODY_EXCERPT_CHARS = 200

_last_attempts: ContextVar[int] = ContextVar("synctera_last_attempts", default=0)


def last_call_attempts() -> int:
    """How many sends the last call completed in this thread or task needed (1 when not retried)."""
    return _last_attempts.get()


TRUNCATED = "synctera_truncated_at"
UNDECODABLE = "synctera_undecodable"


class BodyBuffer:
    """Collects a streamed body up to ``limit`` bytes, so a huge answer cannot exhaust memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False
        self.undecodable: str | None = None

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; False once the limit is passed (stop reading)."""
        self.size += len(chunk)
        if self.size > self.limit:
            self.truncated = True
            return False
        self.chunks.append(chunk)
        return True

    def response(self, streamed: httpx.Response) -> httpx.Response:
        """A complete response with the collected body (marked when it was cut short)."""
        headers = [
            (k, v)
            for k, v in streamed.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length")
        ]
        return httpx.Response(
            streamed.status_code,
            headers=headers,
            content=b"".join(self.chunks),
            request=streamed.request,
            extensions={
                **({TRUNCATED: self.limit} if self.truncated else {}),
                **({UNDECODABLE: self.undecodable} if self.undecodable else {}),
            },
        )


@dataclass(frozen=True)
class Send:
    request: httpx.Request
    operation: str  # operationId: the concurrency limit keeps latency per operation


@dataclass(frozen=True)
class Wait:
    seconds: float


Step = Send | Wait
Conversation = Generator[Step, httpx.Response | None, T]


@dataclass(frozen=True)
class CallContext:
    """What every call of one client shares: policy, randomness for jitter, counters, secret scrubbing."""

    policy: RetryPolicy
    rng: random.Random
    stats: CallStats
    redact: Callable[[str], str]


def exchange(op: Operation[T], request: httpx.Request, ctx: CallContext) -> Conversation[T]:
    """Send ``request`` until it succeeds or fails for good, and return the parsed 2xx body."""
    target = _target(request)
    ctx.stats.count("calls", op.operation_id)
    attempt = 0
    while True:
        attempt += 1
        ctx.stats.count("requests", op.operation_id)
        try:
            response = yield Send(request, op.operation_id)
        except httpx.TransportError as exc:
            ctx.stats.answered()
            reason = ctx.redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            if not is_retryable_transport_error(exc) or attempt >= ctx.policy.max_attempts:
                ctx.stats.count("failures", op.operation_id)
                # No chained cause: the reason above is the redacted text of it.
                raise errors.TransportError(
                    method=op.method, path=target, reason=reason, attempts=attempt
                ) from None
            delay = ctx.policy.delay(attempt=attempt, hint=None, rng=ctx.rng)
            _note_retry(op, target, reason, attempt, delay, ctx)
            yield Wait(delay)
            continue
        assert response is not None
        ctx.stats.answered()
        if response.status_code in CONGESTION_STATUSES:
            ctx.stats.count("throttled", op.operation_id)
        if response.is_success:
            try:
                result = _parse(op, target, response, ctx)
            except errors.InvalidResponseError as exc:
                # A broken body on a read may be a passing proxy fault: read again. Writes are not
                # resent on a 2xx, since the server has acted.
                if op.method == "GET" and attempt < ctx.policy.max_attempts:
                    delay = ctx.policy.delay(attempt=attempt, hint=None, rng=ctx.rng)
                    _note_retry(op, target, f"an invalid body ({exc.reason})", attempt, delay, ctx)
                    yield Wait(delay)
                    continue
                ctx.stats.count("failures", op.operation_id)
                exc.attempts = attempt
                raise
            _last_attempts.set(attempt)
            return result
        problem, excerpt = _problem(response, ctx)
        status = response.status_code
        if (
            is_retryable_status(status, problem.code if problem else None)
            and attempt < ctx.policy.max_attempts
        ):
            hint = retry_hint(response, (problem.model_extra or {}).get("retry_after") if problem else None)
            delay = ctx.policy.delay(attempt=attempt, hint=hint, rng=ctx.rng)
            _note_retry(op, target, f"HTTP {status}", attempt, delay, ctx)
            yield Wait(delay)
            continue
        ctx.stats.count("failures", op.operation_id)
        raise errors.api_error_class(status)(
            method=op.method,
            path=target,
            status=status,
            problem=problem,
            attempts=attempt,
            body_excerpt=excerpt,
        )


def _target(request: httpx.Request) -> str:
    """Path and query of the request: what a person needs to find the call, and never a credential."""
    return request.url.raw_path.decode("ascii", errors="replace")


def _note_retry(
    op: Operation[T], target: str, reason: str, attempt: int, delay: float, ctx: CallContext
) -> None:
    """Count the retry and say why, before waiting ``delay`` seconds."""
    ctx.stats.count("retries", op.operation_id)
    log.warning(
        "Retrying %s %s after %s (attempt %d of %d) in %.2fs",
        op.method,
        target,
        reason,
        attempt,
        ctx.policy.max_attempts,
        delay,
    )


def _is_json(response: httpx.Response) -> bool:
    media_type: str = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _parse(op: Operation[T], target: str, response: httpx.Response, ctx: CallContext) -> T:
    def invalid(reason: str) -> errors.InvalidResponseError:
        return errors.InvalidResponseError(
            method=op.method, path=target, status=response.status_code, reason=ctx.redact(reason)
        )

    if UNDECODABLE in response.extensions:
        raise invalid(f"the body could not be decoded: {response.extensions[UNDECODABLE]}")
    if TRUNCATED in response.extensions:
        raise invalid(f"the body is larger than {response.extensions[TRUNCATED]} bytes")
    if not _is_json(response):
        content_type = response.headers.get("content-type", "none")
        raise invalid(f"expected a JSON body, got content type {content_type!r}")
    try:
        if op.decode is not None:
            return op.decode(response.content)
        return op.response.model_validate_json(response.content)
    except pydantic.ValidationError as exc:
        raise invalid(describe_validation_error(exc)) from None


def describe_validation_error(exc: pydantic.ValidationError, *, limit: int = 5) -> str:
    """``transactions.3.amount: Input should be a valid integer`` for the first few problems.

    Input values are left out on purpose: they may be customer data.
    """
    problems = [
        f"{'.'.join(str(p) for p in err['loc']) or '<body>'}: {err['msg']}" for err in exc.errors()[:limit]
    ]
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def _problem(response: httpx.Response, ctx: CallContext) -> tuple[models.Problem | None, str | None]:
    """The problem+json body if there is one; otherwise a short, scrubbed excerpt for the error text."""
    text = ctx.redact(response.text)
    if _is_json(response):
        try:
            return models.Problem.model_validate_json(text), None
        except pydantic.ValidationError:
            pass
    excerpt = " ".join(text.split())[:BODY_EXCERPT_CHARS]
    return None, excerpt or None

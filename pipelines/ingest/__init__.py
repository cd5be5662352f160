"""A run of each asset, without Dagster: take the listing, observe balances, fetch transactions.

Each function owns its whole run (client calls, lake writes, the publish step that refreshes the
views) and returns a frozen summary; the Dagster assets only turn summaries into metadata and checks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from pipelines.memory import arrow_without_pandas, heap_frozen
from pipelines.synctera import AsyncSyncteraClient

# Imported by the runs only (the assets import their ingest module when they run): before their
# first Arrow conversion, which would import pandas into every run process for nothing.
arrow_without_pandas()

T = TypeVar("T")

ClientFactory = Callable[[], AsyncSyncteraClient]
"""Makes a new client for one run (the caller holds the base URL and the key)."""

Emit = Callable[[str], None]
"""Where a run tells what it does (Dagster's run log, or a logger)."""

Cancelled = Callable[[], bool]
"""Whether the run has been asked to stop (in Dagster: cancelled from the UI or the CLI)."""

CANCEL_CHECK_SECONDS = 1.0


class RunCancelled(RuntimeError):
    """The run was asked to stop while it fetched: it stopped, and wrote nothing."""


def run_cancellable(work: Coroutine[Any, Any, T], cancelled: Cancelled | None, *, what: str) -> T:
    """``asyncio.run(work)``, stopped within about a second of ``cancelled()`` turning true.

    Dagster defers a termination request until the step yields an event, and a fetch yields none
    for minutes; so the run asks, and stops its own requests (nothing is written while fetching).
    The objects alive before the fetch are left out of its garbage collections (``heap_frozen``).
    """
    with heap_frozen():
        return asyncio.run(work if cancelled is None else _guarded(work, cancelled, what))


async def _guarded(work: Coroutine[Any, Any, T], cancelled: Cancelled, what: str) -> T:
    """``work``, cancelled (and ``RunCancelled`` raised) within a second of ``cancelled()``."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=CANCEL_CHECK_SECONDS)
        if done:
            return task.result()
        if cancelled():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise RunCancelled(f"{what}: the run was cancelled while fetching; nothing was written")

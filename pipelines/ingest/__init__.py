"""A run of each asset, without Dagster: take the listing, observe balances, fetch transactions.

Each function owns its whole run (client calls, lake writes, the publish step that refreshes the
views) and returns a frozen summary; the Dagster assets only turn summaries into metadata and checks.
"""

from __future__ import annotations

from collections.abc import Callable

from pipelines.synctera import AsyncSyncteraClient

ClientFactory = Callable[[], AsyncSyncteraClient]
"""Makes a new client for one run (the caller holds the base URL and the key)."""

Emit = Callable[[str], None]
"""Where a run tells what it does (Dagster's run log, or a logger)."""

"""The Dagster code location loaded by ``workspace.yaml``.

The ingestion assets, checks and schedules are wired here; until they land, the location is empty
but loadable, so ``dagster dev`` works on a fresh clone.
"""

import dagster as dg

defs = dg.Definitions()

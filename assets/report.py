"""``report``: the warehouse's figures, rendered after each run and shown on the asset's page."""

import dagster as dg

from assets.common import GROUP, Stopwatch
from assets.resources import LakeResource


def build_report(*upstream: dg.AssetsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name="report",
        deps=list(upstream),
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        kinds={"html"},
        description="Pictures of what the warehouse holds: daily transactions and net flow, balances over "
        "time, completeness by account and day, and what each run asked of the API. Written to "
        "<data dir>/report/report.html (make report renders the same page without a run).",
    )
    def report_asset(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
        # Imported in the run: matplotlib would cost every process that loads the definitions
        # (code servers, daemon, webserver) about 30 MiB and half a second, for one step's use.
        from pipelines import report

        clock = Stopwatch()
        store = lake.lake
        root = store.root
        pictures = report.pictures(store)
        page = report.write(pictures, root / "report", data_dir=root)
        context.log.info(f"report: {page}")
        return dg.MaterializeResult(
            metadata={
                "page": dg.MetadataValue.path(str(page)),
                "figures": dg.MetadataValue.md(report.markdown(pictures)),
                **clock.metadata(),
            }
        )

    return report_asset

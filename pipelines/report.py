"""The report: what the warehouse holds, as pictures people would rather look at than read.

``python -m pipelines.report`` (``make report``) renders ``report.html`` and one PNG per figure into
``<data dir>/report/``; the ``report`` asset renders the same figures after each run. Every figure
comes from one of the analysts' example queries (``pipelines/queries/*.sql``), so what the picture
shows is what an analyst gets by running the query.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime as dt
import html
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import matplotlib as mpl
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pipelines import warehouse
from pipelines.lake import Lake, lake_from_env

HEATMAP_ACCOUNTS = 60
HEATMAP_DAYS = 120
BALANCE_LINES = 12
STATUSES = ("not fetched", "proven complete", "flagged at the cap")
COLOURS = ("#e5e7eb", "#16a34a", "#dc2626")
STATUS_COLOURS = ListedColormap(COLOURS)

STYLE: dict[str, Any] = {"figure.dpi": 100, "axes.spines.top": False, "axes.spines.right": False}


def columns(
    connection: duckdb.DuckDBPyConnection,
    name: str,
    select: str = "SELECT * FROM q",
    params: list[Any] | None = None,
) -> dict[str, list[Any]]:
    """``select`` over the example query ``name`` (as ``q``), column by column. Figures aggregate in
    SQL and fetch what they draw: a year of a large book is a million account-days, which a data
    frame would hold whole (and pandas alone costs the run's largest step ~40 MiB)."""
    result = connection.execute(f"WITH q AS ({warehouse.query(name)}) {select}", params or [])
    names = [d[0] for d in result.description]
    rows = result.fetchall()
    return {column: [row[i] for row in rows] for i, column in enumerate(names)}


@dataclass(frozen=True)
class Picture:
    name: str
    title: str
    caption: str
    png: bytes


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _empty(figure: Figure, message: str) -> None:
    axes = figure.subplots()
    axes.axis("off")
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="#6b7280")


def daily_flow(connection: duckdb.DuckDBPyConnection) -> Picture:
    counts = columns(
        connection, "daily_flow", "SELECT date, sum(transactions) AS n FROM q GROUP BY date ORDER BY date"
    )
    figure = Figure(figsize=(10, 4))
    if not counts["date"]:
        _empty(figure, "no transactions yet")
    else:
        axes = figure.subplots()
        axes.bar(counts["date"], counts["n"], color="#93c5fd", label="transactions")
        axes.set_ylabel("transactions per day")
        flow = figure.axes[0].twinx()
        data = columns(
            connection,
            "daily_flow",
            "SELECT currency, date, net_flow FROM q ORDER BY currency NULLS LAST, date",
        )
        for currency in dict.fromkeys(data["currency"]):
            picked = [i for i, c in enumerate(data["currency"]) if c == currency]
            flow.plot(
                [data["date"][i] for i in picked],
                [data["net_flow"][i] for i in picked],
                marker=".",
                label=f"net flow ({currency or 'no currency'})",
            )
        flow.axhline(0, color="#6b7280", linewidth=0.8)
        flow.set_ylabel("net flow (major units)")
        flow.legend(loc="upper left", fontsize=8)
        figure.autofmt_xdate()
    return Picture(
        "daily_flow",
        "Daily transactions and net flow",
        "Posted transactions per day (bars) and money in minus money out (lines, per currency).",
        _png(figure),
    )


def balance_history(connection: duckdb.DuckDBPyConnection) -> Picture:
    shape = columns(
        connection,
        "balance_history",
        "SELECT count(DISTINCT account_id) AS accounts, count(DISTINCT observed_on) AS days, "
        "min(observed_on) AS first_day FROM q",
    )
    accounts, days, first_day = shape["accounts"][0], shape["days"][0], shape["first_day"][0]
    figure = Figure(figsize=(10, 4))
    if not accounts:
        _empty(figure, "no balance observed yet")
        caption = "No error-free balance observation yet."
    elif days == 1:
        # One day of observations is no history yet: the balances themselves, largest first.
        top = columns(
            connection,
            "balance_history",
            'SELECT account_id, arg_max("current", observed_at) AS latest FROM q GROUP BY account_id '
            "ORDER BY abs(latest) DESC, account_id LIMIT ?",
            [BALANCE_LINES],
        )
        axes = figure.subplots()
        axes.barh([str(a)[:8] for a in top["account_id"]][::-1], top["latest"][::-1], color="#60a5fa")
        axes.set_xlabel("current balance (major units)")
        caption = (
            f"Current balance of the {len(top['account_id'])} largest of {accounts} accounts, observed on "
            f"{first_day}; each daily run adds a point to their history."
        )
    else:
        axes = figure.subplots()
        data = columns(
            connection,
            "balance_history",
            'SELECT account_id, observed_on, "current", largest FROM q JOIN ('
            '  SELECT account_id, max(abs("current")) AS largest FROM q GROUP BY account_id'
            "  ORDER BY largest DESC, account_id LIMIT ?"
            ") USING (account_id) ORDER BY largest DESC, account_id, observed_at",
            [BALANCE_LINES],
        )
        lines = list(dict.fromkeys(data["account_id"]))
        for account_id in lines:
            picked = [i for i, a in enumerate(data["account_id"]) if a == account_id]
            axes.plot(
                [data["observed_on"][i] for i in picked],
                [data["current"][i] for i in picked],
                marker="o",
                label=str(account_id)[:8],
            )
        axes.set_ylabel("current balance (major units)")
        axes.legend(fontsize=7, ncol=2, loc="upper left")
        figure.autofmt_xdate()
        caption = f"Current balance at each observation, for the {len(lines)} largest of {accounts} accounts."
    return Picture("balance_history", "Balances over time", caption, _png(figure))


def completeness(connection: duckdb.DuckDBPyConnection) -> Picture:
    span = columns(
        connection,
        "completeness",
        "SELECT min(day) AS first, max(day) AS last, count(DISTINCT account_id) AS accounts FROM q",
    )
    figure = Figure(figsize=(10, 5))
    caption = (
        "Each account-day: proven complete (green), flagged at the 500-row cap (red), not fetched (grey)."
    )
    if not span["accounts"][0]:
        _empty(figure, "no transactions fetched yet")
        return Picture("completeness", "Completeness", caption, _png(figure))
    last, total = span["last"][0], span["accounts"][0]
    first = max(span["first"][0], last - dt.timedelta(days=HEATMAP_DAYS - 1))
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    # The accounts with the most flagged days, then the most fetched, and only their days shown.
    shown = columns(
        connection,
        "completeness",
        "SELECT account_id, day, status FROM q JOIN ("
        "  SELECT account_id, count(*) FILTER (status = 'flagged') AS flagged, count(*) AS fetched FROM q"
        "  GROUP BY account_id ORDER BY flagged DESC, fetched DESC, account_id LIMIT ?"
        ") USING (account_id) WHERE day >= ? ORDER BY flagged DESC, fetched DESC, account_id, day",
        [HEATMAP_ACCOUNTS, first],
    )
    accounts = list(dict.fromkeys(shown["account_id"]))
    grid = np.zeros((len(accounts), len(days)), dtype=np.int8)
    row = {a: i for i, a in enumerate(accounts)}
    for account_id, day, status in zip(shown["account_id"], shown["day"], shown["status"], strict=True):
        grid[row[account_id], (day - first).days] = 2 if status == "flagged" else 1
    axes = figure.subplots()
    axes.imshow(grid, aspect="auto", cmap=STATUS_COLOURS, vmin=0, vmax=2, interpolation="nearest")
    ticks = list(range(0, len(days), max(1, len(days) // 10)))
    axes.set_xticks(ticks, [days[t].isoformat() for t in ticks], rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(accounts)), [a[:8] for a in accounts], fontsize=6)
    axes.set_xlabel("day")
    axes.set_ylabel("account")
    axes.legend(
        handles=[Patch(color=c, label=n) for c, n in zip(COLOURS, STATUSES, strict=True)],
        loc="upper center",
        bbox_to_anchor=(0.5, 1.08),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    if total > len(accounts):
        caption += f" {len(accounts)} of {total} accounts shown, those with flagged days first."
    return Picture("completeness", "Completeness by account and day", caption, _png(figure))


def runs(connection: duckdb.DuckDBPyConnection) -> Picture:
    data = columns(connection, "runs")
    figure = Figure(figsize=(10, 4))
    if not data["run_id"]:
        _empty(figure, "no run yet")
    else:
        axes = figure.subplots()
        labels = [f"{s:%m-%d %H:%M}\n{r[:8]}" for s, r in zip(data["started"], data["run_id"], strict=True)]
        x = np.arange(len(data["run_id"]))
        width = 0.27
        for offset, column, colour in (
            (-width, "transaction_calls", "#2563eb"),
            (0.0, "retries", "#f59e0b"),
            (width, "incomplete_account_days", "#dc2626"),
        ):
            bars = axes.bar(x + offset, data[column], width, label=column.replace("_", " "), color=colour)
            axes.bar_label(bars, fontsize=7)
        axes.set_xticks(x, labels, fontsize=7)
        axes.set_yscale("symlog")
        axes.set_ylim(0, max(1, *data["transaction_calls"]) * 3)
        axes.legend(fontsize=8)
    return Picture(
        "runs",
        "Runs",
        "Per run, as the ledger holds it (a re-fetched day keeps its latest run's windows): transaction "
        "calls, retries and account-days left incomplete (log scale).",
        _png(figure),
    )


FIGURES: tuple[Callable[[duckdb.DuckDBPyConnection], Picture], ...] = (
    daily_flow,
    balance_history,
    completeness,
    runs,
)


def pictures(lake: Lake) -> list[Picture]:
    def draw_all(config: dict[str, Any]) -> list[Picture]:
        # A context, not matplotlib's global settings: the code location imports this module.
        with warehouse.reading(lake, config) as connection, mpl.rc_context(STYLE):  # type: ignore[arg-type]
            return [draw(connection) for draw in FIGURES]

    return lake.read_bounded(draw_all)


def markdown(pictures: list[Picture]) -> str:
    """The figures as Markdown with inline images (Dagster's UI shows them as pictures)."""
    parts = []
    for picture in pictures:
        encoded = base64.b64encode(picture.png).decode()
        parts.append(
            f"### {picture.title}\n\n![{picture.name}](data:image/png;base64,{encoded})\n\n{picture.caption}"
        )
    return "\n\n".join(parts)


def write(drawn: list[Picture], out_dir: Path, *, data_dir: Path) -> Path:
    """``report.html`` and a PNG per figure in ``out_dir``; returns the HTML page's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for picture in drawn:
        (out_dir / f"{picture.name}.png").write_bytes(picture.png)
        sections.append(
            f"<section><h2>{html.escape(picture.title)}</h2>"
            f'<img src="{picture.name}.png" alt="{html.escape(picture.title)}">'
            f"<p>{html.escape(picture.caption)}</p></section>"
        )
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>Synctera external accounts — report</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1040px;margin:2em auto;color:#111827}"
        "img{max-width:100%}p{color:#4b5563}</style></head><body>"
        "<h1>Synctera external accounts</h1>"
        f"<p>Warehouse {html.escape(str(data_dir / warehouse.WAREHOUSE))}, "
        f"rendered {generated}.</p>" + "".join(sections) + "</body></html>"
    )
    target = out_dir / "report.html"
    target.write_text(page)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.report", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $SYNCTERA_DATA_DIR or data/")
    parser.add_argument("--out", type=Path, default=None, help="default: <data dir>/report")
    args = parser.parse_args(argv)
    lake = lake_from_env()
    lake = dataclasses.replace(lake, root=(args.data_dir or lake.root).resolve())
    data_dir = lake.root
    if lake.store is None and not (data_dir / warehouse.WAREHOUSE).exists():
        parser.error(f"no warehouse at {data_dir / warehouse.WAREHOUSE}: run `make run` first")
    target = write(pictures(lake), args.out or data_dir / "report", data_dir=data_dir)
    sys.stdout.write(f"report: {target}\n")


if __name__ == "__main__":
    main()

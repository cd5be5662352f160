"""The report: what the warehouse holds, as pictures people would rather look at than read.

``python -m pipelines.report`` (``make report``) renders ``report.html`` and one PNG per figure into
``<data dir>/report/``; the ``report`` asset renders the same figures after each run. Every figure
comes from one of the analysts' example queries (``pipelines/queries/*.sql``), so what the picture
shows is what an analyst gets by running the query.
"""

from __future__ import annotations

import argparse
import base64
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
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pipelines import warehouse
from pipelines.settings import data_dir_from_env

HEATMAP_ACCOUNTS = 60
HEATMAP_DAYS = 120
BALANCE_LINES = 12
STATUSES = ("not fetched", "proven complete", "flagged at the cap")
COLOURS = ("#e5e7eb", "#16a34a", "#dc2626")
STATUS_COLOURS = ListedColormap(COLOURS)

STYLE: dict[str, Any] = {"figure.dpi": 100, "axes.spines.top": False, "axes.spines.right": False}


def frame(connection: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
    return connection.execute(warehouse.query(name)).df()


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
    data = frame(connection, "daily_flow")
    figure = Figure(figsize=(10, 4))
    if data.empty:
        _empty(figure, "no transactions yet")
    else:
        axes = figure.subplots()
        counts = data.groupby("date")["transactions"].sum()
        axes.bar(counts.index, counts.to_numpy(), color="#93c5fd", label="transactions")
        axes.set_ylabel("transactions per day")
        flow = figure.axes[0].twinx()
        for currency, rows in data.groupby("currency", dropna=False):
            flow.plot(rows["date"], rows["net_flow"], marker=".", label=f"net flow ({currency})")
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
    data = frame(connection, "balance_history")
    figure = Figure(figsize=(10, 4))
    accounts = data["account_id"].nunique() if not data.empty else 0
    if data.empty:
        _empty(figure, "no balance observed yet")
        caption = "No error-free balance observation yet."
    elif data["observed_on"].nunique() == 1:
        # One day of observations is no history yet: the balances themselves, largest first.
        latest = data.sort_values("observed_at").groupby("account_id").last()
        top = latest.reindex(latest["current"].abs().sort_values(ascending=False).index)[:BALANCE_LINES]
        axes = figure.subplots()
        axes.barh([str(a)[:8] for a in top.index][::-1], top["current"].to_numpy()[::-1], color="#60a5fa")
        axes.set_xlabel("current balance (major units)")
        caption = (
            f"Current balance of the {len(top)} largest of {accounts} accounts, observed on "
            f"{data['observed_on'].iloc[0]}; each daily run adds a point to their history."
        )
    else:
        axes = figure.subplots()
        largest = data.groupby("account_id")["current"].apply(lambda s: s.abs().max()).nlargest(BALANCE_LINES)
        for account_id in largest.index:
            rows = data[data["account_id"] == account_id]
            axes.plot(rows["observed_on"], rows["current"], marker="o", label=str(account_id)[:8])
        axes.set_ylabel("current balance (major units)")
        axes.legend(fontsize=7, ncol=2, loc="upper left")
        figure.autofmt_xdate()
        caption = (
            f"Current balance at each observation, for the {len(largest)} largest of {accounts} accounts."
        )
    return Picture("balance_history", "Balances over time", caption, _png(figure))


def completeness(connection: duckdb.DuckDBPyConnection) -> Picture:
    data = frame(connection, "completeness")
    figure = Figure(figsize=(10, 5))
    caption = (
        "Each account-day: proven complete (green), flagged at the 500-row cap (red), not fetched (grey)."
    )
    if data.empty:
        _empty(figure, "no transactions fetched yet")
        return Picture("completeness", "Completeness", caption, _png(figure))
    data["day"] = pd.to_datetime(data["day"]).dt.date
    last = max(data["day"])
    first = max(min(data["day"]), last - dt.timedelta(days=HEATMAP_DAYS - 1))
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    flagged = data[data["status"] == "flagged"].groupby("account_id").size()
    fetched = data.groupby("account_id").size()
    order = sorted(fetched.index, key=lambda a: (-flagged.get(a, 0), -fetched[a], a))
    accounts = order[:HEATMAP_ACCOUNTS]
    grid = np.zeros((len(accounts), len(days)), dtype=np.int8)
    row = {a: i for i, a in enumerate(accounts)}
    column = {d: j for j, d in enumerate(days)}
    for account_id, day, status in data[["account_id", "day", "status"]].itertuples(index=False):
        if account_id in row and day in column:
            grid[row[account_id], column[day]] = 2 if status == "flagged" else 1
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
    if len(order) > len(accounts):
        caption += f" {len(accounts)} of {len(order)} accounts shown, those with flagged days first."
    return Picture("completeness", "Completeness by account and day", caption, _png(figure))


def runs(connection: duckdb.DuckDBPyConnection) -> Picture:
    data = frame(connection, "runs")
    figure = Figure(figsize=(10, 4))
    if data.empty:
        _empty(figure, "no run yet")
    else:
        axes = figure.subplots()
        labels = [f"{s:%m-%d %H:%M}\n{r[:8]}" for s, r in zip(data["started"], data["run_id"], strict=True)]
        x = np.arange(len(data))
        width = 0.27
        for offset, column, colour in (
            (-width, "transaction_calls", "#2563eb"),
            (0.0, "retries", "#f59e0b"),
            (width, "incomplete_account_days", "#dc2626"),
        ):
            bars = axes.bar(
                x + offset, data[column].to_numpy(), width, label=column.replace("_", " "), color=colour
            )
            axes.bar_label(bars, fontsize=7)
        axes.set_xticks(x, labels, fontsize=7)
        axes.set_yscale("symlog")
        axes.set_ylim(0, max(1, int(data["transaction_calls"].max())) * 3)
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


def pictures(data_dir: Path) -> list[Picture]:
    # A context, not matplotlib's global settings: the code location imports this module.
    with warehouse.reading(data_dir) as connection, mpl.rc_context(STYLE):  # type: ignore[arg-type]
        return [draw(connection) for draw in FIGURES]


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
    data_dir = (args.data_dir or data_dir_from_env()).resolve()
    if not (data_dir / warehouse.WAREHOUSE).exists():
        parser.error(f"no warehouse at {data_dir / warehouse.WAREHOUSE}: run `make run` first")
    target = write(pictures(data_dir), args.out or data_dir / "report", data_dir=data_dir)
    sys.stdout.write(f"report: {target}\n")


if __name__ == "__main__":
    main()

"""Progress on long work: a line every few seconds in the run log, which make run's bar reads."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import sys

from pipelines import progress
from pipelines.run import show_progress

from .conftest import Pipeline, utc_today

ONE_DAY = dt.timedelta(days=1)


def test_a_progress_line_tells_done_rows_calls_rate_and_eta_and_parses_back() -> None:
    counter = progress.Progress("transactions", 400)
    counter.advance(done=120, rows=52_000, calls=610)
    line = counter.line()
    assert line.startswith("progress transactions: 120/400 accounts (30%), 52,000 rows, 610 calls, ")
    assert "calls/s" in line and "ETA " in line
    found = progress.LINE.search(f"2026-12-02 - dagster - INFO - run - transactions - {line}")
    assert found is not None
    assert (found["what"], found["done"], found["total"], found["rows"], found["calls"]) == (
        "transactions",
        "120",
        "400",
        "52,000",
        "610",
    )


def test_progress_is_told_while_the_work_runs_and_once_at_its_end() -> None:
    lines: list[str] = []
    counter = progress.Progress("balances", 3)

    async def work() -> None:
        async with counter.reporting(lines.append, interval=0.01):
            for _ in range(3):
                await asyncio.sleep(0.03)
                counter.advance(done=1, calls=1)

    asyncio.run(work())
    assert len(lines) >= 3
    assert lines[-1].startswith("progress balances: 3/3 accounts (100%)")
    done = [int(progress.LINE.search(line)["done"]) for line in lines]  # type: ignore[index]
    assert done == sorted(done)


def test_a_long_run_logs_its_progress_in_the_dagster_run_log(pipeline: Pipeline) -> None:
    end = utc_today() - ONE_DAY
    result = pipeline.materialize(end - 29 * ONE_DAY, end, progress_seconds=0.02)
    assert result.success
    messages = [m for m in pipeline.last_run_log if "progress transactions:" in m]
    assert messages, "progress lines reach the run log"
    assert messages[-1].startswith(f"progress transactions: {len(pipeline.sandbox.accounts())}/")
    assert any("progress balances:" in m for m in pipeline.last_run_log)


def test_make_run_turns_progress_lines_into_a_bar_and_passes_the_rest_through(capsys) -> None:
    log = [
        "2026 - dagster - INFO - run - transactions - transactions 2026-11-01..2026-12-01 for 40 accounts\n",
        "2026 - dagster - INFO - run - transactions - progress transactions: 10/40 accounts (25%), "
        "1,200 rows, 33 calls, 12.0 calls/s, ETA 0:00:03, elapsed 0:00:01\n",
        "2026 - dagster - INFO - run - transactions - progress transactions: 40/40 accounts (100%), "
        "5,000 rows, 120 calls, 30.0 calls/s, elapsed 0:00:04\n",
    ]
    show_progress(io.StringIO("".join(log)), interactive=True)
    shown = capsys.readouterr()
    assert "for 40 accounts" in shown.out + shown.err
    assert "progress transactions:" not in shown.out, "progress lines become the bar"
    assert "40/40" in shown.err and "5,000 rows" in shown.err


PROGRESS = (
    "2026 - dagster - INFO - run - transactions - progress transactions: {done}/40 accounts ({share}%), "
    "{rows} rows, {calls} calls, 30.0 calls/s, elapsed 0:00:04\n"
)


def test_a_finished_phase_bar_is_drawn_no_more_as_later_lines_scroll(capsys) -> None:
    done = [
        PROGRESS.format(done=10, share=25, rows="1,200", calls=33),
        PROGRESS.format(done=40, share=100, rows="5,000", calls=120),
    ]
    show_progress(io.StringIO("".join(done)), interactive=True)
    alone = capsys.readouterr().err.count("40/40")
    later = [
        PROGRESS.format(done=40, share=100, rows="5,000", calls=120),  # the phase's closing line
        "2026 - dagster - INFO - run - balances - balances: 40 observed, 0 errors\n",
        "2026 - dagster - INFO - run - report - report: data/report/report.html\n",
    ]
    show_progress(io.StringIO("".join(done + later)), interactive=True)
    shown = capsys.readouterr()
    assert alone >= 1
    assert shown.err.count("40/40") == alone, "a closed bar is neither redrawn nor drawn again"
    assert "0 errors" in shown.out and "report.html" in shown.out


def test_a_next_shard_done_at_its_first_line_still_gets_its_bar(capsys) -> None:
    shards = [
        PROGRESS.format(done=40, share=100, rows="5,000", calls=120),
        PROGRESS.format(done=40, share=100, rows="5,000", calls=120),  # the first shard's closing line
        PROGRESS.format(done=40, share=100, rows="7,250", calls=131),  # the second shard, done at once
    ]
    show_progress(io.StringIO("".join(shards)), interactive=True)
    shown = capsys.readouterr().err
    assert "5,000 rows" in shown and "7,250 rows" in shown


def test_shards_side_by_side_keep_a_bar_each(capsys) -> None:
    def shard(step: str, done: int, rows: str) -> str:
        return (
            f"2026 - dagster - INFO - run - {step} - progress transactions: {done}/40 accounts "
            f"({done * 100 // 40}%), {rows} rows, {done} calls, 1.0 calls/s, elapsed 0:00:04\n"
        )

    log = [
        shard("transactions.shard_0_of_2", 10, "1,111"),
        shard("transactions.shard_1_of_2", 20, "2,222"),
        shard("transactions.shard_0_of_2", 40, "4,444"),  # shard 0 done: shard 1's bar stays
        shard("transactions.shard_1_of_2", 40, "8,888"),
    ]
    show_progress(io.StringIO("".join(log)), interactive=True)
    shown = capsys.readouterr().err
    assert "4,444 rows" in shown and "8,888 rows" in shown
    # Two bars open at once: tqdm draws the second a line below and moves the cursor back up.
    assert "\x1b[A" in shown, "shard 1 has a bar of its own, not shard 0's"


def test_off_a_terminal_progress_stays_plain_lines(capsys) -> None:
    log = [PROGRESS.format(done=10, share=25, rows="1,200", calls=33), "a later line\n"]
    show_progress(io.StringIO("".join(log)))  # pytest's captured streams are no terminal
    shown = capsys.readouterr()
    assert shown.out.splitlines() == [line.rstrip() for line in log]
    assert shown.err == "", "no bar, no carriage returns"


def test_make_run_into_a_file_keeps_the_progress_lines_even_with_stderr_on_a_terminal(
    capsys, monkeypatch
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # `make run > run.log` in a terminal
    log = [PROGRESS.format(done=10, share=25, rows="1,200", calls=33)]
    show_progress(io.StringIO("".join(log)))
    assert capsys.readouterr().out.splitlines() == [log[0].rstrip()]

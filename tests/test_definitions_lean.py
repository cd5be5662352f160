"""Loading the code location is cheap: every code server, the daemon's and the webserver's, loads it.

Arrow, DuckDB, NumPy, pandas and matplotlib are imported by the runs that use them, not by loading the
definitions (about 125 MiB of a process's memory, measured with ``python -m bench.paths``).
"""

import json
import subprocess
import sys
from pathlib import Path

from pipelines.settings import REPO_ROOT

HEAVY = ("pyarrow", "duckdb", "numpy", "pandas", "matplotlib")


def test_loading_the_definitions_imports_no_data_library() -> None:
    probe = (
        "import json, sys; import pipelines.definitions as d; "
        "assert d.defs.resolve_asset_graph().get_all_asset_keys(); "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", probe],
        cwd=REPO_ROOT,
        env={"SYNCTERA_BASE_URL": "http://127.0.0.1:1/v0", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_loading_the_definitions_says_nothing_to_the_operator() -> None:
    """Every process that loads the code (the CLI, a code server, the daemon, a run) would print
    Dagster's beta warning about ``backfill_policy`` once per asset: noise in every log."""
    done = subprocess.run(
        [sys.executable, "-c", "import pipelines.definitions as d; d.defs.resolve_asset_graph()"],
        cwd=REPO_ROOT,
        env={"SYNCTERA_BASE_URL": "http://127.0.0.1:1/v0", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stderr == ""


def test_a_run_turns_rows_into_arrow_and_parquet_without_pandas_yet_to_pandas_still_works(
    tmp_path: Path,
) -> None:
    """pyarrow imports pandas on its first list conversion only to ask whether the list is a pandas
    object (``pipelines.memory.arrow_without_pandas``): a run never pays that, a caller of
    ``to_pandas`` still gets pandas."""
    probe = """
import datetime as dt, json, sys
from pathlib import Path
import pipelines.ingest
from pipelines.lake import Lake
from pipelines.records import transactions_table
from pipelines.synctera.rows import decode_transaction_batch
body = b'{"transactions":[{"transaction_id":"t1","date":"2026-02-02","amount":-125,"category":["Food"]}]}'
rows = decode_transaction_batch(body).transactions
table = transactions_table("acc-1", rows, fetched_at=dt.datetime.now(dt.UTC), run_id="r")
lake = Lake(Path(sys.argv[1]))
lake.replace_partition("transactions", dt.date(2026, 2, 2), table)
read = lake.read_partition("transactions", dt.date(2026, 2, 2))
before = "pandas" in sys.modules
frame = read.to_pandas()
print(json.dumps([before, type(frame).__name__, int(frame["amount"][0])]))
"""
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", probe, str(tmp_path / "data")],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [False, "DataFrame", -125]


def test_a_process_that_loaded_the_definitions_exits_without_walking_its_heap_again() -> None:
    """CPython's last collections at exit walk everything Dagster loaded (0.3-0.5 s of CPU in every
    CLI run, run worker and code server); one collection runs instead, so garbage still in a reference
    cycle at exit is finalized as before, and then the heap is frozen. The handler runs after those
    registered later than the import (LIFO) and before those registered earlier."""
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0, flush=True))\n"
        "import pipelines.definitions\n"
        "class Writer:\n"
        "    def __del__(self): print('garbage finalized', flush=True)\n"
        "writer = Writer(); writer.cycle = writer; del writer\n"
        "gc.disable()  # only the exit handler may collect the cycle\n"
        "print('frozen before exit:', gc.get_freeze_count() > 0, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env={"SYNCTERA_BASE_URL": "http://127.0.0.1:1/v0", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == [
        "frozen before exit: False",
        "garbage finalized",
        "frozen at exit: True",
    ]

"""Loading the code location is cheap: every code server, the daemon's and the webserver's, loads it.

Arrow, DuckDB, NumPy, pandas and matplotlib are imported by the runs that use them, not by loading the
definitions (about 125 MiB of a process's memory, measured with ``python -m bench.paths``).
"""

import json
import subprocess
import sys

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

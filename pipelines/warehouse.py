"""The DuckDB warehouse: a file that holds only views over the lake, rebuilt atomically.

Views read the Parquet files through globs, so new partitions show up without touching the file.
When the views change, a new file is built beside the lake and renamed over the old one: ingestion
never opens the analysts' file for writing, so they may keep it open during a backfill.

View paths are relative to the directory that holds the data directory (the repository root by
default), so ``duckdb data/warehouse.duckdb`` works from there wherever the repository is cloned;
``connect()`` works from anywhere.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.lake import TABLES, Lake

WAREHOUSE = "warehouse.duckdb"

_DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.bool_(): "BOOLEAN",
    pa.date32(): "DATE",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
}


def _sql_type(arrow_type: pa.DataType) -> str:
    if arrow_type in _DUCKDB_TYPES:
        return _DUCKDB_TYPES[arrow_type]
    if pa.types.is_list(arrow_type):
        return f"{_sql_type(arrow_type.value_type)}[]"
    if pa.types.is_struct(arrow_type):
        fields = ", ".join(f'"{f.name}" {_sql_type(f.type)}' for f in arrow_type)
        return f"STRUCT({fields})"
    raise TypeError(f"no DuckDB type for {arrow_type}")


def _view_sql(lake: Lake, table: str) -> str:
    """The view over a table's files, or an empty view with the table's columns when it has none."""
    schema = TABLES[table]
    if lake.partitions(table):
        relative = Path(lake.glob(table)).relative_to(lake.root.parent)
        path = str(relative).replace("'", "''")
        # DDL cannot bind parameters: the table is a code constant and the path is quoted above.
        return f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}', hive_partitioning = true)"  # noqa: S608
    columns = ", ".join(f'CAST(NULL AS {_sql_type(f.type)}) AS "{f.name}"' for f in schema)
    return f"CREATE VIEW {table} AS SELECT {columns} WHERE false"


def refresh_views(lake: Lake) -> Path:
    """(Re)build ``warehouse.duckdb`` with one view per table, replacing the old file atomically.

    Under the warehouse lock, so that of concurrent refreshes the last to land saw the newest lake.
    """
    with lake.lock("warehouse"):
        return _rebuild(lake)


def _rebuild(lake: Lake) -> Path:
    staging = lake.staging_dir
    staging.mkdir(parents=True, exist_ok=True)
    temporary = staging / f"warehouse-{uuid.uuid4().hex}.duckdb"
    target = lake.root / WAREHOUSE
    try:
        connection = duckdb.connect(str(temporary), config={"file_search_path": str(lake.root.parent)})
        try:
            for table in TABLES:
                connection.execute(_view_sql(lake, table))
            connection.execute("CHECKPOINT")
        finally:
            connection.close()
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
        Path(f"{temporary}.wal").unlink(missing_ok=True)
    return target


def connect(data_dir: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the warehouse, for analysts and tests, from any directory."""
    return duckdb.connect(
        str(data_dir / WAREHOUSE), read_only=True, config={"file_search_path": str(data_dir.parent)}
    )

"""The DuckDB warehouse: a file that holds only views over the lake, rebuilt atomically.

Views read the Parquet files through globs, so new partitions show up without touching the file.
When the views change, a new file is built beside the lake and renamed over the old one: ingestion
never opens the analysts' file for writing, so they may keep it open during a backfill.

The views name the lake by its absolute path, so the file opens from any directory and in any
DuckDB client (the CLI, a notebook elsewhere, DBeaver). It is written in DuckDB's 1.0 storage
format, which every DuckDB since 1.0 reads: analysts' tools often lag the library the pipeline
runs. A moved data directory is made right by the next run, or at once by
``python -m pipelines.warehouse DATA_DIR``.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.lake import TABLES, Lake

WAREHOUSE = "warehouse.duckdb"
QUERIES = Path(__file__).with_name("queries")
"""The analysts' example queries; the report and the reconciliation build on them too."""
STORAGE_VERSION = "v1.0.0"
"""The oldest DuckDB that can open the warehouse: views need nothing newer."""

_GLOB_CHARACTERS = frozenset("*?[]{}")

_DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.bool_(): "BOOLEAN",
    pa.date32(): "DATE",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
}


class WarehousePathError(ValueError):
    """The data directory's path cannot be written into a view (DuckDB would read it as a glob)."""


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
        path = lake.glob(table).replace("'", "''")
        # DDL cannot bind parameters: the table is a code constant and the path is quoted above.
        return f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}', hive_partitioning = true)"  # noqa: S608
    columns = ", ".join(f'CAST(NULL AS {_sql_type(f.type)}) AS "{f.name}"' for f in schema)
    return f"CREATE VIEW {table} AS SELECT {columns} WHERE false"


def create_views(connection: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """One view per table of ``lake`` in ``connection`` (the warehouse file, or an in-memory check)."""
    for table in TABLES:
        connection.execute(_view_sql(lake, table))


@contextmanager
def publishing(lake: Lake, table: str) -> Iterator[None]:
    """Write ``table``'s partitions in the body, under its lock; then refresh the views once."""
    with lake.lock(table):
        yield
        refresh_views(lake)


def refresh_views(lake: Lake) -> Path:
    """(Re)build ``warehouse.duckdb`` with one view per table, replacing the old file atomically.

    Under the warehouse lock, so that of concurrent refreshes the last to land saw the newest lake.
    """
    lake = Lake(lake.root.resolve())
    if found := _GLOB_CHARACTERS & set(str(lake.root)):
        raise WarehousePathError(
            f"the data directory {lake.root} contains {''.join(sorted(found))!r}, which DuckDB reads as "
            "a glob: choose a SYNCTERA_DATA_DIR without them"
        )
    with lake.lock("warehouse"):
        return _rebuild(lake)


def _rebuild(lake: Lake) -> Path:
    staging = lake.staging_dir
    staging.mkdir(parents=True, exist_ok=True)
    temporary = staging / f"warehouse-{uuid.uuid4().hex}.duckdb"
    target = lake.root / WAREHOUSE
    try:
        connection = duckdb.connect(str(temporary), config={"storage_compatibility_version": STORAGE_VERSION})
        try:
            create_views(connection, lake)
            connection.execute("CHECKPOINT")
        finally:
            connection.close()
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
        Path(f"{temporary}.wal").unlink(missing_ok=True)
    return target


def query(name: str) -> str:
    """The text of ``pipelines/queries/<name>.sql``, without its closing semicolon (so that it nests)."""
    return (QUERIES / f"{name}.sql").read_text().strip().removesuffix(";")


def connect(data_dir: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the warehouse (any directory, any client opens the file the same way)."""
    return duckdb.connect(str(data_dir / WAREHOUSE), read_only=True)


@contextmanager
def reading(data_dir: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """``connect``, with no run replacing a partition until the connection is closed (see
    ``Lake.reading``): for the pipeline's own readers, which must not fail on a concurrent run."""
    with Lake(data_dir).reading(*TABLES):
        connection = connect(data_dir)
        try:
            yield connection
        finally:
            connection.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.warehouse",
        description="Rebuild warehouse.duckdb's views over the lake where it is now (after moving it).",
    )
    parser.add_argument("data_dir", type=Path, help="the data directory (holds warehouse.duckdb)")
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        parser.error(f"{args.data_dir} is not a directory")
    target = refresh_views(Lake(args.data_dir))
    sys.stdout.write(f"views rebuilt: {target}\n")


if __name__ == "__main__":
    main()

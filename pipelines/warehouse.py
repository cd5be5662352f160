"""The DuckDB warehouse: a file that holds only views over the lake, rebuilt atomically.

Views read the Parquet files through globs, so new partitions show up without touching the file.
When the views change, a new file is built beside the lake and renamed over the old one: ingestion
never opens the analysts' file for writing, so they may keep it open during a backfill.

The views name the lake by its absolute path, so the file opens from any directory and in any
DuckDB client (the CLI, a notebook elsewhere, DBeaver). It is written in DuckDB's 1.0 storage
format, which every DuckDB since 1.0 reads: analysts' tools often lag the library the pipeline
runs. A moved data directory is made right by the next run, or at once by
``python -m pipelines.warehouse DATA_DIR``.

A lake on an object store keeps its warehouse file in the local work directory, its views naming
``s3://`` URIs: ``connect`` reads them through s3fs, the DuckDB CLI through httpfs (see README), and
``python -m pipelines.warehouse s3://bucket/prefix --into DIR`` builds the file on an analyst's own
machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipelines.lake import TABLES, Lake
from pipelines.object_store import ObjectStore, is_object_store

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
    if lake.store is not None:
        lake.store.register(connection)  # a view is bound (its files' schema read) when created
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
    lake = dataclasses.replace(lake, root=lake.root.resolve())
    if lake.store is None and (found := _GLOB_CHARACTERS & set(str(lake.root))):
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


def connect(data_dir: Path, *, store: ObjectStore | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the warehouse (any directory, any client opens the file the same
    way); ``store`` when the lake is on an object store, to read its ``s3://`` files."""
    connection = duckdb.connect(str(data_dir / WAREHOUSE), read_only=True)
    if store is not None:
        store.register(connection)
    return connection


@contextmanager
def reading(lake: Lake, config: dict[str, Any] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """``connect``, with no run replacing a partition until the connection is closed (see
    ``Lake.reading``): for the pipeline's own readers, which must not fail on a concurrent run."""
    with lake.reading(*TABLES):
        # Views built now, in memory: with a store, this machine's file may be missing (it never
        # published) or older than the lake; and DuckDB refuses a second connection to one file in
        # a process with other settings (``config``) than a connection already open to it.
        connection = lake.duckdb(config)
        create_views(connection, lake)
        try:
            yield connection
        finally:
            connection.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.warehouse",
        description="Rebuild warehouse.duckdb's views over the lake where it is now (after moving it), "
        "or build one over a lake on an object store.",
    )
    parser.add_argument(
        "data_dir", help="the data directory (holds warehouse.duckdb), or the lake's s3://bucket/prefix"
    )
    parser.add_argument(
        "--into", type=Path, help="with an s3:// lake: the local directory to put warehouse.duckdb in"
    )
    args = parser.parse_args(argv)
    if is_object_store(args.data_dir):
        if args.into is None:
            parser.error("an s3:// lake needs --into DIR, where warehouse.duckdb is written")
        args.into.mkdir(parents=True, exist_ok=True)
        # The analyst's own file: no run writes it, so no lock (nor lock service) is needed.
        try:
            store = ObjectStore.parse(args.data_dir)
        except ValueError as error:
            parser.error(str(error))
        target = _rebuild(Lake(args.into.resolve(), store))
    elif not Path(args.data_dir).is_dir():
        parser.error(f"{args.data_dir} is not a directory")
    else:
        target = refresh_views(Lake(Path(args.data_dir)))
    sys.stdout.write(f"views rebuilt: {target}\n")


if __name__ == "__main__":
    main()

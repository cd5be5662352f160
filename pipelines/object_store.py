"""The lake's files on an object store: ``SYNCTERA_DATA_DIR=s3://bucket/prefix`` (AWS S3 or any
S3-compatible server), through s3fs, the fsspec filesystem DuckDB registers too.

What the lake's guarantees rest on: an object appears whole when its upload completes (one PUT, or
a multipart upload's completion) and a PUT over a key replaces it at once (S3 is strongly
consistent for reads after writes). So a partition is written to a local staging file first and
then uploaded over its key: a reader gets the old object or the new one; an upload cut short
leaves no object and the old one in place; staging is never in the bucket, so no view can see it.

Credentials and the endpoint come from the standard AWS settings (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``, profiles, instance roles), read
by botocore: they are never written into the lake, the views or the logs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

SCHEME = "s3://"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_URL = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB_CHARACTERS = frozenset("*?[]{}")


class ObjectStoreURLError(ValueError):
    """``SYNCTERA_DATA_DIR`` names an object store the lake cannot live in; the message says why."""


def is_object_store(location: str) -> bool:
    """Whether ``location`` is a URL rather than a directory (``S3://``, ``s3a://`` or ``gs://`` too:
    ``ObjectStore.parse`` refuses them, rather than a directory named ``S3:`` being made)."""
    return bool(_URL.match(location))


@dataclass(frozen=True)
class ObjectStore:
    """The lake's objects under ``s3://<bucket>/<prefix>``; keys are given relative to that."""

    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @classmethod
    def parse(cls, url: str) -> ObjectStore:
        if not url.startswith(SCHEME):
            scheme = url.strip().partition("://")[0]
            raise ObjectStoreURLError(
                f"{scheme}:// is not supported: the object store's URL is {SCHEME}bucket/prefix"
            )
        bucket, _, prefix = url.removeprefix(SCHEME).partition("/")
        if "@" in bucket:  # never echoed: the part before @ would be a credential
            raise ObjectStoreURLError(
                "credentials do not go in the URL: give them as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or a profile or role)"
            )
        prefix = prefix.strip("/")
        if not _BUCKET.fullmatch(bucket):
            raise ObjectStoreURLError(f"{url!r}: {bucket!r} is not an S3 bucket name")
        if found := _GLOB_CHARACTERS & set(prefix):
            raise ObjectStoreURLError(
                f"{url!r} contains {''.join(sorted(found))!r}, which DuckDB reads as a glob: choose a "
                "prefix without them"
            )
        return cls(bucket, prefix)

    @property
    def lake_id(self) -> str:
        """The lake's name for its locks, the same on every machine that names it so (no object to
        write first: a store that ignored a conditional write would give each machine its own)."""
        return hashlib.blake2b(self._path("").encode(), digest_size=16).hexdigest()

    @property
    def url(self) -> str:
        return f"{SCHEME}{self._path('')}".rstrip("/")

    def uri(self, key: str) -> str:
        """``key`` as DuckDB and analysts name it: ``s3://bucket/prefix/key`` (globs allowed)."""
        return SCHEME + self._path(key)

    @property
    def fs(self) -> Any:
        """s3fs's filesystem (fsspec caches one per process and settings). Without its listings
        cache: other machines write the lake, and a cached listing would miss their partitions and
        pin reads to replaced objects' old versions (which then fail)."""
        import s3fs  # type: ignore[import-untyped]  # imported only by processes whose lake is on an object store

        return s3fs.S3FileSystem(use_listings_cache=False)

    def register(self, connection: duckdb.DuckDBPyConnection) -> None:
        """Let ``connection`` read ``s3://`` paths through this filesystem (no DuckDB extension
        needed: httpfs is not always installable where analysts work)."""
        fs = self.fs
        if fs.protocol[0] not in connection.list_filesystems():  # DuckDB refuses a second registration
            connection.register_filesystem(fs)

    def upload(self, local: Path, key: str) -> None:
        """``local`` becomes the object ``key`` in one step: whole, replacing what was there."""
        self.fs.put_file(str(local), self._path(key))

    def download(self, key: str, local: Path) -> None:
        self.fs.get_file(self._path(key), str(local))

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def files(self, key: str) -> dict[str, dt.datetime]:
        """Every object under ``key/`` (or the whole prefix for ``""``) and when it was last written,
        in one paginated listing (folder markers left out)."""
        base = self._path("")
        found = self.fs.find(self._path(key).rstrip("/") + "/", detail=True)
        return {
            name.removeprefix(base): info["LastModified"]
            for name, info in found.items()
            if info.get("type") == "file" and not name.endswith("/")
        }

    def read_table(
        self, key: str, *, schema: pa.Schema | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(self._path(key), schema=schema, columns=columns, filesystem=self.fs)

    def num_rows(self, key: str) -> int:
        import pyarrow.parquet as pq

        with self.fs.open(self._path(key), "rb") as source:
            return int(pq.ParquetFile(source).metadata.num_rows)

    def remove(self, key: str) -> None:
        """The object ``key``, or every object under ``key/``; nothing if there is none."""
        try:
            self.fs.rm(self._path(key), recursive=True)
        except FileNotFoundError:
            pass

    def read_text(self, key: str) -> str:
        return bytes(self.fs.cat_file(self._path(key))).decode()

    def _path(self, key: str) -> str:
        return "/".join(part for part in (self.bucket, self.prefix) if part) + "/" + key

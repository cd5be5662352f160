"""The lake's locks: writers of a table one after the other, readers never during a publish, for every
process on one machine (``flock`` files, the default) or on several (PostgreSQL advisory locks).

Both die with their holder, so a killed run never leaves the lake locked: an ``flock`` with its
process, an advisory lock with its database session. ``SYNCTERA_LOCK_URL`` (a PostgreSQL URL, read
only from the environment: it may hold a password) switches every process to advisory locks; set it
alike on every machine that shares the lake, or they do not see each other's locks.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pipelines.object_store import ObjectStore

LOCK_URL_VARIABLE = "SYNCTERA_LOCK_URL"


class LockLostError(RuntimeError):
    """An exclusive lock this run holds is gone (its PostgreSQL session ended: a server restart, a
    network cut, an administrator): another run may hold it now, so nothing more is written."""


_HELD: ContextVar[tuple[Callable[[], None], ...]] = ContextVar("synctera_held_locks", default=())


def confirm_held() -> None:
    """Raise ``LockLostError`` if an exclusive lock held here is gone. Called right before each
    write that relies on one: a run that lost its lock mid-publish stops at the next partition,
    instead of replacing partitions alongside the run that took the lock next."""
    for confirm in _HELD.get():
        confirm()


@contextmanager
def _holding(confirm: Callable[[], None]) -> Iterator[None]:
    token = _HELD.set((*_HELD.get(), confirm))
    try:
        yield
    finally:
        _HELD.reset(token)


class Locks(Protocol):
    def exclusive(self, name: str) -> AbstractContextManager[None]: ...

    def shared(self, names: Sequence[str]) -> AbstractContextManager[None]: ...


class FileLocks:
    """``flock`` on files under ``directory``: every process of one machine (or of a file system
    whose locks span machines)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        descriptor = hold(self._file(name))
        try:
            yield
        finally:
            os.close(descriptor)

    @contextmanager
    def shared(self, names: Sequence[str]) -> Iterator[None]:
        descriptors = []
        try:
            for name in sorted(set(names)):  # one order for every reader
                descriptors.append(hold(self._file(name), shared=True))
            yield
        finally:
            for descriptor in descriptors:
                os.close(descriptor)

    def _file(self, name: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory / f"{name}.lock"


class PostgresLocks:
    """PostgreSQL session advisory locks, one per (lake, name): every machine that reaches the
    database. Each acquisition holds a connection of its own for as long as the lock."""

    def __init__(self, url: str, lake: str) -> None:
        self.url = url
        self.lake = lake  # locks of two lakes sharing a database never meet

    def key(self, name: str) -> int:
        """A signed 64-bit key for the lock ``name`` of this lake (advisory locks take a bigint)."""
        digest = hashlib.blake2b(f"synctera-lake\0{self.lake}\0{name}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        import psycopg2

        with self._session() as cursor:
            _wait_for(cursor, "SELECT pg_advisory_lock(%s)", self.key(name))

            def confirm() -> None:
                # A session lock lives as long as its session: a session that answers still holds it.
                try:
                    cursor.execute("SELECT 1")
                except psycopg2.Error as exc:
                    first = str(exc).strip().splitlines()[:1]
                    raise LockLostError(
                        f"the lake's {name!r} lock was lost with its PostgreSQL session ({first}): "
                        "nothing more is written; run again"
                    ) from None

            with _holding(confirm):
                yield

    @contextmanager
    def shared(self, names: Sequence[str]) -> Iterator[None]:
        with self._session() as cursor:
            for name in sorted(set(names)):  # one order for every reader
                _wait_for(cursor, "SELECT pg_advisory_lock_shared(%s)", self.key(name))
            yield

    @contextmanager
    def _session(self) -> Iterator[Any]:
        import psycopg2  # only where the locks are in PostgreSQL (it comes with dagster-postgres)

        try:
            connection = psycopg2.connect(
                self.url,
                connect_timeout=10,
                application_name="synctera-lake-lock",
                # A holder that vanishes (its machine, the network) lets go within about a minute,
                # not the system's two hours; the client notices a server gone the same way.
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
                options="-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3",
            )
        except psycopg2.OperationalError as exc:
            # libpq's connection errors name the host and port, never the password.
            first = str(exc).strip().splitlines()[:1]
            raise LockServiceError(
                f"the lake's locks: cannot reach {LOCK_URL_VARIABLE}'s database ({first})"
            ) from None
        except psycopg2.Error as exc:
            # A URL that does not parse is quoted back by libpq, password and all: its kind only.
            raise LockServiceError(
                f"the lake's locks: {LOCK_URL_VARIABLE} is not a valid URL ({type(exc).__name__})"
            ) from None
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                yield cursor
        finally:
            connection.close()  # ends the session: its locks go with it


WAIT_SLICE = "1s"
"""How long one lock request waits in the server before control comes back to Python."""


def _wait_for(cursor: Any, statement: str, key: int) -> None:
    """``statement`` (a blocking advisory-lock request), waited for in slices of ``WAIT_SLICE``.

    libpq blocks in C while the server waits, and Python runs signal handlers only between
    bytecodes: a run terminated from Dagster's UI (SIGTERM, raised as an interrupt in the run) or a
    Ctrl-C would wait for the lock first, however long another run holds it. ``lock_timeout`` ends
    each wait in the server after a slice, and the request is made again, with no client sleep."""
    from psycopg2 import errors

    cursor.execute("SET lock_timeout = %s", [WAIT_SLICE])
    while True:
        try:
            cursor.execute(statement, [key])
        except errors.LockNotAvailable:
            continue  # a slice has passed: a pending signal's handler runs here
        cursor.execute("SET lock_timeout = 0")  # this session's later statements never time out
        return


class LockServiceError(RuntimeError):
    """The lock service named by ``SYNCTERA_LOCK_URL`` cannot be reached."""


def locks_for(root: Path, env: Mapping[str, str] | None = None, *, store: ObjectStore | None = None) -> Locks:
    """The locks of the lake at ``root`` (or in ``store``): PostgreSQL's when ``SYNCTERA_LOCK_URL`` is
    set, else files. A lake on an object store is shared by every machine that can reach it, which
    files cannot lock: it needs ``SYNCTERA_LOCK_URL``."""
    env = os.environ if env is None else env
    url = env.get(LOCK_URL_VARIABLE)
    if store is not None:
        if not url:
            raise LockServiceError(
                f"the lake at {store.url} is on an object store, which every machine shares: set "
                f"{LOCK_URL_VARIABLE} (a postgresql:// URL) so that their writers see each other's locks"
            )
        return PostgresLocks(_checked(url), store.lake_id)
    marker = root / POSTGRES_MARKER
    if url:
        locks = PostgresLocks(_checked(url), lake_id(root))
        marker.touch()  # from now on a process that would lock this lake with files is refused
        return locks
    if marker.exists():
        # Its flock would not exclude the writers holding PostgreSQL locks: no lock at all.
        raise LockServiceError(
            f"the lake at {root} is locked through PostgreSQL ({marker} exists): set {LOCK_URL_VARIABLE} "
            "as its other processes do"
        )
    return FileLocks(root / ".locks")


def _checked(url: str) -> str:
    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"{LOCK_URL_VARIABLE} must be a postgresql:// URL")
    return url


def hold(path: Path, *, shared: bool = False) -> int:
    """Create ``path`` and hold an exclusive (or shared) ``flock`` on it until the descriptor is closed."""
    descriptor = os.open(path, (os.O_RDONLY if shared else os.O_RDWR) | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


LAKE_ID = ".lake-id"
POSTGRES_MARKER = ".locks-in-postgresql"
"""In a lake whose locks some process took in PostgreSQL: every process must then."""


def lake_id(root: Path) -> str:
    """The lake's own name, the same on every machine whatever path it is mounted at: a random id
    written once into the lake (atomically: the first writer's wins)."""
    target = root / LAKE_ID
    if not target.exists():
        root.mkdir(parents=True, exist_ok=True)
        pending = root / f"{LAKE_ID}.{uuid.uuid4().hex}"
        pending.write_text(uuid.uuid4().hex)
        try:
            os.link(pending, target)  # fails if another process's id got there first
        except FileExistsError:
            pass
        finally:
            pending.unlink()
    return target.read_text().strip()

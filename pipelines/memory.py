"""Giving memory back between the phases of a run, so that each phase starts from a low mark.

Fetching frees millions of small Python objects (rows as dicts); CPython and glibc keep the freed
blocks for reuse, so the heap stays at its high-water mark, and the write phase then allocates its
Arrow buffers from another allocator on top of it. glibc's ``malloc_trim`` hands the free pages back
(Dask's workers do the same to fight the same "unmanaged memory"); Arrow's pool releases what it
caches. Elsewhere than glibc (macOS, musl) there is no ``malloc_trim``; Arrow's pool is still released.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType

import pyarrow as pa


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int  # int malloc_trim(size_t pad)
    function: Callable[[int], int] = trim
    return function


_TRIM = _malloc_trim()


def release_free_memory(*, collect: bool = True, trim: bool = True) -> None:
    """Return memory already freed to the operating system; ``collect`` first runs the garbage
    collector (tens of milliseconds with Dagster loaded: once per phase, not per block); ``trim``
    hands back the C heap (its pages fault in again when reused: once per phase, not per block),
    and Arrow's pool is always released (cheap)."""
    if collect:
        gc.collect()
    if trim and _TRIM is not None:
        _TRIM(0)
    pa.default_memory_pool().release_unused()


@contextmanager
def heap_frozen() -> Iterator[None]:
    """Leave the objects alive now out of the garbage collector's passes until the block ends.

    A fetch allocates hundreds of thousands of objects, which now and then set off a full collection;
    each walks every object of the process, Dagster's included (about 0.2 s with Dagster loaded, three
    times in the S benchmark's fetch). Frozen, the objects that were there before are skipped; any of
    them that became garbage meanwhile is collected once they are back (``gc.unfreeze``).
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] == "pandas":
            raise ImportError("pandas: not needed to turn rows into Arrow (pipelines.memory)")
        return None


def arrow_without_pandas() -> None:
    """Keep pyarrow from importing pandas (about 32 MiB of a run's peak, measured in
    ``bench.pipeline_bench``) in a process that never hands it pandas objects.

    The first time pyarrow converts a Python list, it imports pandas only to ask whether the list is
    a pandas object, and it asks once per process; here that one try finds no pandas. What asks
    pyarrow for pandas by name (``to_pandas``, ``Table.from_pandas``) still gets it: pyarrow imports
    it again then. Until then, a pandas Series given to ``pa.array`` is read as a plain sequence.
    Nothing is done where pandas is already imported.
    """
    if "pandas" in sys.modules:
        return
    blocker = _NoPandas()
    sys.meta_path.insert(0, blocker)
    try:
        pa.array([0])  # pyarrow's one try
    finally:
        sys.meta_path.remove(blocker)

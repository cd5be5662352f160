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
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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

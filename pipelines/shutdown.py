"""Ending a process that loaded Dagster without the garbage collector's last passes over it.

At exit CPython runs full collections while it tears the modules down, and each walks every object
still alive: with Dagster and this code location loaded that is about 0.3 s of CPU in a process that
only imported them, 0.6 s after a small run. Every process that loads the code location pays it:
the CLI, each run worker, each code server. Frozen at exit (``gc.freeze``), those objects are left
out of the passes. Nothing here relies on them: CPython does not promise ``__del__`` for objects
alive at exit, every file, DuckDB connection and partition is closed or published before a step
ends, and the other exit handlers (logging's flush, ``weakref.finalize``'s clean-ups) still run.
"""

import atexit
import gc


def skip_exit_collection() -> None:
    """Freeze the heap when the interpreter exits (once, however often this is called)."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)

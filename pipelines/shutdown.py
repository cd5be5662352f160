"""Ending a process that loaded Dagster without the garbage collector's repeated last passes.

At exit CPython runs several full collections while it tears the modules down, and each walks every
object still alive: with Dagster and this code location loaded that is about 0.3 s of CPU in a
process that only imported them, 0.5 s after a small run. Every process that loads the code location
pays it: the CLI, each run worker, each code server. Instead, one collection runs at exit, so that
whatever is garbage by then is finalized as before (a buffered writer in a reference cycle still
flushes), and then the heap is frozen (``gc.freeze``): the passes of the teardown skip what was alive
at exit, whose ``__del__`` CPython never promised to run. The other exit handlers still run.
"""

import atexit
import gc


def _collect_then_freeze() -> None:
    gc.collect()
    gc.freeze()


def skip_exit_collection() -> None:
    """At exit, collect once and freeze the heap (registered once, however often this is called)."""
    atexit.unregister(_collect_then_freeze)
    atexit.register(_collect_then_freeze)

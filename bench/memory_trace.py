"""Where a run's memory grows: each new high of RSS, with the main thread's code at that moment.

    python -m bench.memory_trace --accounts 200 --days 90

A thread samples ``VmRSS`` every 20 ms; whenever it passes the last high by more than ``--step``
MiB, it prints the new figure and the innermost frames of the pipeline's own code (or, outside it,
of whatever runs). The run itself is ``bench.pipeline_bench``'s, at zero latency.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench.pipeline_bench import run_once

OURS = ("pipelines/", "assets/", "bench/")


def _rss_mib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def _where(thread_id: int) -> str:
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return "?"
    frames = [
        f"{f.f_code.co_filename.rsplit('site-packages/', 1)[-1]}:{line} {f.f_code.co_name}"
        for f, line in traceback.walk_stack(frame)
    ]
    ours = [f for f in frames if any(part in f for part in OURS)]
    return " < ".join((ours or frames)[:3])


def _watch(thread_id: int, step: int, stop: threading.Event) -> None:
    high = 0
    while not stop.wait(0.02):
        rss = _rss_mib()
        if rss > high + step:
            print(f"{time.strftime('%H:%M:%S')} {rss:>5} MiB  {_where(thread_id)}", flush=True)
            high = rss


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_trace", description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--step", type=int, default=4, help="MiB above the last high before printing")
    args = parser.parse_args(argv)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(threading.get_ident(), args.step, stop), daemon=True)
    watcher.start()
    with tempfile.TemporaryDirectory() as scratch:
        figures = run_once(
            accounts=args.accounts,
            days=args.days,
            seed=7,
            realistic=False,
            concurrency=32,
            data_dir=Path(scratch) / "data",
        )
    stop.set()
    print(f"peak RSS {figures['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()

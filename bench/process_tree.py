"""A process tree's memory while it runs: peak RSS and PSS summed over the tree, the largest
process, and how many processes at once.

Sampled with psutil every ``interval`` seconds from a thread of the benchmark (outside the measured
processes). PSS (proportional set size) shares each page among the processes mapping it, so summed
over a tree of forked or similar Python processes it is the memory the tree really holds; summed
RSS counts shared libraries once per process. (The tree's CPU is the benchmark's own
``RUSAGE_CHILDREN`` once the tree is reaped: exact, where sampling would miss short lives. A process
whose parent exits without waiting for it, as the daemon's code server leaves its run worker, would
be reaped by init and its CPU lost: ``adopt_orphans`` and ``reap`` bring it back.)
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import psutil

MIB = 1024 * 1024
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def adopt_orphans() -> None:
    """Make this process the reaper of its descendants' orphans (Linux), so that ``reap`` can wait
    for them and ``RUSAGE_CHILDREN`` counts their CPU."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def reap(pids: Iterable[int], *, timeout: float = 60.0) -> None:
    """Wait for each of ``pids`` that is (now) this process's child; SIGKILL, by its id, one still
    running after ``timeout`` (an orphan its group's stop did not reach)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break  # not ours, or already reaped
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.05)  # a poll interval, bounded by the deadline


@dataclass
class TreeFootprint:
    peak_rss_mib: float = 0.0  # summed over the tree at its highest sample
    peak_pss_mib: float = 0.0
    largest_rss_mib: float = 0.0  # one process, at any sample
    largest_pss_mib: float = 0.0
    largest_command: str = ""
    max_processes: int = 0
    samples: int = 0
    at_peak: list[tuple[str, float]] = field(default_factory=list)  # (command, PSS MiB) at the peak


class TreeSampler:
    """``with TreeSampler(pid) as sampler: ...``; then ``sampler.footprint``."""

    def __init__(self, root_pid: int, *, interval: float = 0.2) -> None:
        self.root = psutil.Process(root_pid)
        self.interval = interval
        self.footprint = TreeFootprint()
        self.seen: set[int] = set()  # every process of the tree at any sample (for ``reap``)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        self.seen.update(p.pid for p in processes[1:])
        rss = pss = 0.0
        alive = 0
        breakdown = []
        found = self.footprint
        for process in processes:
            try:
                with process.oneshot():
                    memory = process.memory_full_info()
                    command = " ".join(a[:120] for a in process.cmdline()[1:6])
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            alive += 1
            rss += memory.rss / MIB
            pss += memory.pss / MIB
            breakdown.append((command, round(memory.pss / MIB, 1)))
            if memory.pss / MIB > found.largest_pss_mib:
                found.largest_pss_mib = memory.pss / MIB
                found.largest_command = command
            found.largest_rss_mib = max(found.largest_rss_mib, memory.rss / MIB)
        found.peak_rss_mib = max(found.peak_rss_mib, rss)
        if pss > found.peak_pss_mib:
            found.peak_pss_mib, found.at_peak = pss, sorted(breakdown, key=lambda b: -b[1])
        found.max_processes = max(found.max_processes, alive)
        found.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

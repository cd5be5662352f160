"""A process tree's memory while it runs: peak RSS and PSS summed over the tree, the largest
process, and how many processes at once.

Sampled with psutil every ``interval`` seconds from a thread of the benchmark (outside the measured
processes). PSS (proportional set size) shares each page among the processes mapping it, so summed
over a tree of forked or similar Python processes it is the memory the tree really holds; summed
RSS counts shared libraries once per process. (The tree's CPU is the benchmark's own
``RUSAGE_CHILDREN`` once the tree's root is reaped: exact, where sampling would miss short lives.)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import psutil

MIB = 1024 * 1024


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

"""The window planner: which date windows to ask for so that every window comes back under the cap.

Synctera's transactions endpoint returns at most 500 rows and has no paging, so only a window that
returned fewer than 500 rows is provably complete. A window that returned 500 is *capped*: its rows
are kept aside and the window is split. A single day that returns 500 cannot be split any further:
its rows are kept and the account-day is flagged incomplete.

The planner also keeps calls few. It walks one account's range from the start, sizing each window
from the account's density: the rate seen in earlier runs (the ledger), then the exact counts of the
days fetched so far. When nothing is known it asks for the whole range at once, which is one call for
the many quiet accounts. A capped answer still says something: every day it returned rows for has at
least that many, so days that dominate it (a spike of hundreds) are set apart into windows of their
own, and the rest is re-planned. A day's share of the answer, against the answer's mean share, marks a
spike even when its rows are few, once the account's typical day is known. What a capped answer cannot
say is how many rows the window holds: a random 500 of N rows is spread over the days alike whatever
N is, so a cold start still probes for the scale. Nothing about the order or choice of the capped rows
is assumed, and all of this sizes windows only: completeness comes from the counts alone.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from pipelines.synctera import TRANSACTIONS_CAP

ONE_DAY = dt.timedelta(days=1)

FILL_LIMIT = TRANSACTIONS_CAP - 1
"""The most rows a window may be planned to hold: 499 is provably complete, 500 never is."""


SPIKE = TRANSACTIONS_CAP // 4
"""Rows of one day in a capped answer that mark it as a spike, to be fetched on its own."""


FINISH_WINDOWS = 4
"""Windows' worth of rows left at which the planner cuts the rest evenly instead of greedily."""

SPIKE_FACTOR = 3.0
"""...and that many times the day's typical rows: a busy account's ordinary day is no spike."""

DOMINANT = 4
"""A day showing this many times the sample rows of the days before it leaves them few enough to ask
for whole, whatever the account's scale (the cold start's only clue to it)."""

PRIOR_DAYS = 14
"""Days of exact counts after which this run's own density outweighs the ledger's prior."""

PRIOR_UNCERTAINTY = 0.15
"""Relative error assumed of a density carried over from earlier runs, until this run counts rows."""

WEEKDAY_PRIOR = 2.0
"""Pseudo-observations that pull a weekday's factor towards 1.0 until it has been seen a few times."""


class Outcome(StrEnum):
    COMPLETE = "complete"  # fewer than 500 rows: every transaction of the window is here
    CAPPED = "capped"  # 500 rows over several days: split and fetched again
    FLAGGED = "flagged"  # 500 rows on a single day: kept, but the day is incomplete


@dataclass(frozen=True, order=True)
class Window:
    """Dates ``[start, end)``: start inclusive, end exclusive, as the API takes them."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError(f"empty window {self.start}..{self.end}")

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and self.start <= day < self.end

    def __str__(self) -> str:
        last = self.end - ONE_DAY
        return str(self.start) if last == self.start else f"{self.start}..{last}"


def classify(window: Window, row_count: int) -> Outcome:
    if row_count < TRANSACTIONS_CAP:
        return Outcome.COMPLETE
    return Outcome.FLAGGED if window.days == 1 else Outcome.CAPPED


@dataclass
class WindowPlanner:
    """Plans the windows of one account over ``[start, end)``, one at a time.

    Call ``next_window()``, fetch it, then ``record()`` the answer's rows per day; repeat until
    ``next_window()`` returns ``None``. ``rate`` is a prior in rows per day (None: unknown).
    ``safety`` scales the expected spread of a window's row count (noise plus rate uncertainty).
    """

    start: dt.date
    end: dt.date
    rate: float | None = None
    safety: float = 1.0
    uncertainty: float = 0.05
    cold_split: int = 16
    known: Mapping[dt.date, int] = field(default_factory=dict)
    """Rows of days an earlier run fetched alone: a spike there is set apart before it caps a window."""

    def __post_init__(self) -> None:
        self._cursor = self.start
        self._counts: dict[dt.date, int] = {}  # exact rows of each day fetched complete
        self._floors: dict[dt.date, int] = {}  # rows per day seen in capped answers: lower bounds
        # Each day's rows in a capped answer ÷ the other days' mean there: the shape of a sample,
        # never its size (a random 500 of N rows looks alike whatever N is). Planning only.
        self._shares: dict[dt.date, float] = {}
        self._shrink_to: int | None = None  # after a capped answer: the next window's length
        self._probe: int | None = None  # capped, nothing counted yet: how many days to try next

    @property
    def done(self) -> bool:
        return self._cursor >= self.end

    def next_window(self) -> Window | None:
        if self.done:
            return None
        remaining = (self.end - self._cursor).days
        if self._shrink_to is not None:
            days = min(self._shrink_to, remaining)
        elif self._estimate() is None:
            # Nothing counted yet: the whole range, unless a capped answer already said it is too much.
            days = remaining if self._probe is None else min(self._probe, remaining)
        else:
            days = self._fit(remaining)
        return Window(self._cursor, self._cursor + days * ONE_DAY)

    def record(self, window: Window, rows_per_day: Mapping[dt.date, int]) -> Outcome:
        """Take the answer for ``window`` (rows counted per ``date``) and move on."""
        if window.start != self._cursor:
            raise ValueError(f"window {window} is not the planned one (next day is {self._cursor})")
        total = sum(rows_per_day.values())
        outcome = classify(window, total)
        if outcome is Outcome.CAPPED:
            for day, count in rows_per_day.items():
                self._floors[day] = max(self._floors.get(day, 0), count)
                # Against the other days' mean: a spike must not raise the bar it is measured by.
                others = max((total - count) / (window.days - 1), 0.5)
                self._shares[day] = max(self._shares.get(day, 0.0), count / others)
            self._shrink_to = self._split(window, rows_per_day)
            return outcome
        self._shrink_to = None
        if outcome is Outcome.COMPLETE:
            day = window.start
            while day < window.end:
                self._counts[day] = rows_per_day.get(day, 0)
                self._floors.pop(day, None)
                self._shares.pop(day, None)
                day += ONE_DAY
        else:
            self._floors.pop(window.start, None)
            self._shares.pop(window.start, None)
        self._cursor = window.end
        return outcome

    # --- sizing ----------------------------------------------------------------------------------

    def _estimate(self) -> float | None:
        """Typical rows per day: robust to the rare huge day, which gets a window of its own anyway."""
        known = len(self._counts)
        if known == 0:
            return self.rate
        seen = sorted(self._counts.values())
        # A spike counted in full is no measure of the ordinary day (it had a window of its own).
        ordinary = [c for c in seen if not self._is_spike(c, statistics.median(seen))] or seen
        typical = statistics.fmean(ordinary[: max(1, math.ceil(len(ordinary) * 0.95))])
        if self.rate is None or known >= PRIOR_DAYS:
            return typical
        weight = known / PRIOR_DAYS
        return weight * typical + (1 - weight) * self.rate

    def _weekday_factors(self, overall: float) -> list[float]:
        """Each weekday's share of the typical day (businesses and people are quieter at weekends)."""
        if overall <= 0 or len(self._counts) < 7:
            return [1.0] * 7
        sums, days = [0.0] * 7, [0] * 7
        for day, count in self._counts.items():
            weekday = day.weekday()
            sums[weekday] += min(count, 3 * overall)  # a spike must not make its weekday look busy
            days[weekday] += 1
        # Shrink towards 1.0 while a weekday has been seen only a few times.
        return [(sums[w] / overall + WEEKDAY_PRIOR) / (days[w] + WEEKDAY_PRIOR) for w in range(7)]

    def _fit(self, remaining: int) -> int:
        """How many days from the cursor to ask for: the fewest calls, in expectation.

        Each candidate length ``n`` has an expected row count and a spread (Poisson noise of the
        counts plus the uncertainty of the rate); ``p`` is its chance of reaching the cap. A capped
        window costs one more call and then covers one day less, so ``n`` is worth
        ``(n - p) / (1 + p)`` days per call; the best ``n`` wins. Near the end of the range (or of
        the stretch before a spike) the rest is instead cut into the number of windows that covers
        it in the fewest expected calls, so that the last window is not a sliver.
        """
        rate = self._estimate() or 0.0
        factors = self._weekday_factors(rate)
        # How far the rate itself may be off: shrinks as rows are counted; a prior from earlier runs
        # is trusted moderately (the account may have changed since).
        if self._counts:
            relative = max(self.uncertainty, 1 / math.sqrt(sum(self._counts.values()) + 1))
        else:
            relative = PRIOR_UNCERTAINTY
        expected = [0.0]  # expected[n]: rows expected in the first n days from the cursor
        best, best_value = 1, 0.0
        for days in range(1, remaining + 1):
            day = self._cursor + (days - 1) * ONE_DAY
            typical = rate * factors[day.weekday()]
            floor = self._floors.get(day, 0)
            hint = max(floor, self._hinted(day, typical), self.known.get(day, 0))
            if self._is_spike(hint, typical):
                # A day that dominated a capped answer gets a window of its own: plan up to it.
                return self._even_split(expected, relative) if days > 1 else 1
            # A day seen in a capped answer holds at least the rows it showed there.
            expected.append(expected[-1] + max(typical, float(floor)))
            if best_value and expected[-1] > FINISH_WINDOWS * FILL_LIMIT:
                return best  # the end is far: the next window only has to be a good one
            p_cap = self._cap_chance(expected[-1], relative)
            if days == 1 and p_cap > 0.5:
                return 1  # even one day is expected to reach the cap
            value = (days - p_cap) / (1 + p_cap)
            if value > best_value and p_cap <= 0.5:
                best, best_value = days, value
        return self._even_split(expected, relative)

    @staticmethod
    def _is_spike(rows: float, typical: float) -> bool:
        """A day whose rows dwarf its usual count: it is fetched on its own."""
        return rows >= max(SPIKE, SPIKE_FACTOR * typical)

    def _hinted(self, day: dt.date, typical: float) -> float:
        """The day's rows as its share of a capped answer suggests, scaled by the typical day's: a
        750-row day among 4,000 rows shows ~90 of the 500, yet 18 times another day's. A hint for
        sizing windows only: nothing is ever proven complete by it."""
        return self._shares.get(day, 0.0) * typical

    def _cap_chance(self, rows: float, relative: float) -> float:
        """The chance that a window expected to hold ``rows`` reaches the cap."""
        spread = math.sqrt(rows + (relative * rows) ** 2) * self.safety
        if not spread:
            return 0.0
        return 0.5 * math.erfc((FILL_LIMIT + 0.5 - rows) / (spread * math.sqrt(2)))

    def _even_split(self, expected: list[float], relative: float) -> int:
        """The first window of the cheapest even cut of the days ahead (``expected`` is cumulative).

        ``k`` windows of ``total / k`` expected rows each cost ``k / (1 - p)`` calls on average (a
        capped window is asked again); the cheapest ``k`` wins.
        """
        total, days = expected[-1], len(expected) - 1
        best_k, best_cost = 1, math.inf
        for k in range(1, days + 1):
            p_cap = self._cap_chance(total / k, relative)
            cost = k / (1 - p_cap) if p_cap < 1 else math.inf
            if cost < best_cost:
                best_k, best_cost = k, cost
            if p_cap < 1e-3:
                break  # more windows only cost more
        if math.isinf(best_cost):
            return 1  # no cut is expected to stay under the cap: go a day at a time
        share = total / best_k
        # The day on which the first window's expected rows come closest to its share (the longest
        # such window when days are expected to be empty).
        return min(range(1, days + 1), key=lambda n: (abs(expected[n] - share), -n))

    def _split(self, window: Window, rows_per_day: Mapping[dt.date, int]) -> int:
        """How many days to ask for next, after ``window`` came back capped."""
        estimate = self._estimate()
        if estimate is None:
            # Nothing counted yet, so no scale: the answer's 500 rows say only that the window holds
            # 500 or more. The first cap takes a sixteenth of the days, which in one or two rounds
            # finds the account's scale; a capped probe is halved (its rate is already known to be
            # at least 500 / its days). A day standing out of the sample (proven ≥ SPIKE rows and
            # SPIKE_FACTOR times the mean share) is set apart: the days before it are asked for
            # whole when the sample shows them small beside it, else they are probed.
            self._probe = max(1, window.days // (2 if self._probe is not None else self.cold_split))
            mean, before = TRANSACTIONS_CAP / window.days, 0
            for offset in range(window.days):
                rows = rows_per_day.get(window.start + offset * ONE_DAY, 0)
                if offset and rows >= SPIKE and rows >= SPIKE_FACTOR * mean:
                    return offset if before * DOMINANT <= rows else min(self._probe, offset)
                before += rows
            return self._probe
        # A day that holds a large share of the capped answer is set apart: everything before it
        # is asked for next, then that day alone.
        for offset in range(window.days):
            day = window.start + offset * ONE_DAY
            floor = rows_per_day.get(day, 0)
            if self._is_spike(max(floor, self._hinted(day, estimate)), estimate):
                return max(1, offset)
        if estimate * window.days < TRANSACTIONS_CAP / 2:
            # The estimate was badly wrong: take a sixteenth of the days, as a cold start does.
            return max(1, window.days // self.cold_split)
        if self.rate is not None:
            # The window held 500 rows or more: a prior from earlier runs that expected fewer was
            # too low, and keeping it would cap the next windows too.
            self.rate = max(self.rate, TRANSACTIONS_CAP / window.days)
        # Planned as far as the range goes: the next window then ends where a full one would, instead
        # of cutting this one evenly in two (it held 500 or more, so more than one window's worth).
        return max(1, min(window.days - 1, self._fit((self.end - window.start).days)))


def minimum_calls(day_counts: list[int]) -> int:
    """The fewest calls that could fetch these consecutive days, knowing every count in advance.

    Days are packed greedily into windows of at most 499 rows; a day of 500 or more costs one call
    of its own. This is the yardstick for the planner, which cannot know the counts in advance.
    """
    calls, window = 0, None
    for count in day_counts:
        if count >= TRANSACTIONS_CAP:
            calls += 1 + (window is not None)
            window = None
        elif window is None:
            window = count
        elif window + count <= FILL_LIMIT:
            window += count
        else:
            calls, window = calls + 1, count
    return calls + (window is not None)

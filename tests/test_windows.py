"""The window planner, driven with exact counts: complete, capped and flagged windows, and call counts."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

import pytest

from pipelines.windows import Outcome, Window, WindowPlanner, classify, minimum_calls

START = dt.date(2026, 1, 1)
ONE_DAY = dt.timedelta(days=1)


def _drive(
    counts: list[int],
    *,
    rate: float | None = None,
    sample: Callable[[dict[dt.date, int]], dict[dt.date, int]] | None = None,
) -> tuple[list[tuple[Window, Outcome]], set[dt.date]]:
    """Run a planner over ``counts`` (one per day from START); capped answers are down-sampled to 500."""
    by_day = {START + n * ONE_DAY: c for n, c in enumerate(counts)}
    planner = WindowPlanner(START, START + len(counts) * ONE_DAY, rate=rate)
    history, covered = [], set()
    rng = random.Random(3)
    while (window := planner.next_window()) is not None:
        rows = {d: c for d, c in by_day.items() if d in window and c}
        if sum(rows.values()) > 500:
            rows = (sample or (lambda r: _random_500(r, rng)))(rows)
        outcome = planner.record(window, rows)
        history.append((window, outcome))
        if outcome is not Outcome.CAPPED:
            covered |= {window.start + n * ONE_DAY for n in range(window.days)}
    return history, covered


def _random_500(rows: dict[dt.date, int], rng: random.Random) -> dict[dt.date, int]:
    population = [d for d, c in rows.items() for _ in range(c)]
    picked: dict[dt.date, int] = {}
    for day in rng.sample(population, 500):
        picked[day] = picked.get(day, 0) + 1
    return picked


def test_classification_follows_the_cap() -> None:
    one_day, two_days = Window(START, START + ONE_DAY), Window(START, START + 2 * ONE_DAY)
    assert classify(two_days, 499) is Outcome.COMPLETE
    assert classify(two_days, 500) is Outcome.CAPPED
    assert classify(one_day, 500) is Outcome.FLAGGED
    assert classify(one_day, 499) is Outcome.COMPLETE


def test_capped_single_day_is_flagged_not_complete() -> None:
    history, covered = _drive([3, 4, 600, 2, 5])
    flagged = [w for w, o in history if o is Outcome.FLAGGED]
    assert flagged == [Window(START + 2 * ONE_DAY, START + 3 * ONE_DAY)]
    assert all(o is not Outcome.COMPLETE or sum([3, 4, 600, 2, 5][
        (w.start - START).days:(w.end - START).days]) < 500 for w, o in history)  # fmt: skip
    assert covered == {START + n * ONE_DAY for n in range(5)}


def test_quiet_account_costs_one_call() -> None:
    history, _ = _drive([2] * 90)
    assert [o for _, o in history] == [Outcome.COMPLETE]


def test_every_day_is_covered_once_by_a_complete_or_flagged_window() -> None:
    rng = random.Random(11)
    counts = [rng.choice([0, 5, 40, 120, 300, 499, 500, 800]) for _ in range(120)]
    history, covered = _drive(counts)
    kept = [w for w, o in history if o is not Outcome.CAPPED]
    days = [w.start + n * ONE_DAY for w in kept for n in range(w.days)]
    assert len(days) == len(set(days)) == 120
    assert covered == set(days)
    for window, outcome in history:
        total = sum(counts[(window.start - START).days : (window.end - START).days])
        assert (outcome is Outcome.COMPLETE) == (total < 500)


@pytest.mark.parametrize("rate", [0.5, 8.0, 30.0, 150.0])
def test_with_a_known_density_calls_stay_near_the_minimum(rate: float) -> None:
    rng = random.Random(int(rate))
    counts = [max(0, round(rng.gauss(rate, rate**0.5))) for _ in range(365)]
    history, _ = _drive(counts, rate=rate)
    assert len(history) <= 1.25 * minimum_calls(counts) + 1


def test_a_spike_in_a_capped_window_is_fetched_on_its_own() -> None:
    counts = [20] * 10 + [750] + [20] * 10
    history, _ = _drive(counts, rate=20.0)
    assert (Window(START + 10 * ONE_DAY, START + 11 * ONE_DAY), Outcome.FLAGGED) in history
    assert len(history) <= minimum_calls(counts) + 2


def test_an_api_returning_the_earliest_500_still_ends_complete() -> None:
    """Nothing is assumed about which 500 rows a capped answer holds."""

    def earliest(rows: dict[dt.date, int]) -> dict[dt.date, int]:
        kept, left = {}, 500
        for day in sorted(rows):
            kept[day] = min(rows[day], left)
            left -= kept[day]
            if not left:
                break
        return kept

    counts = [60] * 30
    history, covered = _drive(counts, sample=earliest)
    assert len(covered) == 30
    assert all(
        sum(counts[(w.start - START).days : (w.end - START).days]) < 500
        for w, o in history
        if o is Outcome.COMPLETE
    )


def test_recording_a_window_out_of_turn_is_refused() -> None:
    planner = WindowPlanner(START, START + 10 * ONE_DAY)
    with pytest.raises(ValueError, match="not the planned one"):
        planner.record(Window(START + ONE_DAY, START + 2 * ONE_DAY), {})


@pytest.mark.parametrize(
    ("counts", "expected"),
    [([], 0), ([10] * 10, 1), ([250, 249], 1), ([250, 250], 2), ([500], 1), ([1, 500, 1], 3), ([0, 0], 1)],
)
def test_minimum_calls_packs_greedily(counts: list[int], expected: int) -> None:
    assert minimum_calls(counts) == expected


def test_the_last_stretch_is_cut_evenly_not_left_as_a_sliver() -> None:
    # 2.5 rows a day for a year, rate known: two windows of ~456 rows, not 420 + 420 + a sliver.
    counts = [2 if n % 2 else 3 for n in range(365)]
    history, covered = _drive(counts, rate=2.5)
    assert len(covered) == 365
    assert [o for _, o in history] == [Outcome.COMPLETE, Outcome.COMPLETE]


def test_a_capped_busy_window_is_not_taken_for_a_run_of_spikes() -> None:
    # 130 rows every day: a capped answer shows ~125 rows per day, which is the account's normal, so
    # the planner must not fall back to one-day windows after it.
    counts = [130] * 60
    history, covered = _drive(counts, rate=100.0)
    assert len(covered) == 60
    one_day = [w for w, _ in history if w.days == 1]
    assert len(one_day) <= 1
    assert len(history) <= minimum_calls(counts) + 3


def test_a_prior_far_above_the_cap_goes_a_day_at_a_time() -> None:
    # Every day alone reaches the cap: one call per day (each flagged), never a shrinking whole range.
    history, covered = _drive([3500] * 30, rate=3500.0)
    assert len(covered) == 30
    assert len(history) == 30 and all(o is Outcome.FLAGGED for _, o in history)


def test_a_spike_seen_only_as_a_large_share_of_a_capped_answer_gets_a_window_of_its_own() -> None:
    # 750 rows among ~5,200: a random 500 shows ~70 of them, under SPIKE, yet 12 times the mean share.
    counts = [50] * 60 + [750] + [50] * 29
    history, covered = _drive(counts)
    spike = Window(START + 60 * ONE_DAY, START + 61 * ONE_DAY)
    assert len(covered) == 90
    assert (spike, Outcome.FLAGGED) in history
    assert [w for w, o in history if o is Outcome.CAPPED and START + 60 * ONE_DAY in w] == [history[0][0]]


def test_a_day_flagged_before_anything_is_counted_does_not_send_the_planner_back_to_the_whole_range() -> None:
    counts = [600] + [30] * 89
    history, covered = _drive(counts)
    flagged = history.index((Window(START, START + ONE_DAY), Outcome.FLAGGED))
    assert len(covered) == 90
    assert all(o is not Outcome.CAPPED for _, o in history[flagged:])


def test_days_before_a_spike_that_dominates_a_cold_capped_answer_are_asked_for_whole() -> None:
    counts = [1] * 60 + [700] + [1] * 29
    history, covered = _drive(counts)
    assert len(covered) == 90
    assert [o for _, o in history[:3]] == [Outcome.CAPPED, Outcome.COMPLETE, Outcome.FLAGGED]
    assert history[1][0] == Window(START, START + 60 * ONE_DAY)


def test_a_spike_counted_in_full_does_not_shrink_the_windows_after_it() -> None:
    counts = [20] * 4 + [450] + [20] * 40
    history, covered = _drive(counts, rate=20.0)
    after = [w for w, _ in history if w.start > START + 4 * ONE_DAY]
    assert len(covered) == 45
    assert after and after[0].days >= 15


def test_after_a_capped_window_the_next_is_a_full_window_not_half_of_it() -> None:
    # A prior of 20 a day on an account now at 30: the first window is capped; what it proved (500 or
    # more rows) says its days hold about a window's worth, so the retry is most of it, not half.
    history, covered = _drive([30] * 90, rate=20.0)
    capped = next(i for i, (_, o) in enumerate(history) if o is Outcome.CAPPED)
    assert len(covered) == 90
    assert history[capped + 1][0].days > history[capped][0].days / 2 + 2


def test_a_spike_is_measured_against_the_other_days_of_a_capped_answer_not_against_itself() -> None:
    # 499 rows among 801 take ~310 of the 500: under three typical days, and only 2.5 times the
    # answer's mean share, which the spike itself inflates; against the other days it is 5 times.
    counts = [70, 499, 113, 119]
    history, covered = _drive(counts, rate=116.7)
    assert len(covered) == 4
    assert [o for _, o in history].count(Outcome.CAPPED) == 1
    assert (Window(START + ONE_DAY, START + 2 * ONE_DAY), Outcome.COMPLETE) in history


def test_a_day_an_earlier_run_fetched_alone_is_fetched_alone_again_before_it_caps_a_window() -> None:
    counts = [10, 499, 20, 23]
    planner = WindowPlanner(START, START + 4 * ONE_DAY, rate=23.4, known={START + ONE_DAY: 499})
    windows = []
    while (window := planner.next_window()) is not None:
        rows = {d: c for d, c in ((START + n * ONE_DAY, c) for n, c in enumerate(counts)) if d in window}
        windows.append((window, planner.record(window, rows)))
    assert Outcome.CAPPED not in [o for _, o in windows]
    assert (Window(START + ONE_DAY, START + 2 * ONE_DAY), Outcome.COMPLETE) in windows


def _ordered_500(rows: dict[dt.date, int], *, latest: bool) -> dict[dt.date, int]:
    kept, left = {}, 500
    for day in sorted(rows, reverse=latest):
        kept[day] = min(rows[day], left)
        left -= kept[day]
        if not left:
            break
    return kept


@pytest.mark.parametrize("latest", [False, True])
@pytest.mark.parametrize("rate", [None, 40.0])
def test_share_hints_from_a_skewed_api_never_make_a_window_complete_that_is_not(
    latest: bool, rate: float | None
) -> None:
    """An API giving the earliest or latest 500 skews every share; only sizes may suffer."""
    rng = random.Random(5)
    counts = [rng.choice([0, 3, 30, 60, 150, 499, 500, 750]) for _ in range(90)]
    history, covered = _drive(counts, rate=rate, sample=lambda r: _ordered_500(r, latest=latest))
    kept = [w for w, o in history if o is not Outcome.CAPPED]
    assert sorted(d for w in kept for d in (w.start + n * ONE_DAY for n in range(w.days))) == sorted(covered)
    assert len(covered) == 90
    for window, outcome in history:
        total = sum(counts[(window.start - START).days : (window.end - START).days])
        assert (outcome is Outcome.COMPLETE) == (total < 500)
        assert (outcome is Outcome.FLAGGED) == (window.days == 1 and total >= 500)

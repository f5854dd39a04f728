"""The compare statistics (ucompressd.stats) and how compare uses them: interleaved runs,
exact intervals, significance, and the calibration's verdict on a busy host."""
from __future__ import annotations

import math
import random
from typing import Any

from ucompressd import experiment, stats


def test_median_interval_is_exact_order_statistics():
    s = stats.median_ci([5, 1, 4, 2, 3])
    assert s["median"] == 3 and s["ci95"] == [1, 5] and s["coverage"] == 0.9375  # 1 - 2/32
    s = stats.median_ci(list(range(1, 11)))
    assert s["ci95"] == [2, 9] and s["coverage"] >= 0.95  # 1 - 2 * 11/1024
    assert stats.median_ci([7])["ci95"] is None
    assert stats.median_ci([None, 2, 4])["n"] == 2


def test_mann_whitney_null_distribution_is_exact():
    counts = stats._u_counts(5, 5)
    assert sum(counts) == math.comb(10, 5) and counts[:5] == (1, 1, 2, 3, 5)
    assert counts == counts[::-1]  # symmetric


def test_separated_samples_are_significant_and_overlapping_ones_are_not():
    a = [100, 104, 98, 101, 103]
    b = [150, 149, 155, 160, 152]
    r = stats.compare(a, b)
    assert r["measure"] == "ratio" and r["significant"] and r["p"] < 0.01
    lo, hi = r["ci95"]
    assert lo <= r["median"] <= hi and lo > 1  # b is about 1.5x a
    r = stats.compare(a, [99, 105, 97, 102, 100])
    assert not r["significant"] and r["ci95"][0] < 1 < r["ci95"][1]


def test_zero_values_compare_as_differences():
    r = stats.compare([0, 0, 1, 0, 2], [30, 31, 29, 35, 33])
    assert r["measure"] == "difference" and r["significant"] and r["median"] > 25


def test_interval_covers_a_known_shift_most_of_the_time():
    rng = random.Random(4)
    hits = 0
    for _ in range(200):
        a = [rng.gauss(100, 10) for _ in range(6)]
        b = [rng.gauss(120, 10) for _ in range(6)]
        lo, hi = stats.compare(a, b)["ci95"]
        hits += lo <= 1.2 <= hi
    assert hits >= 180  # ~95% (the interval is on ratios, the shift about 1.2x)


def _fake_run(board: Any, cfg: dict[str, Any], on_progress: Any, label: str, *a: Any) -> dict:
    """A run document as experiment.run makes one; records the order runs were asked for."""
    _fake_run.order.append(label)
    steal = {"kswapd": 100, "kcompressd": 180, "auto": 175}[cfg["mode"]] + len(_fake_run.order)
    return {"config": cfg, "counters": {"elapsed_us": 10**6, "allocstall": 3, "corrupt": 0},
            "rates": {"pgsteal_anon_per_s": steal, "ops_per_s": 1.0},
            "stall_us": {"total": 1000, "p99": 64}}


def test_compare_interleaves_the_designs_and_summarises_every_pair(monkeypatch):
    _fake_run.order = []
    monkeypatch.setattr(experiment, "run", _fake_run)
    cals = iter([{"main_us": 1000, "thread_us": 1000, "both_main_us": 1010,
                  "both_thread_us": 1000, "parallel": True},
                 {"main_us": 1500, "thread_us": 1000, "both_main_us": 1500,
                  "both_thread_us": 3000, "parallel": True}])
    monkeypatch.setattr(experiment, "calibrate", lambda board, timeout: next(cals))
    cfgs = {m: {"mode": m} for m in experiment.MODES}
    doc = experiment.compare(None, cfgs, repeat=3)
    assert _fake_run.order == [f"{m} {r}/3" for r in (1, 2, 3) for m in experiment.MODES]
    pairs = doc["summary"]["pgsteal_anon_per_s"]["pairs"]
    assert set(pairs) == {"kcompressd/kswapd", "auto/kswapd", "auto/kcompressd"}
    assert pairs["kcompressd/kswapd"]["median"] > 1.5
    row = doc["summary"]["stall_share"]["kswapd"]
    assert row["median"] == 0.001 and row["values"] == [0.001] * 3
    cal = doc["calibration"]
    assert cal["noisy"] and len(cal["why"]) == 2  # after: contention, and drift 1.5x


def test_a_quiet_calibration_is_not_noisy():
    quiet = {"main_us": 1000, "thread_us": 1020, "both_main_us": 1050, "both_thread_us": 1040,
             "parallel": True}
    assert experiment.noise(quiet, dict(quiet, main_us=1080)) == {"noisy": False, "why": []}
    # A GIL board runs two threads one at a time by design: not a sign of a busy host.
    gil = dict(quiet, both_main_us=2100, both_thread_us=2050, parallel=False)
    assert not experiment.noise(gil, gil)["noisy"]

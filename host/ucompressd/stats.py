"""Statistics for comparing designs over repeated runs on a shared machine.

Distribution-free and exact, so that five runs give an honest answer:

- one design's metric: the median, and a confidence interval for it from order statistics
  (the number of runs below the true median is Binomial(n, 1/2)); with n = 5 the best there is
  covers 93.75% (min..max), from n = 6 on at least 95%. `coverage` says what was achieved.
- two designs: the Hodges-Lehmann estimate of the ratio (the median of all n*m ratios b_j/a_i,
  taken on logs), its confidence interval from the order statistics of those ratios with the
  exact Mann-Whitney distribution, and the exact two-sided Mann-Whitney test; `significant` is
  p < 0.05. Where a value is 0 or missing a ratio means nothing: the same is done on the
  differences b_j - a_i (`measure` says which). Five runs of each can reach p = 0.008.

Runs are interleaved (ABAB...) by the caller, so drift on the host spreads over the designs.
"""

from __future__ import annotations

import math
import statistics
from functools import lru_cache
from typing import Any, Sequence

LEVEL = 0.95
ALPHA = 1 - LEVEL


def _nums(values: Sequence[float | int | None]) -> list[float]:
    return [float(v) for v in values if v is not None]


def median_ci(values: Sequence[float | int | None]) -> dict[str, Any]:
    """Median, min, max and the order-statistic interval of the median (None below 2 runs)."""
    xs = sorted(_nums(values))
    n = len(xs)
    out: dict[str, Any] = {
        "median": statistics.median(xs) if xs else None,
        "min": xs[0] if xs else None,
        "max": xs[-1] if xs else None,
        "n": n,
        "ci95": None,
        "coverage": None,
    }
    if n < 2:
        return out
    # The widest symmetric pair (x_k, x_{n+1-k}) is min..max; narrow it while coverage holds.
    k, cover = 1, _median_coverage(n, 1)
    while k + 1 <= n // 2 and _median_coverage(n, k + 1) >= LEVEL:
        k += 1
        cover = _median_coverage(n, k)
    out["ci95"] = [xs[k - 1], xs[n - k]]
    out["coverage"] = round(cover, 4)
    return out


def _median_coverage(n: int, k: int) -> float:
    """P(x_(k) <= median <= x_(n+1-k)) = 1 - 2 P(Binomial(n, 1/2) <= k - 1)."""
    tail = sum(math.comb(n, i) for i in range(k)) / 2**n
    return 1 - 2 * tail


@lru_cache(maxsize=256)
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) orderings give each Mann-Whitney U = 0..m*n (no ties)."""
    # f[i][j][u]: orderings of i a's and j b's with U = u; built by the last element's sample.
    prev = [[1] + [0] * (m * n) for _ in range(n + 1)]  # i = 0: U is always 0
    for i in range(1, m + 1):
        cur = [[0] * (m * n + 1) for _ in range(n + 1)]
        cur[0][0] = 1
        for j in range(1, n + 1):
            for u in range(m * n + 1):
                # last is an a (it is larger than all j b's: adds j), or a b (adds nothing)
                cur[j][u] = (prev[j][u - j] if u >= j else 0) + cur[j - 1][u]
        prev = cur
    return tuple(prev[n])


def compare(a: Sequence[float | int | None], b: Sequence[float | int | None]) -> dict[str, Any]:
    """Design b against design a: estimate, 95% interval and significance (see the module)."""
    xs, ys = _nums(a), _nums(b)
    out: dict[str, Any] = {"measure": None, "median": None, "ci95": None, "coverage": None,
                           "p": None, "significant": False, "n": [len(xs), len(ys)]}
    if not xs or not ys:
        return out
    ratio = all(v > 0 for v in xs + ys)
    out["measure"] = "ratio" if ratio else "difference"
    if ratio:
        d = sorted(math.log(y) - math.log(x) for x in xs for y in ys)
    else:
        d = sorted(y - x for x in xs for y in ys)
    back = math.exp if ratio else (lambda v: v)
    out["median"] = back(statistics.median(d))
    m, n = len(xs), len(ys)
    counts = _u_counts(m, n)
    total = sum(counts)
    # Interval: (d_(c), d_(mn+1-c)) with c - 1 the largest U whose lower tail is <= alpha/2.
    c, tail = 0, 0
    while c < len(counts) and (tail + counts[c]) / total <= ALPHA / 2:
        tail += counts[c]
        c += 1
    if c >= 1:
        out["ci95"] = [back(d[c - 1]), back(d[m * n - c])]
        out["coverage"] = round(1 - 2 * tail / total, 4)
    # Exact two-sided test on U (ties count a half; with ties the test is conservative-ish).
    u = sum(1.0 if y > x else 0.5 if y == x else 0.0 for x in xs for y in ys)
    lo = min(u, m * n - u)
    p = 2 * sum(counts[: math.floor(lo) + 1]) / total
    out["p"] = round(min(1.0, p), 4)
    out["significant"] = bool(out["ci95"]) and out["p"] < ALPHA
    return out

"""Does the host give this machine the cores the reclaim targets assume?

The simulated board's two threads are two of this machine's CPUs. On a cloud VM a CPU can
run at one speed now and at another a second later, when the host hands its physical core's
other hyperthread to someone else: the guest's steal time does not show that. This times a
fixed loop in one process pinned to each CPU, both at once (as the board's two threads run),
in short windows, and reports per CPU the fast and slow levels, the share of windows at the
slow one and how long each level lasts; then whether one CPU of ours being busy slows the
other (our two CPUs sharing a physical core). No board is involved.

    python benchmarks/host_speed.py [--seconds 60] [--out results/host_speed.json]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from pathlib import Path
from typing import Any

import common
from common import Target, fmt
from ucz.calibrate import spin  # the board's calibration loop: one loop for both

WINDOW_S = 0.25  # one window: its median loop time is the CPU's speed then
LOOP_S = 0.002  # one timed loop, short beside the window
# A window slower than the CPU's fast level by this is at the slow level: the levels seen
# here are 1.7x apart, and a quiet core's windows are within a few percent of each other.
SLOW = 1.25
# The condition the reclaim targets assume ("a quiet 2-core machine"): each CPU's slow level
# within this of its fast one, and one CPU busy costing the other at most SIBLING.
QUIET = 1.15
SIBLING = 1.05


def _loops_per_timing() -> int:
    n = 1000
    while True:
        t = time.perf_counter()
        spin(n)
        if time.perf_counter() - t >= LOOP_S:
            return n
        n *= 2


def _windows(cpu: int, n: int, seconds: float, start: float, out: Any) -> None:
    """Median ms of a loop of n iterations, per WINDOW_S, on `cpu`, from `start` (a shared
    perf_counter instant, so both CPUs' windows line up) for `seconds`."""
    os.sched_setaffinity(0, {cpu})
    while time.perf_counter() < start:
        pass
    meds: list[float] = []
    cur: list[float] = []
    edge = start + WINDOW_S
    while True:
        t = time.perf_counter()
        spin(n)
        now = time.perf_counter()
        cur.append((now - t) * 1e3)
        if now >= edge:
            meds.append(statistics.median(cur))
            cur = []
            edge += WINDOW_S
            if edge > start + seconds:
                break
    out.put((cpu, meds))


def _busy(cpu: int, stop: Any) -> None:
    os.sched_setaffinity(0, {cpu})
    while not stop.is_set():
        spin(10000)


def _steal() -> dict[int, int]:
    """Steal time per CPU, in clock ticks (/proc/stat)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                out[int(name[3:])] = int(fields[7])
    return out


def levels(meds: list[float]) -> dict[str, Any]:
    """The fast and slow levels of one CPU's windows, the share at the slow one and how long
    a level lasts (mean run of windows on one side of SLOW x fast)."""
    q = statistics.quantiles(meds, n=10)
    fast, slow = q[0], q[-1]
    at_slow = [m > fast * SLOW for m in meds]
    runs, k = [], 1
    for a, b in zip(at_slow, at_slow[1:]):
        if a == b:
            k += 1
        else:
            runs.append(k)
            k = 1
    runs.append(k)
    return {"fast_ms": fast, "slow_ms": slow, "ratio": slow / fast,
            "slow_share": sum(at_slow) / len(meds), "flips": len(runs) - 1,
            "dwell_s": statistics.mean(runs) * WINDOW_S, "windows": meds}


def both(cpus: list[int], n: int, seconds: float) -> dict[int, list[float]]:
    q: Any = mp.Queue()
    start = time.perf_counter() + 0.2
    ps = [mp.Process(target=_windows, args=(c, n, seconds, start, q)) for c in cpus]
    for p in ps:
        p.start()
    got = dict(q.get() for _ in ps)
    for p in ps:
        p.join()
    return got


def sibling(n: int, slots: int) -> dict[str, Any]:
    """CPU 0's loop with CPU 1 idle and busy, alternating slots of 4 windows."""
    idle: list[float] = []
    busy: list[float] = []
    for i in range(2 * slots):
        stop = mp.Event()
        p = mp.Process(target=_busy, args=(1, stop)) if i % 2 else None
        if p:
            p.start()
            time.sleep(0.05)
        (busy if p else idle).extend(both([0], n, 4 * WINDOW_S)[0])
        if p:
            stop.set()
            p.join()
    return {"idle_ms": statistics.median(idle), "busy_ms": statistics.median(busy),
            "cost": statistics.median(busy) / statistics.median(idle)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the both-CPU run")
    ap.add_argument("--out", type=Path, default=common.RESULTS / "host_speed.json")
    ap.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    args = ap.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))[:2]
    if len(cpus) < 2:
        ap.error("needs two CPUs")
    seconds = 4.0 if args.quick else args.seconds
    doc: dict[str, Any] = {"environment": common.environment(), "window_s": WINDOW_S}
    n = _loops_per_timing()
    s0, t0 = _steal(), time.monotonic()
    with common.status(f"both CPUs for {seconds:.0f} s"):
        got = both(cpus, n, seconds)
    s1, wall = _steal(), time.monotonic() - t0
    tick = os.sysconf("SC_CLK_TCK")
    doc["cpus"] = {str(c): {**levels(got[c]), "steal_share": (s1[c] - s0[c]) / tick / wall}
                   for c in cpus}
    fast = [[m <= doc["cpus"][str(c)]["fast_ms"] * SLOW for m in got[c]] for c in cpus]
    doc["both_fast_share"] = statistics.mean(a and b for a, b in zip(*fast))
    with common.status("one CPU busy, the other timed"):
        doc["sibling"] = sibling(n, 2 if args.quick else 8)

    t = common.Table(title=f"each CPU, {seconds:.0f} s, both busy, {WINDOW_S} s windows")
    for col in ("cpu", "fast ms", "slow ms", "slow/fast", "time at slow", "flips", "a level lasts",
                "steal"):
        t.add_column(col, justify="right")
    for c, r in doc["cpus"].items():
        t.add_row(c, fmt(r["fast_ms"]), fmt(r["slow_ms"]), f"{r['ratio']:.2f}x",
                  f"{100 * r['slow_share']:.0f}%", str(r["flips"]), f"{r['dwell_s']:.2f} s",
                  f"{100 * r['steal_share']:.1f}%")
    common.console.print(t)
    common.console.print(f"both CPUs at their fast level at once: "
                         f"{100 * doc['both_fast_share']:.0f}% of the windows")
    worst = max(r["ratio"] for r in doc["cpus"].values())
    sib = doc["sibling"]["cost"]
    targets = [
        Target("quiet cores: slow level / fast level, worst CPU", f"<= {QUIET}x",
               f"{worst:.2f}x", worst, worst <= QUIET),
        Target("one CPU of ours busy slows the other", f"<= {SIBLING}x", f"{sib:.2f}x", sib,
               sib <= SIBLING),
    ]
    common.finish(doc, targets, args.out, "host: the 2 cores the reclaim targets assume")
    return 0


if __name__ == "__main__":
    common.run(main)

"""Reclaim benchmark: kcompressd (compressor thread, then task) against kswapd on the default
high-pressure workload, how close it comes to what two cores allow, and sweeps over pressure,
think time, ring size and data kind that show where the split does not pay.

Headline: experiment.compare with the runner's defaults, modes alternating per repetition;
each ratio is taken per repetition (kcompressd run / the kswapd run next to it) and reported as
median (min..max). Ideal ratio, from each kswapd run's own counters:

    ideal = (scan_us + compress_us) / max(scan_us, compress_us)

the speed-up if a second core took all the compressing off the scanner and the two overlapped
perfectly; share = ratio / ideal. A trace pair (the same configs with sample_ms 10) feeds the
time panels of `ucompressd plot`: sampling that often slows the board by a few percent, so the
headline figures come from the default sampling.

Sweeps: each point runs kswapd and kcompressd/thread with the same seed. Sizes are the defaults
where they fit; the pressure sweep keeps frames fixed and the data sweep uses one size for all
kinds, halved until the largest arena is no larger than the default config's (which the
headline just ran) or 60% of the board's free heap, whichever is larger.

    python benchmarks/bench_reclaim.py [--port URL] [--out results/reclaim.json] [--quick]
"""

from __future__ import annotations

import time
from typing import Any

import common
from common import Target, fmt, fmt_spread, scaled, spread
from rich.table import Table

from ucompressd import experiment
from ucz import runner
from ucz.pagedata import KINDS

STEAL_TARGET = 1.6  # kcompressd/thread pgsteal_anon/s over kswapd's
STALL_TARGET = 0.80  # fraction of allocation stalls removed
SHARE_TARGET = 0.90  # of the ideal ratio
PRESSURES = (1.5, 2, 3, 4, 6, 8)  # pages / frames
THINKS = (0, 20, 100, 500)  # us per access
RINGS = (4, 16, 64, 256)
ARENA_SHARE = 0.6  # the largest arena a sweep may ask of the board's free heap
TRACE_SAMPLE_MS = 10


def ideal(run: dict[str, Any]) -> float | None:
    """What two cores allow, from a kswapd run: scanning and compressing fully overlapped."""
    c = run.get("counters") or {}
    scan, comp = c.get("scan_us", 0), c.get("compress_us", 0)
    return (scan + comp) / max(scan, comp) if max(scan, comp) > 0 else None


def ideal_run(run: dict[str, Any]) -> float | None:
    """A second ceiling, for the whole run: everything but storing pages stays on core 0,
    storing moves to core 1. The issue's ideal() leaves out the app's own work, which
    overlaps with the compressor as well, so runs can exceed it; this one they should not."""
    c = run.get("counters") or {}
    el, comp = c.get("elapsed_us", 0), c.get("compress_us", 0)
    return el / max(el - comp, comp) if el > 0 else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _cut(after: float | None, before: float | None) -> float | None:
    """1 - after/before: the fraction removed (negative: more than before)."""
    r = _ratio(after, before)
    return None if r is None else 1 - r


def versus(ks: list[dict[str, Any]], kc: list[dict[str, Any]]) -> dict[str, Any]:
    """kcompressd runs against the kswapd runs of the same repetitions: per-pair ratios."""
    mk = [experiment.metrics(r) for r in ks]
    mc = [experiment.metrics(r) for r in kc]
    pairs = list(zip(mk, mc, ks))
    steal = [_ratio(c["pgsteal_anon_per_s"], k["pgsteal_anon_per_s"]) for k, c, _ in pairs]
    ideals = [ideal(r) for _, _, r in pairs]
    runs = [ideal_run(r) for _, _, r in pairs]
    out: dict[str, Any] = {
        "steal_ratio": spread(steal),
        "ideal": spread(ideals),
        "share": spread([_ratio(s, i) for s, i in zip(steal, ideals)]),
        "ideal_run": spread(runs),
        "share_run": spread([_ratio(s, i) for s, i in zip(steal, runs)]),
        "ops_ratio": spread([_ratio(c["ops_per_s"], k["ops_per_s"]) for k, c, _ in pairs]),
    }
    def both(key: str) -> dict[str, Any]:
        return {"kswapd": spread([k[key] for k in mk]), "kcompressd": spread([c[key] for c in mc])}

    for key in ("allocstall", "stall_total_us", "stall_p99_us"):
        out[key] = both(key)
        out[key]["reduction"] = spread([_cut(c[key], k[key]) for k, c, _ in pairs])
    for key in ("pgsteal_anon_per_s", "ops_per_s", "kcompressd_fallback", "corrupt"):
        out[key] = both(key)
    return out


def corrupt_runs(doc: dict[str, Any]) -> tuple[int, int]:
    """(corrupt pages, runs) over every run of a compare document, repetitions included."""
    runs = [r for rs in doc.get("repeats", {}).values() for r in rs] or \
        [v for k, v in doc.items() if k not in ("summary", "repeats") and isinstance(v, dict)]
    return sum((r.get("counters") or {}).get("corrupt", 0) for r in runs), len(runs)


def fit(overrides: list[dict[str, Any]], limit: int, keep_frames: bool = False) -> tuple[int, int]:
    """Pages and frames (defaults, halved as needed) at which every override's arena fits."""
    p, f = runner.DEFAULTS["pages"], runner.DEFAULTS["frames"]

    def worst(pages: int, frames: int) -> int:
        # An override's pages are "x" times the frames (pressure sweep), else `pages`.
        return max(runner.arena_needed(runner.config(
            {"pages": round(o["x"] * frames) if "x" in o else pages, "frames": frames,
             **{k: v for k, v in o.items() if k != "x"}})) for o in overrides)

    while worst(p, f) > limit and f > 16:  # 16: room for the default watermarks
        f //= 2
        if not keep_frames:
            p //= 2
    return p, f


class Bench:
    def __init__(self, board: experiment.Board, timeout: float, status: Any) -> None:
        self.board = board
        self.timeout = timeout
        self.status = status
        self.corrupt = 0
        self.runs = 0

    def compare(self, what: str, cfgs: dict[str, dict[str, Any]], repeat: int) -> dict[str, Any]:
        def on_progress(label: str, done: int, total: int) -> None:
            self.status.update(f"{what}: {label} {done}/{total} ops")

        try:
            doc = experiment.compare(self.board, cfgs, repeat, on_progress, self.timeout)
        except experiment.RunFailed as e:
            doc = e.partial
            doc["error"] = str(e)
        bad, n = corrupt_runs(doc)
        self.corrupt += bad
        self.runs += n
        return doc


def slim(doc: dict[str, Any]) -> dict[str, Any]:
    """A sweep point's compare document without the samples (every counter is kept)."""
    def strip(r: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in r.items() if k != "samples"}

    out = {k: (strip(v) if isinstance(v, dict) and "counters" in v else v)
           for k, v in doc.items() if k != "repeats"}
    if "repeats" in doc:
        out["repeats"] = {m: [strip(r) for r in rs] for m, rs in doc["repeats"].items()}
    return out


def runs_of(doc: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    if mode in doc.get("repeats", {}):
        return doc["repeats"][mode]
    return [doc[mode]] if mode in doc else []


def sweep(bench: Bench, name: str, label: str, values: list[Any], configs: list[dict[str, Any]],
          repeat: int) -> dict[str, Any]:
    points = []
    for v, args in zip(values, configs):
        cfgs = {"kswapd": runner.config({**args, "mode": "kswapd"}),
                "kcompressd": runner.config({**args, "mode": "kcompressd",
                                             "compressor": "thread"})}
        doc = bench.compare(f"{name} {v}", cfgs, repeat)
        point: dict[str, Any] = {"value": v, "args": args, "compare": slim(doc)}
        if "error" in doc:
            point["error"] = doc["error"]
        ks, kc = runs_of(doc, "kswapd"), runs_of(doc, "kcompressd")
        if ks and kc and "error" not in doc:
            point["versus"] = versus(ks, kc)
        points.append(point)
    return {"param": name, "label": label, "points": points}


def sweep_table(s: dict[str, Any]) -> Table:
    t = Table(title=f"sweep: {s['label']} (kcompressd/thread vs kswapd, same seed)")
    for col in ("value", "kswapd steal/s", "kcompressd steal/s", "ratio", "ideal", "share",
                "stalls ks -> kc", "stall cut", "ops ratio", "fallbacks"):
        t.add_column(col, justify="right")
    for p in s["points"]:
        vs = p.get("versus")
        if vs is None:
            t.add_row(str(p["value"]), f"[red]failed: {p.get('error', 'no runs')}[/red]")
            continue
        st = vs["allocstall"]
        t.add_row(
            str(p["value"]),
            fmt(vs["pgsteal_anon_per_s"]["kswapd"]["median"], "", 0),
            fmt(vs["pgsteal_anon_per_s"]["kcompressd"]["median"], "", 0),
            fmt_spread(vs["steal_ratio"]), fmt(vs["ideal"]["median"]),
            fmt(scaled(vs["share"], 100)["median"], "%", 0),
            f"{fmt(st['kswapd']['median'], '', 0)} -> {fmt(st['kcompressd']['median'], '', 0)}",
            fmt(scaled(st["reduction"], 100)["median"], "%", 0),
            fmt(vs["ops_ratio"]["median"]),
            fmt(vs["kcompressd_fallback"]["kcompressd"]["median"], "", 0),
        )
    return t


def headline_table(vs: dict[str, dict[str, Any]]) -> Table:
    t = Table(title="default workload: kcompressd against kswapd (median (min..max) over "
                    "repetitions, each ratio per repetition)")
    t.add_column("figure")
    for name in vs:
        t.add_column(f"kcompressd/{name}", justify="right")

    def pct(s: dict[str, Any]) -> str:
        return fmt_spread(scaled(s, 100), "%", 0)

    def both(key: str, mode: str) -> Any:
        return lambda v: fmt_spread(v[key][mode], "", 0)

    rows = [
        ("pgsteal_anon/s, kswapd", both("pgsteal_anon_per_s", "kswapd")),
        ("pgsteal_anon/s, kcompressd", both("pgsteal_anon_per_s", "kcompressd")),
        ("pgsteal_anon/s ratio", lambda v: fmt_spread(v["steal_ratio"])),
        ("ideal ratio (kswapd counters)", lambda v: fmt_spread(v["ideal"])),
        ("share of ideal", lambda v: pct(v["share"])),
        ("whole-run ideal (kswapd counters)", lambda v: fmt_spread(v["ideal_run"])),
        ("share of whole-run ideal", lambda v: pct(v["share_run"])),
        ("allocation stalls, kswapd", both("allocstall", "kswapd")),
        ("allocation stalls, kcompressd", both("allocstall", "kcompressd")),
        ("stalls removed", lambda v: pct(v["allocstall"]["reduction"])),
        ("stall time total (us), kswapd", both("stall_total_us", "kswapd")),
        ("stall time total (us), kcompressd", both("stall_total_us", "kcompressd")),
        ("stall time removed", lambda v: pct(v["stall_total_us"]["reduction"])),
        ("stall p99 (us, <=), kswapd", both("stall_p99_us", "kswapd")),
        ("stall p99 (us, <=), kcompressd", both("stall_p99_us", "kcompressd")),
        ("stall p99 reduction", lambda v: pct(v["stall_p99_us"]["reduction"])),
        ("app ops/s ratio", lambda v: fmt_spread(v["ops_ratio"])),
        ("kcompressd fallbacks (ring full)", both("kcompressd_fallback", "kcompressd")),
    ]
    for label, f in rows:
        t.add_row(label, *(f(v) for v in vs.values()))
    return t


def reclaim_targets(vs: dict[str, Any] | None, has_thread: bool, doc: dict[str, Any],
                    bench: Bench) -> list[Target]:
    """The issue's targets next to the figures (vs: kcompressd/thread against kswapd)."""
    why = "" if vs else ("the headline compare failed" if has_thread
                         else "no compressor thread on this board")
    none = spread([])

    def verdict(s: dict[str, Any], at_least: float) -> bool | None:
        return None if s["median"] is None else s["median"] >= at_least

    steal = vs["steal_ratio"] if vs else none
    cut = vs["allocstall"]["reduction"] if vs else none
    share = vs["share"] if vs else none
    targets = [
        Target("pgsteal_anon/s, kcompressd/thread over kswapd", f">= {STEAL_TARGET}x",
               fmt_spread(steal, "x"), steal["median"], verdict(steal, STEAL_TARGET), why),
        Target("allocation stalls removed", f">= {STALL_TARGET:.0%}",
               fmt_spread(scaled(cut, 100), "%", 0), cut["median"], verdict(cut, STALL_TARGET),
               why),
        Target("share of the ideal ratio", f">= {SHARE_TARGET:.0%}",
               fmt_spread(scaled(share, 100), "%", 0)
               + f" (ideal {fmt_spread(vs['ideal'] if vs else none)})",
               share["median"], verdict(share, SHARE_TARGET), why),
    ]
    failed = [name for name in ("compare", "trace") if "error" in doc.get(name, {})]
    failed += [f"{sw['param']}={p['value']}" for sw in doc.get("sweeps", {}).values()
               for p in sw["points"] if "error" in p]
    targets.append(Target("corrupt pages, every run", "0", f"{bench.corrupt} in {bench.runs} runs",
                          bench.corrupt, bench.corrupt == 0 and not failed,
                          f"failed: {', '.join(failed)}" if failed else ""))
    return targets


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__.split("\n\n")[0], "reclaim.json")
    ap.add_argument("--repeat", type=int, help="repetitions of the headline compare "
                                               "(default 3; --quick 1)")
    ap.add_argument("--sweep-repeat", type=int,
                    help="repetitions per sweep point (default 3; --quick 1)")
    ap.add_argument("--sweep-ops", type=int,
                    help=f"ops per sweep run (default {runner.DEFAULTS['ops']}; --quick 5000; "
                         "the think-time sweep uses a quarter)")
    ap.add_argument("--no-sweeps", action="store_true", help="the headline only")
    args = ap.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    srepeat = args.sweep_repeat or (1 if args.quick else 3)
    sops = args.sweep_ops or (5000 if args.quick else runner.DEFAULTS["ops"])
    t_start = time.monotonic()

    doc: dict[str, Any] = {
        "benchmark": "reclaim",
        "environment": common.environment(),
        "params": {"repeat": repeat, "sweep_repeat": srepeat, "sweep_ops": sops,
                   "defaults": runner.DEFAULTS, "trace_sample_ms": TRACE_SAMPLE_MS},
        "ideal_formula": "(scan_us + compress_us) / max(scan_us, compress_us), kswapd run",
        "ideal_run_formula": "elapsed_us / max(elapsed_us - compress_us, compress_us), kswapd run",
    }
    with common.open_board(args) as board, common.status("reclaim") as st:
        hello = experiment.probe(board, args.timeout)
        doc["board"] = {"port": board.url, "kind": board.kind, "interpreter": board.interpreter,
                        "hello": hello}
        bench = Bench(board, args.timeout, st)
        # A compressor thread needs _thread; without it only the task placement exists.
        placements = ["thread", "task"] if hello.get("threads") else ["task"]
        # placement -> its key in the compare document (the first is the plain "kcompressd")
        keys = {pl: "kcompressd" if i == 0 else f"kcompressd_{pl}"
                for i, pl in enumerate(placements)}
        # --board: the headline runs at the profile's sizes (placements stay the benchmark's).
        sized = {k: v for k, v in common.sizes(args).items() if k != "compressor"}
        cfgs = {"kswapd": runner.config({**sized, "mode": "kswapd"})}
        for pl, key in keys.items():
            cfgs[key] = runner.config({**sized, "mode": "kcompressd", "compressor": pl})
        doc["compare"] = bench.compare("headline", cfgs, repeat)
        doc["trace"] = bench.compare(
            "trace", {m: {**cfgs[m], "sample_ms": TRACE_SAMPLE_MS}
                      for m in ("kswapd", "kcompressd")}, 1)

        if not args.no_sweeps and "thread" in placements:
            # The largest arena a sweep point may ask for: the default config's when the headline
            # just ran it, else a share of the free heap (one contiguous block must be found).
            limit = int((hello.get("mem_free") or 0) * ARENA_SHARE) or 1 << 30
            if "error" not in doc["compare"]:
                limit = max(limit, runner.arena_needed(cfgs["kswapd"]))
            base = {"ops": sops}
            sweeps = {}
            _, f = fit([{"x": x} for x in PRESSURES], limit, keep_frames=True)
            sweeps["pressure"] = sweep(
                bench, "pressure", f"pressure: pages / frames ({f} frames)", list(PRESSURES),
                [{**base, "frames": f, "pages": round(x * f)} for x in PRESSURES], srepeat)
            # Think time and ring at the default size (if it fits): the default workload, one knob
            # turned. The think sweep runs a quarter of the ops: 500 us each adds up.
            p, f = fit([{}], limit)
            size = {**base, "pages": p, "frames": f}
            sweeps["think_us"] = sweep(
                bench, "think_us", f"think time per access (us), {sops // 4} ops",
                list(THINKS), [{**size, "ops": sops // 4, "think_us": t} for t in THINKS],
                srepeat)
            sweeps["ring"] = sweep(bench, "ring", "ring slots", list(RINGS),
                                   [{**size, "ring": r} for r in RINGS], srepeat)
            p, f = fit([{"data": k} for k in KINDS], limit)
            sweeps["data"] = sweep(bench, "data", f"data kind ({p} pages, {f} frames)",
                                   list(KINDS), [{**base, "data": k, "pages": p, "frames": f}
                                                 for k in KINDS], srepeat)
            doc["sweeps"] = sweeps
        elif not args.no_sweeps:
            common.err.print("no sweeps: they run kcompressd/thread, and this board has no _thread")

    cmp = doc["compare"]
    if "error" in cmp:
        common.err.print(f"[red]headline compare failed: {cmp['error']}[/red]")
    vs = {}
    if "error" not in cmp:
        vs = {pl: versus(runs_of(cmp, "kswapd"), runs_of(cmp, key)) for pl, key in keys.items()}
    doc["headline"] = vs
    if vs:
        common.console.print(headline_table(vs))
        common.console.print("ideal ratio = (scan_us + compress_us) / max(scan_us, compress_us) "
                             "of the kswapd run: scanning and compressing overlapped on two cores;\n"
                             "whole-run ideal = elapsed_us / max(elapsed_us - compress_us, "
                             "compress_us): only storing pages moves to the second core")
    for sw in doc.get("sweeps", {}).values():
        common.console.print(sweep_table(sw))
    doc["elapsed_s"] = round(time.monotonic() - t_start, 1)

    targets = reclaim_targets(vs.get("thread"), "thread" in placements, doc, bench)
    common.finish(doc, targets, args.out, f"Reclaim targets ({doc['elapsed_s']} s)")
    return 0 if targets[-1].met else 1  # a run failed or corrupted a page


if __name__ == "__main__":
    common.run(main)

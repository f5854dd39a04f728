"""zram benchmark: what a program keeps in the same RAM with ucz.zram, and what writing costs.

Per data kind (text logs, sensor CSV, JSON records, random bytes), on the board (ucz.bench.zram,
each run in a freshly soft-reset interpreter): a ZramLog against a plain bytearray ring, and
littlefs on a ZramDisk against littlefs on the documented RAMBlockDev, every store given the
same RAM and filled until it is full, then read back and checked record by record. ZramLog and
ZramDisk run in mode kswapd (the caller compresses), kcompressd with a task compressor (the
fill runs in asyncio beside the device's run() task) and kcompressd with the compressor thread.
Figures: bytes held (capacity: ZramLog over the ring, ZramDisk over the RAMBlockDev), write
throughput (bytes over the time spent inside the write calls), write and read p50/p99 (1 us
buckets), medians over --repeat runs with min..max.

    python benchmarks/bench_zram.py [--port URL] [--out results/zram.json] [--quick]
"""

from __future__ import annotations

import json
from typing import Any

import common
from common import Target, fmt, fmt_spread, spread
from rich.table import Table

from ucz.bench import ZRAM_KINDS

# The targets.
CAPACITY_TARGETS = {"text": 2.0, "sensor": 1.5}  # ZramLog bytes held / bytearray ring's
P99_VS_PLAIN = 2.0  # thread placement: write p99 <= 2x plain RAM's ...
P99_VS_KSWAPD = 0.5  # ... and <= half of kswapd mode's
MODES = (("kswapd", "task"), ("kcompressd", "task"), ("kcompressd", "thread"))
DISK_X = 2  # ZramDisk size / its RAM: RAM, not blocks, ends the fill (one growing file
            # leaves littlefs little stale data: 0.02-0.08 measured)


def jobs(kinds: list[str]) -> list[tuple[str, str, str, str]]:
    out = []
    for kind in kinds:
        out.append((kind, "ring", "-", "-"))
        out.append((kind, "ramblockdev", "-", "-"))
        for store in ("zramlog", "zramdisk"):
            for mode, comp in MODES:
                out.append((kind, store, mode, comp))
    return out


def board_zram(repl: common.RawRepl, kind: str, store: str, mode: str, comp: str, ram: int,
               page: int, block: int, timeout: float) -> dict[str, Any]:
    args = dict(kind=kind, store=store, mode=mode if mode != "-" else "kswapd",
                compressor=comp if comp != "-" else "task", ram=ram, page=page, disk_x=DISK_X,
                block=block)
    call = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return repl.call(f"import ucz.bench, json\nprint(json.dumps(ucz.bench.zram({call})))",
                     timeout=timeout)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def col(f):
        return spread([f(r) for r in runs])

    return {
        "bytes": col(lambda r: r["bytes"]),
        "records": col(lambda r: r["records"]),
        "write_MBps": col(lambda r: r["write_Bps"] / 1e6 if r["write_Bps"] else None),
        "write_p50": col(lambda r: r["write_us"]["p50"]),
        "write_p99": col(lambda r: r["write_us"]["p99"]),
        "read_p99": col(lambda r: r["read_us"]["p99"]),
        "ok": all(r["ok"] for r in runs),
        "corrupt": max((r.get("stats") or {}).get("corrupt", 0) for r in runs),
        "stale_share": col(lambda r: (r.get("stats_fs") or {}).get("stale_share")),
    }


def key(store: str, mode: str, comp: str) -> str:
    return store if mode == "-" else f"{store} {mode}/{comp}"


def ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    if a["median"] is None or not b["median"]:
        return None
    return a["median"] / b["median"]


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__.split("\n\n")[0], "zram.json")
    ap.add_argument("--ram", type=int, default=96, metavar="KB",
                    help="RAM each store gets (default 96; --quick 48)")
    ap.add_argument("--page", type=int, default=4096, help="ZramLog page (default 4096)")
    ap.add_argument("--block", type=int, default=1024,
                    help="ZramDisk block (default 1024: littlefs rewrites less per flush)")
    ap.add_argument("--repeat", type=int, help="runs per store (default 3; --quick 1)")
    ap.add_argument("--kinds", default=",".join(ZRAM_KINDS),
                    help=f"data kinds (default {','.join(ZRAM_KINDS)})")
    args = ap.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    bad = [k for k in kinds if k not in ZRAM_KINDS]
    if bad:
        ap.error(f"--kinds: {', '.join(bad)} not among {', '.join(ZRAM_KINDS)}")
    ram = (48 if args.quick and args.ram == 96 else args.ram) * 1024
    reps = args.repeat or (1 if args.quick else 3)
    todo = jobs(kinds)
    doc: dict[str, Any] = {"benchmark": "zram", "environment": common.environment(),
                           "params": {"ram": ram, "page": args.page, "block": args.block,
                                      "repeat": reps,
                                      "disk_x": DISK_X, "kinds": kinds}}
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {k: {} for k in kinds}
    with common.open_board(args) as board:
        doc["board"] = {"port": board.url, "kind": board.kind, "interpreter": board.interpreter}
        with common.RawRepl(board.url, args.timeout) as repl, common.status("zram") as st:
            n = 0
            for rep in range(reps):
                for kind, store, mode, comp in todo:  # repetitions outermost: drift spreads
                    n += 1
                    st.update(f"zram {n}/{reps * len(todo)}: {kind} {key(store, mode, comp)}")
                    repl.soft_reset()  # a fresh heap: each store finds one contiguous block
                    r = board_zram(repl, kind, store, mode, comp, ram, args.page,
                                   args.block, max(args.timeout, 300))
                    raw[kind].setdefault(key(store, mode, comp), []).append(r)
    doc["runs"] = raw
    summary = {kind: {k: summarize(v) for k, v in raw[kind].items()} for kind in kinds}
    doc["summary"] = summary

    for kind in kinds:
        s = summary[kind]
        t = Table(title=f"{kind}: {ram // 1024} KB of RAM per store")
        for col in ("store", "held KB", "capacity x", "write MB/s", "write p50 us",
                    "write p99 us", "read p99 us", "stale", "checked"):
            t.add_column(col, justify="left" if col == "store" else "right")
        for k, v in s.items():
            base = s["ring"] if k.startswith("zramlog") else s["ramblockdev"] \
                if k.startswith("zramdisk") else None
            cap = ratio(v["bytes"], base["bytes"]) if base else None
            t.add_row(k, fmt_spread(common.scaled(v["bytes"], 1 / 1024), "", 1),
                      fmt(cap, "x"), fmt_spread(v["write_MBps"]), fmt_spread(v["write_p50"]),
                      fmt_spread(v["write_p99"]), fmt_spread(v["read_p99"]),
                      fmt(v["stale_share"]["median"]),
                      "ok" if v["ok"] and not v["corrupt"] else "FAILED")
        common.console.print(t)

    targets: list[Target] = []
    for kind, want in CAPACITY_TARGETS.items():
        if kind not in summary:
            continue
        s = summary[kind]
        for mode, comp in MODES:
            k = key("zramlog", mode, comp)
            c = ratio(s[k]["bytes"], s["ring"]["bytes"])
            targets.append(Target(f"{kind}: ZramLog {mode}/{comp} capacity vs bytearray ring",
                                  f">= {want}x", fmt(c, "x"), c,
                                  None if c is None else c >= want))
        for mode, comp in MODES:
            k = key("zramdisk", mode, comp)
            c = ratio(s[k]["bytes"], s["ramblockdev"]["bytes"])
            targets.append(Target(f"{kind}: littlefs/ZramDisk {mode}/{comp} capacity vs "
                                  "RAMBlockDev", f">= {want}x (the same target)", fmt(c, "x"),
                                  c, None if c is None else c >= want))
    for kind in kinds:
        s = summary[kind]
        for store, plain in (("zramlog", "ring"), ("zramdisk", "ramblockdev")):
            thr = s[key(store, "kcompressd", "thread")]["write_p99"]
            ksw = s[key(store, "kswapd", "task")]["write_p99"]
            pl = s[plain]["write_p99"]
            a = ratio(thr, pl)
            b = ratio(thr, ksw)
            targets.append(Target(f"{kind}: {store} thread write p99 vs {plain}",
                                  f"<= {P99_VS_PLAIN}x", f"{fmt(thr['median'], ' us')} vs "
                                  f"{fmt(pl['median'], ' us')} ({fmt(a, 'x')})", a,
                                  None if a is None else a <= P99_VS_PLAIN))
            targets.append(Target(f"{kind}: {store} thread write p99 vs kswapd mode",
                                  f"<= {P99_VS_KSWAPD}x", f"{fmt(thr['median'], ' us')} vs "
                                  f"{fmt(ksw['median'], ' us')} ({fmt(b, 'x')})", b,
                                  None if b is None else b <= P99_VS_KSWAPD))
    intact = all(v["ok"] and not v["corrupt"] for s in summary.values() for v in s.values())
    targets.append(Target("every record read back intact, corrupt == 0", "yes",
                          "yes" if intact else "no", 1.0 if intact else 0.0, intact))
    common.finish(doc, targets, args.out, f"zram targets ({ram // 1024} KB, {args.page} B log "
                                           f"pages, {args.block} B disk blocks, {reps} runs)")
    json.dumps(doc)  # the file above is the record; nothing else to print
    return 0 if intact else 1


if __name__ == "__main__":
    common.run(main)

"""Memory benchmark: pool metadata per logical page and per frame, the firmware's heap at idle,
and the effective capacity of frames + zpool for each data kind.

Board side (ucz.bench.memory, in a freshly soft-reset interpreter): the heap the server's
modules and its Server object take, module by module, and the heap growth of a Pool when its
logical pages, then its frames, double (arena preallocated, so only metadata grows).
Capacity: one run per data kind (runner defaults, mode kswapd: the store's footprint does not
depend on who compresses, and kswapd leaves no page queued at the end); logical pages held over
the bytes of frames + zpool zspages in use. Every kind runs the same pages and frames: the
defaults, halved (same pressure) until the arena of the least compressible kind takes at most
half of the heap left at idle, so that one contiguous block can be found for it.

    python benchmarks/bench_memory.py [--port URL] [--out results/memory.json] [--quick]
"""

from __future__ import annotations

from typing import Any

import common
from common import Target, fmt, fmt_spread, scaled, spread
from rich.table import Table

from ucompressd import experiment
from ucz import runner
from ucz.pagedata import KINDS

META_PAGE_MAX = 16  # bytes of metadata per logical page
META_FRAME_MAX = 4  # ... per frame
IDLE_HEAP_MAX = 48 * 1024  # firmware heap at idle, pool and zpool excluded

MEMORY_CODE = (
    # Before anything of ucz is imported: bench.memory reports its own cost against this.
    "import gc, json\ngc.collect()\n_b = gc.mem_alloc()\nimport ucz.bench\n"
    "print(json.dumps(ucz.bench.memory(_b)))"
)


def capacity(run: dict[str, Any]) -> dict[str, Any]:
    """Logical pages held per byte of frames + zpool, from one run's results."""
    cfg, c, states = run["config"], run["counters"], run.get("states") or {}
    ps = cfg["page_size"]
    held = cfg["pages"] - states.get("unmapped", 0)  # every page touched is held somewhere
    frames_b = cfg["frames"] * ps
    used = frames_b + c["mem_used"]  # zspages in use: what the store really takes
    reserved = frames_b + cfg["zpool"]  # the arena the board sets aside for this config
    meta = (run.get("meta") or {}).get("total_bytes") or 0
    return {
        "data": cfg["data"],
        "pages_held": held,
        "states": states,
        "frame_bytes": frames_b,
        "zpool_used": c["mem_used"],
        "zpool_reserved": cfg["zpool"],
        "meta_bytes": meta,
        "pages_per_kib": held / (used / 1024),
        # Bytes of logical data held per byte of RAM: >1 is what compression buys.
        "capacity_x": held * ps / used,
        "capacity_x_with_meta": held * ps / (used + meta),
        "capacity_x_reserved": held * ps / reserved,
        "compression_ratio": (c["orig_data_size"] / c["compr_data_size"]
                              if c.get("compr_data_size") else None),
        "same_pages": c.get("same_pages"),
        "incompressible": c.get("incompressible"),
        "corrupt": c.get("corrupt"),
        "heap_alloc_end": run.get("heap_alloc"),
        "heap_free_end": run.get("heap_free"),
    }


def capacity_config(heap_free: int | None, ops: int, pages: int | None,
                    frames: int | None) -> dict[str, int]:
    """Pages and frames for the capacity runs (see the module doc)."""
    d = runner.DEFAULTS
    p, f = pages or d["pages"], frames or d["frames"]
    if pages or frames or heap_free is None:
        return {"pages": p, "frames": f, "ops": ops}
    worst = max(runner.arena_needed(runner.config({"data": k, "pages": p, "frames": f}))
                for k in KINDS)
    while worst > heap_free // 2 and f >= 8 and p > f:
        p, f = p // 2, f // 2
        worst = max(runner.arena_needed(runner.config({"data": k, "pages": p, "frames": f}))
                    for k in KINDS)
    return {"pages": p, "frames": f, "ops": ops}


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__.split("\n\n")[0], "memory.json")
    ap.add_argument("--reps", type=int, help="heap measurements, each after a soft reset "
                                             "(default 3; --quick 1)")
    ap.add_argument("--pages", type=int, help="logical pages of the capacity runs")
    ap.add_argument("--frames", type=int, help="frames of the capacity runs")
    args = ap.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    ops = 5000 if args.quick else runner.DEFAULTS["ops"]

    doc: dict[str, Any] = {"benchmark": "memory", "environment": common.environment(),
                           "params": {"reps": reps, "ops": ops}}
    heaps: list[dict[str, Any]] = []
    runs: dict[str, Any] = {}
    with common.open_board(args) as board:
        doc["board"] = {"port": board.url, "kind": board.kind, "interpreter": board.interpreter}
        with common.RawRepl(board.url, args.timeout) as repl, common.status("heap") as st:
            for i in range(reps):
                st.update(f"heap at idle {i + 1}/{reps}")
                if i:
                    repl.soft_reset()
                heaps.append(repl.call(MEMORY_CODE))
        prof = common.sizes(args)  # --board: the profile's pages and frames, unless given
        size = capacity_config(heaps[0]["heap_free_idle"], ops, args.pages or prof.get("pages"),
                               args.frames or prof.get("frames"))
        doc["params"]["capacity"] = size
        with common.status("capacity") as st:
            for kind in KINDS:
                st.update(f"capacity: {kind}")
                cfg = runner.config({"mode": "kswapd", "data": kind, **size})
                try:
                    runs[kind] = experiment.run(board, cfg, timeout=args.timeout)
                except experiment.RunFailed as e:
                    runs[kind] = e.partial
    doc["board"]["platform"] = heaps[0]["platform"]
    doc["heap"] = heaps
    doc["runs"] = runs

    h0 = heaps[0]
    idle = spread([h["heap_idle"] for h in heaps])
    per_page = spread([h["meta_measured"]["bytes_per_page"] for h in heaps])
    per_frame = spread([h["meta_measured"]["bytes_per_frame"] for h in heaps])
    doc["summary"] = {"heap_idle": idle, "meta_per_page": per_page, "meta_per_frame": per_frame,
                      "meta_formula": h0["meta_formula"], "heap_total": h0["heap_total"],
                      "bench_loaded": h0["bench_loaded"]}

    mods = Table(title=f"heap at idle on {h0['platform']} (lz4 {h0['lz4_impl']}), "
                       f"first measurement")
    mods.add_column("import / object")
    mods.add_column("heap bytes", justify="right")
    for name in [*h0["modules"], "Server()"]:  # import order (the board's JSON has none)
        mods.add_row(name, fmt(h0["heap_by_module"].get(name)))
    mods.add_row("[b]total at idle[/b]", fmt(h0["heap_idle"]))
    mods.add_row("heap size", fmt(h0["heap_total"]))
    mods.add_row("(ucz.bench itself, not counted)", fmt(h0["bench_loaded"]))
    common.console.print(mods)

    cap = Table(title=f"effective capacity per data kind: logical pages held in frames + zpool "
                      f"({size['pages']} pages, {size['frames']} frames of "
                      f"{runner.DEFAULTS['page_size']} B, {ops} ops)")
    for col in ("data", "pages held", "frames B", "zpool used B", "pages/KiB", "capacity",
                "with metadata", "vs reserved arena", "LZ4 ratio", "corrupt"):
        cap.add_column(col, justify="left" if col == "data" else "right")
    caps: dict[str, Any] = {}
    for kind, r in runs.items():
        if "error" in r or not r.get("counters"):
            cap.add_row(kind, f"[red]run failed: {r.get('error')}[/red]")
            continue
        c = caps[kind] = capacity(r)
        cap.add_row(kind, fmt(c["pages_held"]), fmt(c["frame_bytes"]), fmt(c["zpool_used"]),
                    fmt(c["pages_per_kib"], "", 2), fmt(c["capacity_x"], "x"),
                    fmt(c["capacity_x_with_meta"], "x"), fmt(c["capacity_x_reserved"], "x"),
                    fmt(c["compression_ratio"]), fmt(c["corrupt"]))
    doc["capacity"] = caps
    common.console.print(cap)

    f = h0["meta_formula"]
    targets = [
        Target("metadata per logical page (heap growth per page)", f"<= {META_PAGE_MAX} B",
               fmt_spread(per_page, " B") + f"; formula {f['bytes_per_page']} B",
               per_page["median"],
               None if per_page["median"] is None else per_page["median"] <= META_PAGE_MAX),
        Target("metadata per frame (heap growth per frame)", f"<= {META_FRAME_MAX} B",
               fmt_spread(per_frame, " B") + f"; formula {f['bytes_per_frame']} B",
               per_frame["median"],
               None if per_frame["median"] is None else per_frame["median"] <= META_FRAME_MAX),
        Target("firmware heap at idle (pool and zpool excluded)",
               f"<= {IDLE_HEAP_MAX // 1024} KB",
               fmt_spread(scaled(idle, 1 / 1024), " KB", 1),
               idle["median"],
               None if idle["median"] is None else idle["median"] <= IDLE_HEAP_MAX),
    ]
    failed = [k for k in KINDS if k not in caps]
    corrupt = sum(c["corrupt"] or 0 for c in caps.values())
    targets.append(Target("corrupt pages in the capacity runs", "0",
                          f"{corrupt} in {len(caps)} runs", corrupt, corrupt == 0 and not failed,
                          f"failed: {', '.join(failed)}" if failed else ""))
    common.finish(doc, targets, args.out, "Memory targets")
    return 1 if failed else 0


if __name__ == "__main__":
    common.run(main)

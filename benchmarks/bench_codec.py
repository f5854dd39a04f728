"""Codec benchmark: the firmware's LZ4 on the board (the MicroPython unix port when simulated)
against the C library (python-lz4) on this host, on the very same pages, in one run.

The board codes pages with ucz.bench.codec (lz4.compress_into / decompress_into, the pool's hot
path); the host regenerates the same pages with ucz.pagedata.fill and codes them with
lz4.block. Rounds alternate board and host per data kind, so drift on a busy machine hits both:
speeds are medians over rounds x repetitions, slowdowns (C speed / firmware speed) the median of
the per-round figures; each with its min..max.

    python benchmarks/bench_codec.py [--port URL] [--out results/codec.json] [--quick]
"""

from __future__ import annotations

import time
from typing import Any

import common
from common import Target, fmt, fmt_spread, scaled, spread

import lz4
import lz4.block
from rich.table import Table

from ucz.pagedata import KINDS, csum, fill

SPEED_TARGETS = {"compress": 6.0, "decompress": 8.0}  # C library / firmware, unix port, mixed
RATIO_TOLERANCE = 0.01  # firmware compression ratio within 1% of the C library's


def host_pages(kind: str, page_size: int, pages: int, seed: int) -> list[bytes]:
    """The pages ucz.bench.codec generates on the board, byte for byte."""
    buf = bytearray(pages * page_size)
    for p in range(pages):
        fill(buf, p * page_size, page_size, KINDS.index(kind), seed, p, 0)
    return [bytes(buf[p * page_size:(p + 1) * page_size]) for p in range(pages)]


def c_codec(pages: list[bytes], reps: int) -> dict[str, Any]:
    """The C library's default mode on the same pages: sizes, checksums, time per repetition."""
    compress, decompress = lz4.block.compress, lz4.block.decompress
    size = len(pages[0])
    blocks = [compress(pg, mode="default", store_size=False) for pg in pages]
    assert all(decompress(b, uncompressed_size=size) == pg for b, pg in zip(blocks, pages))
    comp_us: list[float] = []
    dec_us: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        for pg in pages:
            compress(pg, mode="default", store_size=False)
        t1 = time.perf_counter_ns()
        for b in blocks:
            decompress(b, uncompressed_size=size)
        t2 = time.perf_counter_ns()
        comp_us.append((t1 - t0) / 1000)
        dec_us.append((t2 - t1) / 1000)
    return {
        "sizes": [len(b) for b in blocks],
        "sums": [csum(b, 0, len(b)) for b in blocks],
        "compress_us": comp_us,
        "decompress_us": dec_us,
    }


def board_codec(repl: common.RawRepl, kind: str, page_size: int, pages: int, seed: int,
                reps: int) -> dict[str, Any]:
    return repl.call(
        "import ucz.bench, json\n"
        f"print(json.dumps(ucz.bench.codec({kind!r}, {page_size}, {pages}, {seed}, {reps})))"
    )


def summarize(kind: str, nbytes: int, fw: list[dict[str, Any]],
              c: list[dict[str, Any]]) -> dict[str, Any]:
    """Speeds (bytes per us = MB/s), slowdown factors and ratios of one kind over all rounds."""
    out: dict[str, Any] = {"kind": kind, "bytes": nbytes}
    for op in ("compress", "decompress"):
        fw_us = [u for r in fw for u in r[f"{op}_us"]]
        c_us = [u for r in c for u in r[f"{op}_us"]]
        out[f"fw_{op}_MBps"] = spread([nbytes / u for u in fw_us if u > 0])
        out[f"c_{op}_MBps"] = spread([nbytes / u for u in c_us if u > 0])
        # C speed / firmware speed = firmware time / C time, per round (board and host ran
        # moments apart, so a busy spell of the machine hits both), then the median.
        per_round = [spread(f[f"{op}_us"])["median"] / spread(h[f"{op}_us"])["median"]
                     for f, h in zip(fw, c) if spread(h[f"{op}_us"])["median"]]
        out[f"{op}_slowdown_rounds"] = spread(per_round)
        out[f"{op}_slowdown"] = out[f"{op}_slowdown_rounds"]["median"]
    fw0, c0 = fw[0], c[0]
    out["fw_compressed"] = fw0["compressed"]
    out["c_compressed"] = sum(c0["sizes"])
    out["fw_ratio"] = nbytes / fw0["compressed"]
    out["c_ratio"] = nbytes / out["c_compressed"]
    out["ratio_diff"] = out["fw_ratio"] / out["c_ratio"] - 1
    # The firmware codec claims byte-identical output: same sizes and same checksums, every page,
    # every round (a codec that varied between rounds would show here too).
    out["identical"] = all(r["sizes"] == c0["sizes"] and r["sums"] == c0["sums"] for r in fw)
    out["roundtrip_ok"] = all(r["roundtrip_ok"] for r in fw)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__.split("\n\n")[0], "codec.json")
    ap.add_argument("--page-size", type=int,
                    help="bytes per page (default: the --board profile's, else 1024)")
    ap.add_argument("--pages", type=int, help="pages per kind (default 64; --quick 16)")
    ap.add_argument("--reps", type=int, help="repetitions per round (default 10; --quick 5)")
    ap.add_argument("--rounds", type=int, help="board/host alternations (default 15; --quick 2)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    pages = args.pages or (16 if args.quick else 64)
    reps = args.reps or (5 if args.quick else 10)
    rounds = args.rounds or (2 if args.quick else 15)
    ps = args.page_size or common.sizes(args).get("page_size", 1024)

    doc: dict[str, Any] = {
        "benchmark": "codec",
        "environment": common.environment(),
        "params": {"page_size": ps, "pages": pages, "reps": reps, "rounds": rounds,
                   "seed": args.seed, "kinds": list(KINDS)},
        "c_library": {"python_lz4": lz4.__version__, "lz4": lz4.library_version_string()},
    }
    corpus = {k: host_pages(k, ps, pages, args.seed) for k in KINDS}
    fw_runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    c_runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    with common.open_board(args) as board, common.RawRepl(board.url, args.timeout) as repl, \
            common.status("codec") as st:
        doc["board"] = {"port": board.url, "kind": board.kind, "interpreter": board.interpreter}
        for r in range(rounds):
            for kind in KINDS:
                st.update(f"codec round {r + 1}/{rounds}: {kind}")
                fw_runs[kind].append(board_codec(repl, kind, ps, pages, args.seed, reps))
                c_runs[kind].append(c_codec(corpus[kind], reps))
    fw_platform = fw_runs["mixed"][0]["platform"]
    doc["board"]["platform"] = fw_platform
    doc["board"]["lz4_impl"] = fw_runs["mixed"][0]["impl"]
    doc["raw"] = {"firmware": fw_runs, "c": c_runs}
    doc["kinds"] = {k: summarize(k, ps * pages, fw_runs[k], c_runs[k]) for k in KINDS}

    # The speed targets are for the unix port, where firmware and C share the CPU; a real
    # board's figures stand alone (in KB/s).
    unix = fw_platform.endswith(" linux")
    table = Table(title=f"LZ4 on {pages} pages of {ps} B per kind, firmware ({fw_platform}, "
                        f"{doc['board']['lz4_impl']}) vs C library (host)")
    unit, scale = ("MB/s", 1.0) if unix else ("KB/s", 1000.0)
    for col in ("kind", "ratio fw", "ratio C", "same bytes",
                f"fw comp {unit}", "C comp MB/s", "C/fw", f"fw decomp {unit}", "C decomp MB/s",
                "C/fw"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    def fw_speed(s: dict[str, Any], op: str) -> str:
        return fmt_spread(scaled(s[f"fw_{op}_MBps"], scale), "", 1)

    for k, s in doc["kinds"].items():
        table.add_row(
            k, fmt(s["fw_ratio"], "", 3), fmt(s["c_ratio"], "", 3),
            "yes" if s["identical"] else "[red]NO[/red]",
            fw_speed(s, "compress"), fmt_spread(s["c_compress_MBps"], "", 0),
            fmt_spread(s["compress_slowdown_rounds"], "x", 1),
            fw_speed(s, "decompress"), fmt_spread(s["c_decompress_MBps"], "", 0),
            fmt_spread(s["decompress_slowdown_rounds"], "x", 1),
        )
    common.console.print(table)

    m = doc["kinds"]["mixed"]
    targets: list[Target] = []
    for op, limit in SPEED_TARGETS.items():
        x = m[f"{op}_slowdown"]
        fw_s, c_s = m[f"fw_{op}_MBps"]["median"], m[f"c_{op}_MBps"]["median"]
        measured = (f"{fmt_spread(m[f'{op}_slowdown_rounds'], 'x', 2)} "
                    f"(fw {fmt(fw_s * scale, ' ' + unit, 1)}, C {fmt(c_s, ' MB/s', 0)})")
        targets.append(Target(
            f"{op} speed, mixed corpus: C / firmware", f"<= {limit:g}x on the unix port",
            measured, x, (x is not None and x <= limit) if unix else None,
            "" if unix else f"board {fw_platform}: firmware figure stands alone"))
    d = m["ratio_diff"]
    targets.append(Target(
        "compression ratio, mixed corpus", f"within {RATIO_TOLERANCE:.0%} of C default",
        f"{m['fw_ratio']:.4f} vs C {m['c_ratio']:.4f} ({d:+.2%})", d,
        abs(d) <= RATIO_TOLERANCE))
    doc["pass"] = all(t.met is not False for t in targets) and all(
        s["identical"] and s["roundtrip_ok"] for s in doc["kinds"].values())
    common.finish(doc, targets, args.out, "Codec targets")
    if not all(s["roundtrip_ok"] for s in doc["kinds"].values()):
        common.err.print("[red]a firmware round trip failed[/red]")
        return 1
    return 0


if __name__ == "__main__":
    common.run(main)

"""The figures only an emulated Cortex-M board gives (ucompressd.qemu), and instruction counts
that do not depend on the machine's load.

On qemu-m0 (ARMv6-M, a Pico's heap) and qemu-m33 (ARMv8-M, a Pico 2's heap), in emulated time
(-icount: one instruction is 2**shift ns, so every figure repeats exactly):
- the firmware's heap at idle and the pool metadata per page / per frame on a 32-bit heap
  (ucz.bench.memory, as bench_memory measures it);
- the largest pool that fits the heap at 1 KiB pages (frames, with 4 logical pages per frame and
  the zpool sized for text pages), found by running it;
- LZ4 in instructions per byte, compress and decompress, per data kind (ucz.bench.codec), and
  what that is in MB/s at 125 MHz (RP2040) and 150 MHz (RP2350) at one instruction per cycle;
- kswapd against kcompressd (task placement: one core) with the profile's defaults.
On the host, under valgrind's callgrind: instructions per byte of the unix port's viper codec
and of the C library (the lz4 package), each as the difference between a run that codes N
pages and one that codes none.

    python benchmarks/bench_qemu.py [--board qemu-m0 --board qemu-m33] [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import common
from bench_memory import MEMORY_CODE
from common import fmt
from rich.table import Table

from ucompressd import boards, experiment, qemu
from ucz import runner
from ucz.pagedata import KINDS

PAGE = 1024
RP2040_MHZ, RP2350_MHZ = 125, 150


def instructions_per_byte(us: float, nbytes: int, shift: int) -> float:
    return us * 1000 / (1 << shift) / nbytes


def largest_pool(repl: common.RawRepl, heap: int) -> dict[str, Any]:
    """Most frames of PAGE bytes (pages = 4 x frames, zpool for text) that run, by bisection."""
    def fits(frames: int) -> bool:
        repl.soft_reset()
        cfg = {"pages": 4 * frames, "frames": frames, "page_size": PAGE, "ops": 50,
               "mode": "kswapd", "data": "text", "sample_ms": 60000}
        code = ("import json\nfrom ucz import runner\ntry:\n"
                f" r = runner.run(runner.config({cfg!r}))\n"
                " print(json.dumps({'ok': r['counters']['corrupt'] == 0}))\n"
                "except MemoryError:\n print(json.dumps({'ok': False}))\n")
        return bool(repl.call(code, timeout=600)["ok"])

    lo, hi = 4, heap // PAGE  # 4 frames fit (checked), heap/PAGE frames cannot
    if not fits(lo):
        return {"frames": 0}
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    cfg = runner.config({"pages": 4 * lo, "frames": lo, "page_size": PAGE, "data": "text"})
    return {"frames": lo, "pages": 4 * lo, "zpool": cfg["zpool"],
            "arena": runner.arena_needed(cfg), "heap": heap}


def on_board(name: str, quick: bool, timeout: float) -> dict[str, Any]:
    profile = boards.load(name)
    assert profile.qemu is not None
    shift = profile.qemu.icount_shift
    out: dict[str, Any] = {"profile": name, "icount_shift": shift,
                           "emulated_mhz": qemu.emulated_mhz(profile)}
    with qemu.QemuBoard(profile, log=sys.stderr) as board:
        assert board.image is not None
        out["image"] = board.image.info
        with common.RawRepl(board.port, timeout) as repl, common.status(name) as st:
            st.update(f"{name}: heap at idle")
            out["memory"] = repl.call(MEMORY_CODE)
            codec: dict[str, Any] = {}
            pages = 2 if quick else 8
            for kind in KINDS:
                st.update(f"{name}: codec {kind}")
                repl.soft_reset()
                r = repl.call("import ucz.bench, json\nprint(json.dumps(ucz.bench.codec("
                              f"{kind!r}, {PAGE}, {pages}, 1, 1)))", timeout=1200)
                n = pages * PAGE
                c = instructions_per_byte(r["compress_us"][0], n, shift)
                d = instructions_per_byte(r["decompress_us"][0], n, shift)
                codec[kind] = {"impl": r.get("impl"), "compress_ipb": c, "decompress_ipb": d,
                               "ratio": n / max(1, sum(r["sizes"])), "ok": r.get("roundtrip_ok"),
                               "raw": r}
            out["codec"] = codec
            if not quick:
                st.update(f"{name}: the largest pool at {PAGE} B pages")
                out["largest_pool"] = largest_pool(repl, profile.memory.heap)
        ops = 300 if quick else 2000
        cmp: dict[str, Any] = {}
        for mode in experiment.MODES:
            cfg = runner.config({**profile.defaults, "mode": mode, "ops": ops, "seed": 3})
            b = experiment.Board(board.port, "qemu", str(board), profile=profile,
                                 image=board.image.info)
            cmp[mode] = experiment.run(b, cfg, timeout=max(timeout, 120))
        out["compare"] = {m: experiment.metrics(r) | {"elapsed_us": r["counters"]["elapsed_us"],
                                                      "corrupt": r["counters"]["corrupt"]}
                          for m, r in cmp.items()}
    return out


_CALLGRIND_MP = """
import sys
sys.path.insert(0, {fw!r})
from ucz import lz4
from ucz.pagedata import KINDS, fill
n = {n}
src = bytearray({page})
dst = bytearray(lz4.bound({page}))
back = bytearray({page})
t = lz4.new_table()
fill(src, 0, {page}, KINDS.index({kind!r}), 1, 0, 0)
for i in range(n):
    k = lz4.compress(src, dst, t)
    {decode}
"""

_CALLGRIND_C = """
import sys
import lz4.block as b
sys.path.insert(0, {fw!r})
from ucz.pagedata import KINDS, fill
n = {n}
src = bytearray({page})
fill(src, 0, {page}, KINDS.index({kind!r}), 1, 0, 0)
blk = b.compress(bytes(src), store_size=False)
for i in range(n):
    {op}
"""


def _ir(argv: list[str]) -> int:
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           *argv], capture_output=True, text=True, timeout=1800)
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"callgrind failed: {proc.stderr[-400:]}")
    return int(m.group(1))


def callgrind(quick: bool) -> dict[str, Any]:
    """Instructions per byte on the host: the unix port's viper codec and the C library."""
    from ucompressd.sim import find_interpreter

    mp = list(find_interpreter().argv)
    fw = str(common.REPO / "firmware")
    n = 20 if quick else 100
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        def per_byte(template: str, argv0: list[str], **kw: Any) -> float:
            counts = []
            for count in (0, n):
                f = Path(d) / "cg.py"
                f.write_text(template.format(fw=fw, n=count, page=PAGE, **kw))
                counts.append(_ir([*argv0, str(f)]))
            return (counts[1] - counts[0]) / (n * PAGE)

        for kind in ("text", "sensor", "mixed") if quick else KINDS:
            out[kind] = {
                "viper_compress": per_byte(_CALLGRIND_MP, mp, kind=kind, decode="pass"),
                "viper_roundtrip": per_byte(_CALLGRIND_MP, mp, kind=kind,
                                            decode="lz4.decompress(memoryview(dst)[:k], back)"),
                "c_compress": per_byte(_CALLGRIND_C, [sys.executable], kind=kind,
                                       op="b.compress(bytes(src), store_size=False)"),
                "c_decompress": per_byte(_CALLGRIND_C, [sys.executable], kind=kind,
                                         op=f"b.decompress(blk, uncompressed_size={PAGE})"),
            }
            o = out[kind]
            o["viper_decompress"] = o.pop("viper_roundtrip") - o["viper_compress"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--board", action="append", metavar="NAME",
                    help="QEMU boards to measure (default qemu-m0 and qemu-m33)")
    ap.add_argument("--out", type=Path, default=common.RESULTS / "qemu.json")
    ap.add_argument("--quick", action="store_true", help="fewer pages and ops (smoke test)")
    ap.add_argument("--no-callgrind", action="store_true", help="skip the host's callgrind counts")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args(argv)
    doc: dict[str, Any] = {"benchmark": "qemu", "environment": common.environment(),
                           "boards": {}}
    for name in args.board or ["qemu-m0", "qemu-m33"]:
        doc["boards"][name] = on_board(name, args.quick, args.timeout)
    if not args.no_callgrind and shutil.which("valgrind"):
        with common.status("callgrind"):
            doc["callgrind"] = callgrind(args.quick)

    t = Table(title="LZ4 instructions per byte (1 KiB pages; emulated: -icount; host: callgrind)")
    for col in ("data", *[f"{b} {w}" for b in doc["boards"] for w in ("comp", "dec")],
                "unix viper comp", "unix viper dec", "C comp", "C dec"):
        t.add_column(col, justify="left" if col == "data" else "right")
    for kind in KINDS:
        row = [kind]
        for b in doc["boards"].values():
            c = b["codec"][kind]
            row += [fmt(c["compress_ipb"], "", 0), fmt(c["decompress_ipb"], "", 0)]
        cg = doc.get("callgrind", {}).get(kind, {})
        row += [fmt(cg.get(k), "", 1) for k in ("viper_compress", "viper_decompress",
                                                 "c_compress", "c_decompress")]
        t.add_row(*row)
    common.console.print(t)
    for name, b in doc["boards"].items():
        mhz = RP2040_MHZ if "m0" in name else RP2350_MHZ
        speeds = {k: mhz / v["compress_ipb"] for k, v in b["codec"].items()}
        m = b["memory"]
        common.console.print(
            f"{name}: heap at idle {m['heap_idle']} B of {m['heap_total']}; metadata "
            f"{m['meta_measured']['bytes_per_page']} B/page, "
            f"{m['meta_measured']['bytes_per_frame']} B/frame; lz4 {b['codec']['text']['impl']}"
            f" compress at {mhz} MHz: " + ", ".join(f"{k} {v:.3f} MB/s" for k, v in
                                                   speeds.items()))
        if "largest_pool" in b:
            common.console.print(f"{name}: largest pool at {PAGE} B pages: {b['largest_pool']}")
        for mode, r in b["compare"].items():
            common.console.print(f"{name} {mode}: {json.dumps(r)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc["environment"]["loadavg_end"] = list(__import__("os").getloadavg())
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    common.console.print(f"results in {args.out}")
    return 0


if __name__ == "__main__":
    common.run(main)

"""`ucompressd zram`: run a program's compressed RAM (ucz.zram) on a board and show its stats.

Loads: `logger` (examples/datalogger.py: hours of sensor samples in a ZramLog, and with --file
in a file on littlefs on a ZramDisk, against a bytearray ring and a RAMBlockDev of the same
RAM), `log` or `disk` (one ZramLog / littlefs-on-ZramDisk filled with --kind records until
full: ucz.bench.zram). Without --port a fresh simulated board with a Pico 2's heap (the pico2 profile's)
runs it; with --port the firmware is deployed first (only what changed). The board prints
progress lines and one result line; the table is the device's stats (zram's names).
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ucompressd import experiment, options
from ucompressd.boards import load as load_profile
from ucompressd.errors import Failure, InputError
from ucompressd.session import BoardError, Session

LOADS = ("logger", "log", "disk")
PROGRESS, RESULT = "~P", "~R"  # the board's line prefixes
# The stats shown first (zram's mm_stat/io_stat names, then reclaim), the rest after them.
FIRST = ("mode", "compressor", "page_size", "ram", "orig_data_size", "compr_data_size",
         "mem_used", "free_bytes", "pages_stored", "pages_resident", "same_pages",
         "huge_pages", "discarded", "enospc", "eio", "corrupt", "pgsteal_anon", "allocstall",
         "kcompressd_fallback", "kcompressd_queue_max", "pgrescued", "stale_share",
         "blocks_held", "fs_used_bytes")


class ZramInputError(InputError):
    """A bad argument: exit 2."""


class ZramFailed(Failure):
    """The device read back something else than was written: exit 1."""


def example_source() -> str:
    """examples/datalogger.py: installed as ucompressd.examples, or the checkout's file."""
    try:
        return (resources.files("ucompressd.examples") / "datalogger.py").read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        here = Path(__file__).resolve().parents[2] / "examples" / "datalogger.py"
        return here.read_text()


def board_code(ns: argparse.Namespace) -> str:
    """The program the board runs: progress lines, then one result line (JSON)."""
    ram = ns.ram * 1024
    head = (f"import json\n"
            f"def _progress(done, total):\n    print({PROGRESS!r}, done, total)\n")
    if ns.load == "logger":
        return ("_ZRAM_HOST = 1\n" + example_source() + "\n" + head +
                f"_r = run({ram}, {ns.file!r}, {ns.mode!r}, {ns.compressor!r}, _progress)\n"
                f"print({RESULT!r}, json.dumps(_r))\n")
    store = "zramlog" if ns.load == "log" else "zramdisk"
    mode = ns.mode or "kcompressd"
    return (head + "import ucz.bench\n"
            f"_r = ucz.bench.zram({ns.kind!r}, {store!r}, {mode!r}, {ns.compressor!r}, {ram},"
            f" {ns.page}, block={ns.page})\n"
            f"print({RESULT!r}, json.dumps(_r))\n")


def check(ns: argparse.Namespace) -> None:
    from ucz.bench import ZRAM_KINDS

    if ns.load not in LOADS:
        raise ZramInputError(f"--load: {ns.load!r} is not one of {', '.join(LOADS)}")
    if ns.kind not in ZRAM_KINDS:
        raise ZramInputError(f"--kind: {ns.kind!r} is not one of {', '.join(ZRAM_KINDS)}")
    if ns.mode not in (None, "kswapd", "kcompressd"):
        raise ZramInputError(f"--mode: {ns.mode!r} is not kswapd or kcompressd")
    if ns.compressor not in ("task", "thread"):
        raise ZramInputError(f"--compressor: {ns.compressor!r} is not task or thread")
    if not 16 <= ns.ram <= 1 << 16:
        raise ZramInputError(f"--ram: {ns.ram} KB is out of range 16..65536")
    if ns.page not in (512, 1024, 2048, 4096):
        raise ZramInputError(f"--page: {ns.page} is not 512, 1024, 2048 or 4096")
    if ns.port:
        options.check_port(ns.port)
    if ns.json:
        options.check_output(ns.json, "--json")


def run_on_board(url: str, code: str, timeout: float,
                 progress: Callable[[int, int], None]) -> dict[str, Any]:
    """Run `code` on the board (a clean interpreter: soft reset first), following its
    output; the result line's JSON. BoardError (session's) when it fails or says nothing."""
    pending = bytearray()
    result: list[Any] = []

    def consume(data: bytes) -> None:
        pending.extend(data)
        while b"\n" in pending:
            i = pending.index(b"\n")
            line = pending[:i].decode(errors="replace").strip()
            del pending[:i + 1]
            if line.startswith(PROGRESS):
                parts = line.split()
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    progress(int(parts[1]), int(parts[2]))
            elif line.startswith(RESULT):
                result.append(json.loads(line[len(RESULT):]))

    with Session(url) as s:
        s.enter_raw_repl(soft_reset=True)
        s.follow(code, "running the zram load", timeout, consume)
    if not result:
        raise BoardError(f"{url}: no result from the board")
    return result[-1]


def tables(doc: dict[str, Any]) -> list[Table]:
    out = []
    r = doc["result"]
    if "stores" in r:  # the logger
        t = Table(title=f"data logger: {r['ram'] // 1024} KB of RAM, a sample every "
                        f"{r['period_s']} s")
        for c in ("store", "samples", "hours", "vs bytearray ring", "append p99 us"):
            t.add_column(c, justify="left" if c == "store" else "right")
        for s in r["stores"]:
            t.add_row(s["store"], f"{s['samples']:,}", f"{s['hours']:.2f}",
                      f"{s['vs_ring']:.2f}x" if s["vs_ring"] else "-",
                      f"<= {s['append_p99_us']}")
        out.append(t)
        devices = [(s["store"], s["stats"]) for s in r["stores"] if "stats" in s]
    else:
        t = Table(title=f"{r['store']} ({r['kind']} records, {r['ram'] // 1024} KB)")
        for c in ("records", "KB held", "write MB/s", "write p99 us", "read p99 us",
                  "checked"):
            t.add_column(c, justify="right")
        t.add_row(f"{r['records']:,}", f"{r['bytes'] / 1024:.1f}",
                  f"{r['write_Bps'] / 1e6:.2f}" if r["write_Bps"] else "-",
                  str(r["write_us"]["p99"]), str(r["read_us"]["p99"]),
                  "ok" if r["ok"] else "FAILED")
        out.append(t)
        devices = [(r["store"], {**r.get("stats", {}), **r.get("stats_fs", {})})]
    for name, st in devices:
        t = Table(title=f"{name} stats")
        t.add_column("stat")
        t.add_column("value", justify="right")
        keys = [k for k in FIRST if k in st] + sorted(
            k for k in st if k not in FIRST and not k.endswith("_hist"))
        for k in keys:
            v = st[k]
            t.add_row(k, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool)
                      else f"{v:.3f}" if isinstance(v, float) else str(v))
        out.append(t)
    return out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--port", metavar="URL",
                    help="board: device path, rfc2217://host:port or socket://host:port "
                         "(default: a fresh simulated board with the --board profile's heap)")
    ap.add_argument("--micropython", metavar="PATH",
                    help="micropython executable of the simulated board")
    ap.add_argument("--load", default="logger", metavar="LOAD",
                    help=f"what runs: {', '.join(LOADS)} (default logger)")
    ap.add_argument("--kind", default="sensor", metavar="KIND",
                    help="records of --load log/disk: text, sensor, json, random (default "
                         "sensor)")
    ap.add_argument("--ram", type=int, default=96, metavar="KB",
                    help="RAM the device may use (default 96)")
    ap.add_argument("--page", type=int, default=4096, metavar="B",
                    help="page / block size of --load log/disk (default 4096)")
    ap.add_argument("--mode", default=None, metavar="MODE",
                    help="kswapd or kcompressd (default: kcompressd where a thread runs truly "
                         "in parallel, else kswapd)")
    ap.add_argument("--compressor", default="thread", metavar="WHERE",
                    help="kcompressd's compressor: thread or task (default thread)")
    ap.add_argument("--file", action="store_true",
                    help="logger: also keep the samples in a file on /zram (littlefs)")
    ap.add_argument("--json", metavar="FILE", help="write the result here")
    options.add_timeout(ap, 120.0, "seconds the load may take")
    options.add_board(ap, "board profile (ucompressd boards lists them): the simulated "
                          "board's heap without --port (default: a Pico 2's)")


def run(ns: argparse.Namespace) -> int:
    check(ns)
    from ucompressd.deploy import deploy

    # A data logger's board: a Pico 2's heap unless told (the 2 MB default sim is PSRAM-class).
    profile = load_profile(ns.board or "pico2")
    code = board_code(ns)
    console = Console(stderr=True)
    if ns.port:
        deploy(ns.port)
    with experiment.open_board(ns.port, profile, ns.micropython,
                               profile.memory.heap) as board, \
            Progress(TextColumn("{task.description}"), BarColumn(),
                     TextColumn("{task.completed:,.0f}/{task.total:,.0f} B of RAM"),
                     TimeElapsedColumn(), console=console, transient=True,
                     disable=not console.is_terminal) as bar:
        task = bar.add_task(f"zram {ns.load}", total=ns.ram * 1024)
        result = run_on_board(board.url, code, ns.timeout,
                              lambda done, total: bar.update(task, completed=done,
                                                             total=total))
    doc = {"command": "zram", "load": ns.load, "port": ns.port or "sim",
           "board": profile.name,
           "args": {k: getattr(ns, k) for k in ("kind", "ram", "page", "mode", "compressor",
                                                 "file")},
           "result": result}
    if ns.json:
        Path(ns.json).write_text(json.dumps(doc, indent=1) + "\n")
    out = Console()
    for t in tables(doc):
        out.print(t)
    bad = [s for s in _stats(result) if s.get("corrupt")]
    if bad or (isinstance(result.get("ok"), bool) and not result["ok"]):
        raise ZramFailed("zram: data read back did not match")
    return 0


def _stats(result: dict[str, Any]) -> list[dict[str, Any]]:
    if "stores" in result:
        return [s["stats"] for s in result["stores"] if "stats" in s]
    return [result.get("stats", {})]

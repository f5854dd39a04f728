"""The `ucompressd` command: argument parsing and output only (no protocol or board logic).

Exit status: 0 done, 1 the board failed mid-run (what was collected is still written),
2 bad arguments or a port that cannot be opened, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, NoReturn

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ucompressd import __version__, errors, experiment, report
from ucompressd.experiment import ProgressHandler, RunFailed
from ucompressd.link import BoardError, PortError
from ucz import runner

# Help for the experiment knobs; the knobs themselves, their defaults and their rules come from
# ucz.runner (DEFAULTS, CHOICES, config), the very code that validates them on the board.
KNOB_HELP = {
    "mode": "reclaim design: kswapd (the scanner compresses), kcompressd (it queues), or "
            "auto (per batch, whichever costs the app's core less)",
    "batch": "pages isolated / drained per lock round",
    "compressor": "where kcompressd's compressor runs: an asyncio task or a _thread",
    "workload": "access pattern",
    "pages": "pages the workload touches",
    "frames": "resident page frames (fewer than pages: memory pressure)",
    "page_size": "bytes per page",
    "zpool": "bytes of compressed store (0: sized from pages, frames and data)",
    "ring": "kcompressd queue slots",
    "ops": "page accesses to make",
    "write_pct": "percent of accesses that write",
    "think_us": "app work between accesses (us)",
    "duration_ms": "time limit of the run (ms)",
    "data": "page contents",
    "seed": "seed of accesses and contents",
    "sample_ms": "period of the streamed samples (ms)",
    "yield_ops": "with no think time, accesses between yields to the scanner",
    "hot_pct": "hotcold/bursty: percent of pages in the hot set",
    "burst": "bursty: accesses per burst",
    "gap_ms": "bursty: idle time between bursts (ms)",
    "slice_us": "longest the scanner or a task compressor runs before yielding (us)",
    "check_every": "check every invariant each N accesses (0: never)",
    "pressure": "1: refuse frames >= pages (nothing would be reclaimed)",
    "wmark_min": "min watermark in frames (0: default)",
    "wmark_low": "low watermark in frames (0: default)",
    "wmark_high": "high watermark in frames (0: default)",
}

# Subcommands whose module owns its options and its exit status: (name, module, the function
# adding its options to a parser, the function running it on the parsed args, help).
DELEGATED = (
    ("sim", "ucompressd.sim", "add_arguments", "run",
     "serve a simulated board on a pty and print its port; without --flash its flash is a "
     "temp folder holding this host's firmware"),
    ("deploy", "ucompressd.deploy", "add_arguments", "run",
     "copy the firmware to a board's /ucz (only what changed)"),
    ("flash", "ucompressd.flash", "add_arguments", "run",
     "write a MicroPython image to a board"),
    ("plot", "ucompressd.plot", "add_arguments", "run",
     "draw a run/compare --json file (free frames, ring, reclaim rate, stalls)"),
    ("export", "ucompressd.rfc2217", "add_arguments", "run",
     "share a board's serial port over the network as rfc2217://host:port (prints the URL)"),
    ("boards", "ucompressd.boards", "add_arguments", "run", "list the board profiles"),
    ("ports", "ucompressd.boards", "add_ports_arguments", "run_ports",
     "attached serial ports and the profiles they may be"),
)


class ArgumentError(Exception):
    """A bad argument: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would print usage: we want one line
        raise ArgumentError(message)


def _add_knobs(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    for key, default in runner.DEFAULTS.items():
        if key in skip:
            continue
        choices = runner.CHOICES.get(key)
        text = KNOB_HELP.get(key, key.replace("_", " "))
        if choices:
            text += f": {', '.join(choices)}"
        # No argparse choices/ranges: runner.config is the one place with the rules.
        p.add_argument(
            "--" + key.replace("_", "-"),
            dest=key,
            type=int if isinstance(default, int) else str,
            default=None,
            metavar="N" if isinstance(default, int) else "KIND",
            help=f"{text} (default {default})",
        )


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", metavar="URL", action="append",
                   help="board: device path, rfc2217://host:port or socket://host:port "
                        "(default: a fresh simulated board); give it again to run on several "
                        "boards at once (the JSON is then {\"boards\": {port: results}})")
    p.add_argument("--micropython", metavar="PATH",
                   help="micropython executable of the simulated board")
    p.add_argument("--json", metavar="FILE", help="write the results here")
    p.add_argument("--csv", metavar="FILE", help="write the samples here, one row each")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds of silence before the board counts as lost (default 10)")
    p.add_argument("--audit", type=int, default=0, metavar="N",
                   help="after each run, check N of the board's compressed pages with the "
                        "reference LZ4 (exit 1 on any mismatch)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ucompressd", description="kcompressd for microcontrollers")
    parser.add_argument("--version", action="version", version=f"ucompressd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="one experiment; prints its counters")
    _add_knobs(p)
    _add_common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compare", help="the same workload under kswapd, kcompressd and auto")
    _add_knobs(p, skip=("mode",))
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="runs per mode, interleaved; the table shows medians with 95%% "
                        "intervals and which changes are significant (default 1)")
    p.add_argument("--designs", default=",".join(experiment.MODES), metavar="LIST",
                   help="designs to compare, the baseline first (default %(default)s)")
    _add_common(p)
    p.set_defaults(func=cmd_compare)

    for name, module, add, run, text in DELEGATED:
        try:
            mod = importlib.import_module(module)
        except ImportError:  # e.g. the simulated board needs ptys: POSIX only
            continue
        p = sub.add_parser(name, help=text, description=text)
        getattr(mod, add)(p)
        p.set_defaults(func=cmd_sim if name == "sim" else getattr(mod, run))
    return parser


# -- helpers ------------------------------------------------------------------------------------


def _knobs(ns: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(ns, k) for k in runner.DEFAULTS if getattr(ns, k, None) is not None}


def _config(args: dict[str, Any]) -> dict[str, Any]:
    try:
        return runner.config(args)
    except ValueError as e:  # "<key>: <problem>", worded for the board's config keys
        key, _, problem = str(e).partition(": ")
        flag = "--" + key.replace("_", "-")
        raise ArgumentError(f"{flag}: {problem}" if problem else str(e)) from None


def _check_board_args(ns: argparse.Namespace) -> None:
    if ns.port:
        if ns.micropython:
            raise ArgumentError("--micropython is for the simulated board; drop it or --port")
        for port in ns.port:
            if "://" not in port and not Path(port).exists():
                raise ArgumentError(f"--port: {port} does not exist")
        if len(set(ns.port)) != len(ns.port):
            raise ArgumentError("--port: the same board given twice")
    elif ns.micropython and not (Path(ns.micropython).is_file() or shutil.which(ns.micropython)):
        raise ArgumentError(f"--micropython: {ns.micropython} not found")


@contextlib.contextmanager
def _progress() -> Iterator[ProgressHandler]:
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    ) as bar:
        tasks: dict[str, Any] = {}

        def on_progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total or None)
            bar.update(tasks[label], completed=done, total=total or None)

        yield on_progress


def _save(doc: dict[str, Any], ns: argparse.Namespace) -> None:
    if ns.json:
        report.write_json(doc, ns.json)
    if ns.csv:
        report.write_csv(report.samples_rows(doc), ns.csv)


def _audit_failures(docs: list[dict[str, Any]]) -> int:
    """Print every page the codec audit found bad; 1 if any, else 0."""
    rc = 0
    for d in docs:
        if experiment.audit_failed(d):
            rc = 1
            where = f"{d['board']['port']} ({d['config'].get('mode')})"
            for b in d["audit"]["bad"]:
                page = "" if b["page"] is None else f"page {b['page']} version {b['version']}: "
                print(f"ucompressd: audit failed on {where}: {page}{b['reason']}",
                      file=sys.stderr)
    return rc


def _failed(e: RunFailed, ns: argparse.Namespace) -> int:
    _save(e.partial, ns)
    saved = [f for f in (ns.json, ns.csv) if f]
    where = f" (what was collected is in {', '.join(saved)})" if saved else ""
    print(f"ucompressd: {e}{where}", file=sys.stderr)
    return 130 if e.interrupted else 1


# -- commands -----------------------------------------------------------------------------------


def _one_port(ns: argparse.Namespace) -> str | None:
    return ns.port[0] if ns.port else None


def cmd_run(ns: argparse.Namespace) -> int:
    cfg = _config(_knobs(ns))
    if ns.audit < 0:
        raise ArgumentError("--audit: must be 0 or more")
    _check_board_args(ns)
    knobs = _knobs(ns)

    def job(board: experiment.Board, label: str) -> dict[str, Any]:
        c = cfg
        if cfg["mode"] != "kswapd" and "compressor" not in knobs:
            # The board's own placement: auto then starts as kswapd where a second thread
            # would share the core (no _thread, a GIL, one core).
            c = _config({**knobs, "compressor": experiment.default_compressor(
                experiment.probe(board, ns.timeout))})
        return experiment.run(board, c, on_progress, label, ns.timeout, ns.audit)

    with _progress() as on_progress:
        try:
            if ns.port and len(ns.port) > 1:
                doc = experiment.on_boards(ns.port, lambda b: job(b, f"{b.url} {cfg['mode']}"))
            else:
                with experiment.open_board(_one_port(ns), ns.micropython) as board:
                    doc = job(board, cfg["mode"])
        except RunFailed as e:
            return _failed(e, ns)
    _save(doc, ns)
    console = Console()
    runs = list(doc["boards"].values()) if "boards" in doc else [doc]
    for r in runs:
        if "boards" in doc:
            console.rule(r["board"]["port"])
        for table in report.run_tables(r):
            console.print(table)
    return _audit_failures(runs)


def cmd_compare(ns: argparse.Namespace) -> int:
    if ns.repeat < 1:
        raise ArgumentError("--repeat: must be at least 1")
    if ns.audit < 0:
        raise ArgumentError("--audit: must be 0 or more")
    # With no knobs this is the runner's defaults: a high-pressure run (a quarter of the pages
    # resident) whose kswapd/kcompressd pair takes seconds on the simulated board.
    args = _knobs(ns)
    modes = [m for m in ns.designs.split(",") if m]
    if len(modes) < 2 or len(set(modes)) != len(modes):
        raise ArgumentError("--designs: name two or more different designs, e.g. kswapd,auto")
    for mode in modes:  # refuse bad knobs before a board is touched
        _config({**args, "mode": mode})
    _check_board_args(ns)

    def job(board: experiment.Board, label: str = "") -> dict[str, Any]:
        a = dict(args)
        if "compressor" not in a:  # each board its own: they may differ in cores and GIL
            a["compressor"] = experiment.default_compressor(experiment.probe(board, ns.timeout))
        cfgs = {mode: _config({**a, "mode": mode}) for mode in modes}

        def progress(what: str, done: int, total: int) -> None:
            on_progress(label + what, done, total)

        return experiment.compare(board, cfgs, ns.repeat, progress, ns.timeout, ns.audit)

    with _progress() as on_progress:
        try:
            if ns.port and len(ns.port) > 1:
                doc = experiment.on_boards(ns.port, lambda b: job(b, f"{b.url} "))
            else:
                with experiment.open_board(_one_port(ns), ns.micropython) as board:
                    doc = job(board)
        except RunFailed as e:
            return _failed(e, ns)
    _save(doc, ns)
    # A compare table has a column per design and per pair: into a file or a pipe, rich would
    # wrap it at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 160)
    if "boards" in doc:
        console.print(report.boards_compare_table(doc))
        docs = list(doc["boards"].values())
    else:
        console.print(report.compare_table(doc))
        docs = [doc]
    for d in docs:
        line = report.noise_line(d)
        if line:
            print(f"ucompressd: {line}", file=sys.stderr)
    runs = [r for d in docs for m in modes if m in d
            for r in d.get("repeats", {}).get(m, [d[m]])]
    return _audit_failures(runs)


def cmd_sim(ns: argparse.Namespace) -> int:
    from ucompressd import sim

    if ns.flash:  # the user's flash folder: as they left it
        return int(sim.run(ns))
    # A fresh board ready for `run --port`, as `run` without --port gets one.
    with tempfile.TemporaryDirectory(prefix="ucz-flash-") as flash:
        experiment.stage_firmware(flash)
        ns.flash = flash
        return int(sim.run(ns))


def main(argv: list[str] | None = None) -> int:
    try:
        ns = build_parser().parse_args(argv)
        return int(ns.func(ns))
    except SystemExit as e:  # --help / --version
        return int(e.code or 0)
    except (ArgumentError, PortError) as e:
        return errors.usage(e)
    except BoardError as e:
        return errors.failed(e)
    except KeyboardInterrupt:
        print("ucompressd: interrupted", file=sys.stderr)
        return 130

"""The `ucompressd` command: argument parsing and output only (no protocol or board logic).

Exit status (decided in one place, errors.exit_status, called by main only): 0 done, 1 the
board or a tool failed (what was collected is still written), 2 bad input (arguments, a port
that cannot be opened, a profile, sizes that do not fit the board), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator, NoReturn

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ucompressd import __version__, errors, experiment, options, report, sizing
from ucompressd.errors import Failure, InputError
from ucompressd.experiment import ProgressHandler, RunFailed
from ucz import runner

# Help for the experiment knobs; the knobs themselves, their defaults and their rules come from
# ucz.runner (DEFAULTS, CHOICES, config), the very code that validates them on the board.
KNOB_HELP = {
    "mode": "reclaim design: kswapd (the scanner compresses), kcompressd (it queues), or "
            "auto (per batch, whichever costs the app's core less)",
    "batch": "pages isolated / drained per lock round",
    "assist": "1: the scanner stores queued pages itself when the compressor is behind",
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
    ("zram", "ucompressd.zram", "add_arguments", "run",
     "a program's compressed RAM (ucz.zram) on a board: the data logger or a log/disk load, "
     "and the device's stats"),
    ("boards", "ucompressd.boards", "add_arguments", "run", "list the board profiles"),
    ("qemu", "ucompressd.qemu", "add_arguments", "run",
     "build the emulated Cortex-M boards' images (qemu-m0, qemu-m33) from Debian's source"),
    ("ports", "ucompressd.ports", "add_arguments", "run",
     "attached serial ports and the profiles they may be"),
)


class ArgumentError(InputError):
    """A bad argument: one line on stderr, exit status 2."""


class OutputError(Failure):
    """A results file could not be written after the run (its content went elsewhere)."""


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
    options.add_board(p)
    p.add_argument("--micropython", metavar="PATH",
                   help="micropython executable of the simulated board")
    p.add_argument("--json", metavar="FILE", help="write the results here")
    p.add_argument("--csv", metavar="FILE", help="write the samples here, one row each")
    options.add_timeout(p, 10.0, "seconds of silence before the board counts as lost")
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


def _profile(ns: argparse.Namespace) -> Any:
    if not getattr(ns, "board", None):
        return None
    from ucompressd.boards import load

    p = load(ns.board)
    if p.threads.max_threads == 0 and getattr(ns, "compressor", None) == "thread" \
            and getattr(ns, "mode", None) != "kswapd":
        raise ArgumentError(f"--compressor thread: {p.name} has one core and no _thread "
                            "(use --compressor task)")
    return p


def _args(ns: argparse.Namespace, profile: Any) -> dict[str, Any]:
    """The run knobs: the profile's defaults, then the flags given (they override)."""
    return {**(dict(profile.defaults) if profile else {}), **_knobs(ns)}


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
            options.check_port(port)
        if len(set(ns.port)) != len(ns.port):
            raise ArgumentError("--port: the same board given twice")
    elif ns.micropython and not (Path(ns.micropython).is_file() or shutil.which(ns.micropython)):
        raise ArgumentError(f"--micropython: {ns.micropython} not found")


def _check_run_args(ns: argparse.Namespace) -> None:
    """What every experiment command refuses before a board is touched."""
    if ns.audit < 0:
        raise ArgumentError("--audit: must be 0 or more")
    _check_board_args(ns)
    for path, flag in ((ns.json, "--json"), (ns.csv, "--csv")):
        if path:
            options.check_output(path, flag)
    if ns.json and ns.csv and Path(ns.json).resolve() == Path(ns.csv).resolve():
        raise ArgumentError("--json and --csv name the same file")


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


def _save(doc: dict[str, Any], ns: argparse.Namespace) -> str:
    """Write the files asked for. A file that cannot be written (a disk filled up during the
    run) goes to a temporary file instead: returns what happened, "" when all went well."""
    notes = []
    for path, write in ((ns.json, lambda p: report.write_json(doc, p)),
                        (ns.csv, lambda p: report.write_csv(report.samples_rows(doc), p))):
        if not path:
            continue
        try:
            write(path)
        except OSError as e:
            fd, spare = tempfile.mkstemp(prefix="ucompressd-", suffix=Path(path).suffix)
            with open(fd, "w"):
                pass
            write(spare)
            notes.append(f"cannot write {path} ({e.strerror or e}); it is in {spare}")
    return "; ".join(notes)


def _note_cut_zpool(runs: list[dict[str, Any]]) -> None:
    """Say so when an automatic zpool was cut to fit the heap: reclaim then runs into
    zpool_full, and the figures are about that."""
    for r in runs:
        auto = (r.get("sizing") or {}).get("zpool_auto")
        if auto and r["config"]["zpool"] < auto:
            print(_cut_note(r["board"]["port"], r["config"]["zpool"], auto), file=sys.stderr)


def _cut_note(port: str, got: int, want: int) -> str:
    return (f"ucompressd: note: {port}: zpool cut to {got} bytes to fit the heap (the data "
            f"would take about {want})")


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


def _failed(e: RunFailed, ns: argparse.Namespace) -> NoReturn:
    """Write what was collected, then end with the board's error (and where the data is)."""
    note = _save(e.partial, ns)
    saved = [f for f in (ns.json, ns.csv) if f]
    if note:
        where = f" ({note})"
    else:
        where = f" (what was collected is in {', '.join(saved)})" if saved else ""
    raise RunFailed(f"{e}{where}", e.partial, e.interrupted) from None


def _saved(doc: dict[str, Any], ns: argparse.Namespace) -> None:
    note = _save(doc, ns)
    if note:
        raise OutputError(note)


# -- commands -----------------------------------------------------------------------------------


def _one_port(ns: argparse.Namespace) -> str | None:
    return ns.port[0] if ns.port else None


def cmd_run(ns: argparse.Namespace) -> int:
    profile = _profile(ns)
    args = _args(ns, profile)
    cfg = _config(args)
    if ns.compressor is not None and cfg["mode"] == "kswapd":
        raise ArgumentError("--compressor: kswapd mode has no compressor (the scanner "
                            "compresses); drop it or use --mode kcompressd")
    _check_run_args(ns)
    given, auto = set(args), not args.get("zpool")

    def job(b: experiment.Board, label: str) -> dict[str, Any]:
        # No --compressor: the board's own placement (auto then starts as kswapd where a
        # second thread would share the core: no _thread, a GIL, one core).
        return experiment.run(b, cfg, on_progress, label, ns.timeout, ns.audit,
                              given=given, auto_zpool=auto,
                              board_placement="compressor" not in args)

    with _progress() as on_progress:
        try:
            if ns.port and len(ns.port) > 1:
                doc = experiment.on_boards(
                    ns.port, lambda b: job(b, f"{b.url} {cfg['mode']}"), profile)
            else:
                with experiment.open_board(_one_port(ns), profile, ns.micropython) as board:
                    doc = job(board, cfg["mode"])
        except RunFailed as e:
            _failed(e, ns)
    console = Console()
    runs = list(doc["boards"].values()) if "boards" in doc else [doc]
    _note_cut_zpool(runs)
    for r in runs:
        if "boards" in doc:
            console.rule(r["board"]["port"])
        for table in report.run_tables(r):
            console.print(table)
    _saved(doc, ns)
    return _audit_failures(runs)


def cmd_compare(ns: argparse.Namespace) -> int:
    if ns.repeat < 1:
        raise ArgumentError("--repeat: must be at least 1")
    # With no knobs this is the runner's defaults: a high-pressure run (a quarter of the pages
    # resident) whose kswapd/kcompressd pair takes seconds on the simulated board.
    profile = _profile(ns)
    args = _args(ns, profile)
    modes = [m for m in ns.designs.split(",") if m]
    if len(modes) < 2 or len(set(modes)) != len(modes):
        raise ArgumentError("--designs: name two or more different designs, e.g. kswapd,auto")
    for mode in modes:  # refuse bad knobs before a board is touched
        _config({**args, "mode": mode})
    _check_run_args(ns)
    given = set(args)
    cut: list[str] = []

    def job(board: experiment.Board, label: str = "") -> dict[str, Any]:
        hello = experiment.probe(board, ns.timeout)
        a = dict(args)
        if "compressor" not in a:  # each board its own: they may differ in cores and GIL
            a["compressor"] = experiment.default_compressor(hello)
        # Every design sized (and refused) before any runs.
        cfgs = {mode: sizing.fit({**a, "mode": mode}, hello.get("mem_free"), given,
                                 hello.get("word"))
                for mode in modes}
        want, got = _config(a)["zpool"], cfgs[modes[0]]["zpool"]
        if not a.get("zpool") and got < want:
            cut.append(_cut_note(board.url, got, want))

        def progress(what: str, done: int, total: int) -> None:
            on_progress(label + what, done, total)

        return experiment.compare(board, cfgs, ns.repeat, progress, ns.timeout, ns.audit)

    with _progress() as on_progress:
        try:
            if ns.port and len(ns.port) > 1:
                doc = experiment.on_boards(ns.port, lambda b: job(b, f"{b.url} "), profile)
            else:
                with experiment.open_board(_one_port(ns), profile, ns.micropython) as board:
                    doc = job(board)
        except RunFailed as e:
            _failed(e, ns)
    # A compare table has a column per design and per pair: into a file or a pipe, rich would
    # wrap it at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 160)
    if "boards" in doc:
        console.print(report.boards_compare_table(doc))
        docs = list(doc["boards"].values())
    else:
        console.print(report.compare_table(doc))
        docs = [doc]
    _saved(doc, ns)
    for d in docs:
        line = report.noise_line(d)
        if line:
            print(f"ucompressd: {line}", file=sys.stderr)
    runs = [r for d in docs for m in modes if m in d
            for r in d.get("repeats", {}).get(m, [d[m]])]
    for note in cut:
        print(note, file=sys.stderr)
    return _audit_failures(runs)


def cmd_sim(ns: argparse.Namespace) -> int:
    from ucompressd import sim
    from ucompressd.staging import stage_firmware

    profile = _profile(ns)
    if profile is not None and profile.kind == "qemu":  # MicroPython's qemu port, not unix
        from ucompressd import qemu

        return qemu.serve_forever(profile)
    if ns.flash:  # the user's flash folder: as they left it
        return int(sim.run(ns))
    # A fresh board ready for `run --port`, as `run` without --port gets one.
    with tempfile.TemporaryDirectory(prefix="ucz-flash-") as flash:
        stage_firmware(flash)
        ns.flash = flash
        return int(sim.run(ns))


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (`timeout`, a CI runner's cancel, systemd) stops a command as Ctrl-C does: the
    boards it started (a simulated or QEMU board runs in a session of its own, so no signal for
    ours reaches it) are closed, not orphaned, and what was collected is written."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler; a caller's thread keeps its own
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; every error ends here as one line and its exit status."""
    try:
        ns = build_parser().parse_args(argv)
        with _sigterm_as_ctrl_c():
            return int(ns.func(ns))
    except SystemExit as e:  # --help / --version
        return int(e.code or 0)
    except (errors.Error, KeyboardInterrupt) as e:
        return errors.report(e)

"""What the benchmark scripts share: the board (a fresh simulated one, or --port), the raw REPL
for board-side helpers (ucz.bench), medians and spreads, the targets table and the JSON file.

The scripts measure this checkout: its host/ and firmware/ go first on sys.path, and the
simulated board gets this checkout's firmware staged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

REPO = Path(__file__).resolve().parent.parent
for _p in (REPO / "firmware", REPO / "host"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from ucompressd import errors, experiment, options  # noqa: E402
from ucompressd.experiment import Board  # noqa: E402
from ucompressd.session import Session  # noqa: E402

RESULTS = REPO / "results"
# Tables are wide: into a file or pipe, rich would wrap them at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


@contextlib.contextmanager
def status(text: str) -> Iterator[Any]:
    """A one-line progress note on a terminal (nothing in a log): .update(text) to change it."""
    with err.status(text) as st:
        yield st


# -- arguments and the board -------------------------------------------------------------------


def parser(description: str, default_out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", metavar="URL",
                   help="board: device path, rfc2217://host:port or socket://host:port "
                        "(default: a fresh simulated board)")
    p.add_argument("--out", metavar="FILE.json", type=Path, default=RESULTS / default_out,
                   help=f"results file (default results/{default_out})")
    p.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    p.add_argument("--micropython", metavar="PATH",
                   help="micropython executable of the simulated board")
    p.add_argument("--no-deploy", action="store_true",
                   help="with --port: use the firmware already on the board")
    options.add_timeout(p, 30.0, "seconds of board silence before giving up")
    options.add_board(p, "board profile: the simulated board gets its heap, and the "
                         "experiments its sizes where they take them")
    return p


def profile(args: argparse.Namespace) -> Any:
    """The --board profile, or None."""
    if not getattr(args, "board", None):
        return None
    from ucompressd.boards import load

    return load(args.board)


def sizes(args: argparse.Namespace) -> dict[str, Any]:
    """The run knobs the --board profile sets (page size, pages, frames, zpool, ring,
    compressor); {} without one. A benchmark's own knobs go on top."""
    p = profile(args)
    return dict(p.defaults) if p else {}


@contextlib.contextmanager
def open_board(args: argparse.Namespace) -> Iterator[Board]:
    """A fresh simulated board with this checkout's firmware, or the board at --port with the
    firmware deployed first (unless --no-deploy: deploy copies only what changed anyway)."""
    if args.port and not args.no_deploy:
        from ucompressd.deploy import deploy

        err.print(f"deploying the firmware to {args.port} ...")
        rep = deploy(args.port, log=lambda line: err.print(f"  {line}"))
        err.print(f"  ucz {rep.version}, lz4 {rep.lz4_impl}")
    with experiment.open_board(args.port, profile(args), args.micropython) as board:
        yield board


class RawRepl:
    """Board-side helpers (ucz.bench) over the board session: run one snippet that prints one
    JSON line."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.s = Session(url, timeout)
        self.url = url
        self.timeout = timeout
        try:
            self.s.enter_raw_repl(soft_reset=True)
        except BaseException:
            self.s.close()
            raise

    def soft_reset(self) -> None:
        """A fresh interpreter: nothing imported, the heap as after boot."""
        self.s.soft_reset()

    def call(self, code: str, timeout: float | None = None) -> Any:
        out = self.s.exec(code, f"running {code[:60]!r}", timeout or self.timeout)
        text = out.decode(errors="replace").strip().splitlines()
        if not text:
            raise errors.Failure(f"{self.url}: no output (running {code!r})")
        return json.loads(text[-1])

    def close(self) -> None:
        self.s.close()

    def __enter__(self) -> RawRepl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- figures -----------------------------------------------------------------------------------


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Median, min, max and count: every figure a benchmark reports comes with its spread."""
    nums = [v for v in values if v is not None]
    if not nums:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(nums), "min": min(nums), "max": max(nums), "n": len(nums)}


def scaled(s: dict[str, Any], factor: float) -> dict[str, Any]:
    """A spread in other units (x 100 for percent, / 1024 for KB, ...)."""
    return {**s, **{k: s[k] * factor for k in ("median", "min", "max") if s[k] is not None}}


def fmt(v: float | int | None, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return (f"{v:,.{digits}f}" if abs(v) < 100 else f"{v:,.0f}") + unit


def fmt_spread(s: dict[str, Any], unit: str = "", digits: int = 2) -> str:
    text = fmt(s["median"], unit, digits)
    if s["n"] > 1 and s["min"] != s["max"]:
        text += f" ({fmt(s['min'], '', digits)}..{fmt(s['max'], '', digits)})"
    return text


@dataclass
class Target:
    """One target of the issue next to what this run measured."""

    name: str
    want: str  # the target, as the issue states it
    measured: str  # the figure, with its spread where there is one
    value: float | None  # the figure the verdict is about (None: not measured)
    met: bool | None  # None: does not apply here (e.g. a unix-port target on a real board)
    note: str = ""


def targets_table(title: str, targets: list[Target]) -> Table:
    t = Table(title=title)
    t.add_column("target")
    t.add_column("wanted")
    t.add_column("measured", justify="right")
    t.add_column("verdict")
    for g in targets:
        verdict = ("[green]met[/green]" if g.met else "[red]not met[/red]") if g.met is not None \
            else "n/a"
        if g.note:
            verdict += f" ({g.note})"
        t.add_row(g.name, g.want, g.measured, verdict)
    return t


def environment() -> dict[str, Any]:
    """The host and its load: figures taken on a busy machine are noisy, and the file says so."""
    return {
        "host": platform.node(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run(main: Callable[[list[str] | None], int]) -> None:
    """Exit with main()'s status; an error is one line and the status errors.py gives it (a
    board that fails: 1; bad input, such as a port that does not open: 2). What a benchmark
    collected before a run failed is in its JSON: it does not get here."""
    name = Path(sys.argv[0]).name
    try:
        sys.exit(main(None))
    except (errors.Error, KeyboardInterrupt) as e:
        text = "interrupted" if isinstance(e, KeyboardInterrupt) else f"error: {e}"
        err.print(f"{name}: {text}", markup=False, highlight=False)
        sys.exit(errors.exit_status(e))


def finish(doc: dict[str, Any], targets: list[Target], out: Path, title: str) -> None:
    """Targets into the document, the load at the end, the JSON file, and the targets table."""
    doc["targets"] = [asdict(g) for g in targets]
    doc["environment"]["loadavg_end"] = list(os.getloadavg())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    console.print(targets_table(title, targets))
    env = doc["environment"]
    console.print(f"load average {env['loadavg'][0]:.2f} at the start, "
                  f"{env['loadavg_end'][0]:.2f} at the end, {env['cpus']} CPUs; "
                  f"results in {out}")

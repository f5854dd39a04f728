"""Options several subcommands share (and the benchmarks), defined once: the board profile,
timeouts, ports and output files, each with its rule. A subcommand adds the ones it takes.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
from pathlib import Path

from ucompressd.errors import InputError

BOOT_TIMEOUT = 20.0  # an ESP32 with a big filesystem can take several seconds to boot


def seconds(text: str) -> float:
    """argparse type of a timeout: a finite number of seconds > 0 (nan, inf, 0 and negative
    values would wait forever or never)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number of seconds > 0")
    return v


def add_timeout(p: argparse.ArgumentParser, default: float, what: str) -> None:
    p.add_argument("--timeout", type=seconds, default=default, metavar="S",
                   help=f"{what} (default {default:g})")


def add_board(p: argparse.ArgumentParser, what: str = "") -> None:
    p.add_argument("--board", metavar="NAME",
                   help=what or "board profile (ucompressd boards lists them): its defaults "
                                "(sizes, compressor; the heap of a simulated board) apply, "
                                "flags given override them")


def check_port(port: str) -> None:
    """A device path must exist; URLs (rfc2217://, socket://) are checked when opened."""
    if "://" not in port and not Path(port).exists():
        raise InputError(f"--port: {port} does not exist")


def check_output(path: str, flag: str) -> None:
    """Refuse, before anything runs, an output file that could not be written: no such folder,
    a folder, a device or other non-regular file, no permission. The file is created (empty)
    and removed again if it did not exist, which is the one test that cannot be wrong."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise InputError(f"{flag} {path}: {e.strerror or e}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{flag} {path}: is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{flag} {path}: not a regular file")
    try:
        with open(p, "a"):
            pass
    except OSError as e:
        raise InputError(f"{flag} {path}: cannot write: {e.strerror or e}") from None
    if st is None:
        p.unlink(missing_ok=True)

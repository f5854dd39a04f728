"""The two kinds of error every module raises, and the one place that turns them into an exit
status (`exit_status`; called by the programs' mains only: cli.main and the benchmark scripts'),
as esptool's FatalError and mpremote's CommandError/TransportError do.

- `InputError` (exit 2): what the user gave cannot work: a bad argument, a port that cannot be
  opened, a broken profile, file or image, sizes that do not fit the board, no interpreter for
  the simulated board.
- `Failure` (exit 1): the board or a tool failed while doing what was asked (what was collected
  is still written).

Each module defines the subclasses it needs (its own vocabulary) under one of these two; none
prints its own last line or picks an exit status.
"""

from __future__ import annotations

import sys

USAGE = 2  # InputError
FAILED = 1  # Failure
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


class Error(Exception):
    """Base of every ucompressd error; `exit_status` is the process status it ends with."""

    exit_status = FAILED
    prefix = "ucompressd: "


class InputError(Error, ValueError):
    """Bad input: one line on stderr, exit status 2."""

    exit_status = USAGE
    prefix = "ucompressd: error: "


class Failure(Error, RuntimeError):
    """The board or a tool failed: one line on stderr, exit status 1."""

    exit_status = FAILED


def exit_status(e: BaseException) -> int:
    """The exit status an exception ends the process with (cli.main's one mapping)."""
    if isinstance(e, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(e, Error):
        return int(e.exit_status)
    return FAILED


def report(e: BaseException) -> int:
    """Print the one line for `e` on stderr; return its exit status."""
    if isinstance(e, KeyboardInterrupt):
        print("ucompressd: interrupted", file=sys.stderr)
    else:
        prefix = e.prefix if isinstance(e, Error) else "ucompressd: "
        print(f"{prefix}{e}", file=sys.stderr)
    return exit_status(e)

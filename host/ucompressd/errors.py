"""How every subcommand ends on an error: one line on stderr and an exit status, no traceback."""

from __future__ import annotations

import sys

USAGE = 2  # bad arguments, a port that cannot be opened, a broken profile, file or image
FAILED = 1  # the board or a tool failed (what was collected is still written)


def usage(problem: object) -> int:
    print(f"ucompressd: error: {problem}", file=sys.stderr)
    return USAGE


def failed(problem: object) -> int:
    print(f"ucompressd: {problem}", file=sys.stderr)
    return FAILED

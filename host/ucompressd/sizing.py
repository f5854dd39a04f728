"""Does a run fit the board? The heap a configuration takes, computed by the firmware's own
functions (ucz.pool: the arena and the metadata arrays), checked against what the board says
it has free (its hello) before anything runs. A run that does not fit is refused naming each
knob the user can turn and the largest value of it that fits; an automatic zpool (zpool 0) is
sized to what fits instead.
"""

from __future__ import annotations

from typing import Any, Iterable

from ucompressd.errors import InputError
from ucz import pool, runner

# Heap beside a run's arena and metadata, in machine words: most of it is Python objects
# (modules, dicts, tasks, closures), whose size follows the word. Measured on the simulated
# board (64-bit: 8-byte words), where it is largest.
# FIRMWARE: what the firmware itself holds at the server's start (400 KB heap: 336,448 free).
FIRMWARE_WORDS = 10 << 10
# RUN: what a run allocates beside its preallocations (LZ4 tables and page scratch per
# thread, tasks, sample dicts, GC rounding), plus per page: compat.zeros builds each
# per-page array from a zeroed bytearray of its size, so the metadata exists twice for a
# moment and the freed temporaries fragment the heap. Measured on the simulated board as the
# free heap the largest run that still ran left: 81 KB + 22 bytes per page (278 to 2000
# pages, 1 KiB and 4 KiB pages); rounded up.
RUN_WORDS = 11 << 10
RUN_PER_PAGE = 24
# AUTO: an auto run also imports ucz.auto (1,920 bytes on the simulated board, measured) and
# builds its Auto; RUN_WORDS was measured before auto was the default mode. Rounded up.
AUTO_WORDS = 1 << 9
WORD = 8  # bytes per word where the board does not say (the simulated board's)


def firmware_heap(word: int = WORD) -> int:
    return FIRMWARE_WORDS * word


def run_slack(cfg: dict[str, Any], word: int = WORD) -> int:
    words = RUN_WORDS + (AUTO_WORDS if cfg.get("mode") == "auto" else 0)
    # A compressor builds its own Scratch once the pool's arrays are in place, where the heap
    # is tightest. Left out, the largest zpool the host named failed to run there (MemoryError
    # in lz4.new_table) by 12-16 KB at 4 KiB pages (128 and 900 pages), and kswapd runs did not.
    comp = pool.scratch_peak(cfg["page_size"], cfg["batch"]) if runner.makes_compressor(cfg) else 0
    return words * word + RUN_PER_PAGE * cfg["pages"] + comp


# The knobs that size a run, in the order a refusal names them.
SIZE_KNOBS = ("frames", "zpool", "pages", "page_size")


class FitError(InputError):
    """The run's sizes do not fit the board's heap (exit status 2)."""


def heap_needed(cfg: dict[str, Any]) -> int:
    """Heap bytes a run's preallocations take: frames + zpool (one arena) + metadata."""
    return runner.arena_needed(cfg) + pool.meta_bytes_for(
        cfg["pages"], cfg["frames"], cfg["page_size"], cfg["zpool"], cfg["ring"])


def _flag(knob: str) -> str:
    return "--" + knob.replace("_", "-")


def _config(args: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return runner.config(args)
    except ValueError:
        return None


def _sized(args: dict[str, Any], free: int, word: int) -> dict[str, Any] | None:
    """The config of `args` if it fits in `free` bytes, an automatic zpool cut to what fits
    (at least one page); None if it cannot fit."""
    cfg = _config(args)
    if cfg is None:
        return None
    budget = free - run_slack(cfg, word)
    if heap_needed(cfg) <= budget:
        return cfg
    if args.get("zpool", 0):
        return None
    ps = cfg["page_size"]
    lo, hi = 1, cfg["zpool"] // ps  # zpool in pages: the largest that fits, by bisection
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        c = {**cfg, "zpool": mid * ps}
        if heap_needed(c) <= budget:
            best, lo = c, mid + 1
        else:
            hi = mid - 1
    return best


def _largest(args: dict[str, Any], knob: str, free: int, word: int) -> int | None:
    """The largest value of `knob` (others as in args) whose run fits, or None."""
    cur = runner.config(args)[knob] if knob != "zpool" else args.get("zpool", 0)
    if knob == "page_size":
        for ps in (4096, 2048, 1024, 512, 256):
            if ps < cur and _sized({**args, "page_size": ps}, free, word) is not None:
                return ps
        return None
    c = runner.config(args)
    lo = {"frames": 4, "zpool": c["page_size"],
          "pages": c["frames"] + 1 if c["pressure"] else 1}[knob]
    hi = cur - 1
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        if _sized({**args, knob: mid}, free, word) is not None:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def fit(args: dict[str, Any], free: int | None, given: Iterable[str] | None = None,
        word: int | None = None) -> dict[str, Any]:
    """The validated config of the run knobs `args`, sized for a board with `free` bytes of
    heap (None: unknown, e.g. CPython; nothing is checked). FitError, naming the knobs in
    `given` (default: every size knob) with the largest value of each that fits, when it
    cannot fit. `word`: the board's bytes per machine word (its hello's "word")."""
    cfg = runner.config(args)
    if free is None:
        return cfg
    word = word or WORD
    sized = _sized(args, free, word)
    if sized is not None:
        return sized
    need = heap_needed(cfg)
    turn = [k for k in SIZE_KNOBS if k in (set(given) if given is not None else SIZE_KNOBS)]
    if "zpool" in turn and not args.get("zpool"):
        turn.remove("zpool")  # automatic: already cut to what fits
    if not turn:
        turn = ["frames"]
    hints = []
    for k in turn:
        v = _largest(args, k, free, word)
        if v is not None:
            hints.append(f"{_flag(k)} {v}")
    what = (f"{cfg['frames']} frames x {cfg['page_size']} + zpool {cfg['zpool']} + metadata "
            f"{need - runner.arena_needed(cfg)}")
    advice = ("; largest that fits: " + " or ".join(hints)) if hints else \
        "; no value of " + ", ".join(_flag(k) for k in turn) + " fits"
    raise FitError(f"the run needs {need} bytes of heap ({what}) plus {run_slack(cfg, word)} "
                   f"to run, the board has {free} free{advice}")

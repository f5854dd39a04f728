"""Run and compare experiments on a board: a real one through a pyserial URL, else a fresh
simulated board. Builds the results documents (JSON-ready dicts); printing is report.py's."""

from __future__ import annotations

import binascii
import contextlib
import statistics
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import lz4.block

from ucompressd import sizing
from ucompressd.errors import INTERRUPTED, Failure
from ucompressd.link import BoardError, CommandError, Link
from ucompressd.staging import firmware_dir, stage_firmware
from ucz import counters as C
from ucz import pagedata, runner
from ucz.server import firmware_digest
from ucompressd import stats

if TYPE_CHECKING:
    from ucompressd.boards import Profile

FIRMWARE_DIR = firmware_dir()
# The designs `compare` runs, the baseline first: every other one is reported against it, and
# auto against kcompressd too.
MODES = ("kswapd", "kcompressd", "auto")
# Calibration (the same board-side loop before and after a compare): the host was busy when
# the loop on two threads at once ran this much slower than alone on one (the board's two
# threads did not get two cores), or when it ran this much slower or faster after the compare
# than before (the load changed meanwhile). 1.25 / 1.15: a quiet 2-core VM stays within 10%.
CONTENTION = 1.25
DRIFT = 1.15
CALIBRATION_LOOPS = 100000
# Columns of a sample, in the order files show them: time and gauges, then the counters.
SAMPLE_KEYS = ("t_us", "free", "queued", "ring") + C.NAMES + ("pgsteal_anon",)

# on_progress(label, ops_done, ops_total); ops_total 0 when the run is bounded by time only.
ProgressHandler = Callable[[str, int, int], None]


class RunFailed(Failure):
    """The board failed mid-experiment, or Ctrl-C stopped it (`interrupted`); `partial` is the
    results document so far (samples too)."""

    def __init__(self, message: str, partial: dict[str, Any], interrupted: bool = False) -> None:
        super().__init__(message)
        self.partial = partial
        self.interrupted = interrupted

    @property
    def exit_status(self) -> int:  # type: ignore[override]
        return INTERRUPTED if self.interrupted else Failure.exit_status


@dataclass
class Board:
    url: str
    kind: str  # "sim", "qemu" or "serial"
    interpreter: str | None = None  # the MicroPython behind a simulated board, as sim found it
    staged_sha256: str | None = None  # digest of the firmware we staged (sim only)
    profile: Profile | None = None  # --board: the profile whose defaults the runs use
    image: dict[str, Any] | None = None  # a QEMU board's image (qemu.Image.info)


@contextlib.contextmanager
def open_board(port: str | None, profile: Profile | None = None,
               micropython: str | None = None, heapsize: int | str | None = None
               ) -> Iterator[Board]:
    """The board at `port`, else one started here as the profile's kind says (the one place
    that decides): "sim" and "real" (no port: a simulated board stands in) get a fresh
    simulated board with this host's firmware staged and the profile's heap (`heapsize`
    overrides; no profile: the sim profile's)."""
    if port:
        yield Board(url=port, kind="serial", profile=profile)
        return
    if profile is not None and profile.kind == "qemu":  # its image is built on first use
        from ucompressd import qemu

        with qemu.QemuBoard(profile, log=sys.stderr) as qb:
            assert qb.image is not None
            yield Board(qb.port, "qemu", str(qb), profile=profile, image=qb.image.info)
        return
    from ucompressd.sim import SimBoard

    with tempfile.TemporaryDirectory(prefix="ucz-flash-") as flash:
        digest = stage_firmware(flash)
        heap = heapsize if heapsize is not None else (profile.memory.heap if profile else None)
        sim = SimBoard(flash_dir=flash, micropython=micropython, heapsize=heap).start()
        try:
            yield Board(sim.port, "sim", str(sim.interpreter), digest, profile)
        finally:
            sim.close()


def probe(board: Board, timeout: float = 10.0) -> dict[str, Any]:
    """The board's hello (implementation, threads, heap) without running anything."""
    with Link(board.url, timeout=timeout) as link:
        return link.hello


def parallel(hello: dict[str, Any]) -> bool:
    """True when a second thread runs truly beside the first: _thread, no GIL, and not known
    to have only one core (hello's cores: a unix port pinned to one CPU says 1)."""
    cores = hello.get("cores")
    return bool(hello.get("threads")) and hello.get("gil") is False and (cores is None or cores >= 2)


def default_compressor(hello: dict[str, Any]) -> str:
    # A compressor thread pays off only with truly parallel threads (a second core, no GIL):
    # rp2 and the simulated board; on ESP32 (GIL), one core, or without _thread it would just
    # contend. auto starts as kcompressd on a thread and as kswapd with a task.
    return "thread" if parallel(hello) else "task"


# -- one run ------------------------------------------------------------------------------------


def run(
    board: Board,
    cfg: dict[str, Any],
    on_progress: ProgressHandler | None = None,
    label: str = "run",
    timeout: float = 10.0,
    audit: int = 0,
    *,
    given: Iterable[str] | None = None,
    auto_zpool: bool = False,
    board_placement: bool = False,
) -> dict[str, Any]:
    """One experiment with a validated config (runner.config) on a freshly reset board.

    board_placement: the compressor was not chosen, so it is the one the board's hello allows
    (default_compressor): auto then starts as kswapd where a second thread shares the core.

    Before it runs, the sizes are checked against the board's free heap (sizing.fit):
    FitError names the knobs in `given` (default: all) that would make it fit; auto_zpool:
    the zpool was automatic, so it is cut to what fits instead.

    audit > 0: the board then sends that many of its compressed pages; each is decoded here
    with the lz4 package and compared with the page regenerated from (seed, page, version).
    The document's "audit" says how that went; `audit_failed(doc)` tells whether it did.
    """
    samples: list[dict[str, Any]] = []
    audited: dict[int, dict[str, Any]] = {}
    hello: dict[str, Any] = {}
    link_stats: dict[str, Any] = {}

    def on_event(kind: str, data: Any) -> None:
        if kind == "sample" and isinstance(data, dict):
            samples.append(data)
        elif kind == "progress" and on_progress is not None and isinstance(data, dict):
            on_progress(label, int(data.get("ops", 0)), int(data.get("of", 0)))
        elif kind == "audit" and isinstance(data, dict):
            page = audited.setdefault(data["page"], {"ver": data["ver"], "clen": data["clen"],
                                                     "chunks": {}})
            page["chunks"][data["off"]] = data["b64"]

    try:
        with Link(board.url, timeout=timeout) as link:
            hello = link.hello
            if board_placement and cfg["mode"] != "kswapd":
                cfg = {**cfg, "compressor": default_compressor(hello)}
            if hello.get("mem_free") is not None:  # (CPython reports none: nothing to fit)
                cfg = sizing.fit({**cfg, "zpool": 0} if auto_zpool else cfg, hello["mem_free"],
                                 given, hello.get("word"))
            # The run streams a sample every sample_ms: silence longer than a few means trouble.
            silence = max(timeout, 3 * cfg.get("sample_ms", 0) / 1000)
            try:
                args = {**cfg, "audit": audit} if audit else cfg
                raw = link.request("run", args, on_event=on_event, timeout=silence)
            finally:
                link_stats = {"noise": link.noise, "corrupt": link.corrupt, "log": link.log}
    except (BoardError, CommandError, KeyboardInterrupt) as e:
        # (Link's close() has already stopped the board's server on the way out.)
        interrupted = isinstance(e, KeyboardInterrupt)
        if interrupted:
            why = f"{board.url}: interrupted"
        else:  # a BoardError names the port already; a refusal (CommandError) does not
            why = str(e) if isinstance(e, BoardError) else f"{board.url}: the run failed: {e}"
        partial = results(board, hello, cfg, None, samples, link_stats)
        partial["error"] = why
        raise RunFailed(why, partial, interrupted) from None
    doc = results(board, hello, cfg, raw, samples, link_stats)
    doc["sizing"] = {"heap_free": hello.get("mem_free"), "heap_needed": sizing.heap_needed(cfg),
                     "run_slack": sizing.run_slack(cfg, hello.get("word") or sizing.WORD),
                     "zpool_auto": runner.config({**cfg, "zpool": 0})["zpool"]
                     if auto_zpool else None}
    if audit:
        doc["audit"] = check_audit(audited, cfg, audit, raw.get("audit") or {})
    return doc


def check_audit(pages: dict[int, dict[str, Any]], cfg: dict[str, Any], requested: int,
                board: dict[str, Any]) -> dict[str, Any]:
    """Decode each audited page (its chunks by offset) with the reference LZ4 and compare it
    with the page as the board generated it; `board` is the board's {"sent", "eligible"}."""
    P = cfg["page_size"]
    kind = pagedata.KINDS.index(cfg["data"])
    want = bytearray(P)
    bad: list[dict[str, Any]] = []
    for page, a in sorted(pages.items()):
        reason = None
        try:
            data = b"".join(binascii.a2b_base64(a["chunks"][o]) for o in sorted(a["chunks"]))
        except binascii.Error as e:
            data, reason = b"", f"not base64: {e}"
        if reason:
            pass
        elif len(data) != a["clen"]:
            reason = f"{len(data)} of {a['clen']} compressed bytes arrived"
        else:
            try:
                got = lz4.block.decompress(data, uncompressed_size=P)
            except lz4.block.LZ4BlockError as e:
                got, reason = b"", f"lz4 cannot decode it: {e}"
            if reason is None:
                pagedata.fill(want, 0, P, kind, cfg["seed"], page, a["ver"])
                if got != want:
                    first = next((i for i in range(min(len(got), P)) if got[i] != want[i]),
                                 min(len(got), P))
                    reason = (f"decodes to other bytes ({len(got)} bytes, "
                              f"first difference at {first})")
        if reason:
            bad.append({"page": page, "version": a["ver"], "reason": reason})
    sent = board.get("sent", len(pages))
    if sent != len(pages):
        bad.append({"page": None, "version": None,
                    "reason": f"the board sent {sent} pages, {len(pages)} arrived"})
    return {"requested": requested, "eligible": board.get("eligible"), "checked": len(pages),
            "ok": len(pages) - sum(1 for b in bad if b["page"] is not None), "bad": bad}


def audit_failed(doc: dict[str, Any]) -> bool:
    a = doc.get("audit")
    return bool(a and a["bad"])


def results(
    board: Board,
    hello: dict[str, Any],
    cfg: dict[str, Any],
    raw: dict[str, Any] | None,
    samples: list[dict[str, Any]],
    link_stats: dict[str, Any],
) -> dict[str, Any]:
    """The results document of one run (raw: the board's result, None if the run failed)."""
    raw = raw or {}
    # A MicroPython dict has no order: put counters and config back in their defining order.
    counters: dict[str, int] = _ordered(raw.get("counters", {}), SAMPLE_KEYS)
    cfg = _ordered(raw.get("config", cfg), tuple(runner.DEFAULTS))
    sha = hello.get("fw_sha256")
    doc = {
        "board": {
            "port": board.url,
            "kind": board.kind,
            "platform": hello.get("platform"),
            "machine": hello.get("machine"),
            "threads": hello.get("threads"),
            "gil": hello.get("gil"),
            "cores": hello.get("cores"),
            "mem_free": hello.get("mem_free"),
        },
        "firmware": {
            "version": hello.get("version"),
            "proto": hello.get("proto"),
            "sha256": sha,
            # False: the board runs other files than this host would deploy.
            "matches_host": None if sha is None else sha == firmware_digest(str(FIRMWARE_DIR)),
            "impl": raw.get("impl"),
            **({"image": board.image} if board.image else {}),
        },
        "interpreter": {
            "impl": hello.get("impl"),
            "version": hello.get("impl_version"),
            "executable": board.interpreter,
        },
        "config": cfg,
        "counters": counters,
        "rates": rates(counters),
        "stall_us": stall_summary(raw.get("stall_hist", []), counters.get("allocstall_us")),
        "zpool": raw.get("zpool"),
        "meta": raw.get("meta"),
        "link": link_stats,
        "profile": _profile_doc(board.profile),
        "samples": [_ordered(x, SAMPLE_KEYS) for x in samples],
    }
    # Whatever else the runner reports (states, watermarks, problems, heap...) is kept as is.
    used = {"config", "counters", "stall_hist", "zpool", "meta", "impl", "version"}
    doc.update({k: v for k, v in raw.items() if k not in used and k not in doc})
    return doc


def _profile_doc(p: Profile | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"name": p.name, "title": p.title, "defaults": dict(p.defaults),
            "heap": p.memory.heap, "path": str(p.path) if p.path else None}


def _ordered(d: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    return {**{k: d[k] for k in order if k in d}, **{k: v for k, v in d.items() if k not in order}}


def rates(counters: dict[str, int]) -> dict[str, float | None]:
    secs = counters.get("elapsed_us", 0) / 1e6

    def per_s(name: str) -> float | None:
        return round(counters[name] / secs, 1) if secs > 0 and name in counters else None

    return {"pgsteal_anon_per_s": per_s("pgsteal_anon"), "ops_per_s": per_s("ops")}


def stall_summary(hist: list[int], total_us: int | None = None) -> dict[str, Any]:
    """Allocation stalls from the board's log2 histogram (bucket i: 2**i <= us < 2**(i+1)).

    p50, p99 and max are bucket upper bounds (2**(i+1) us): upper estimates within a factor
    of two, all the histogram allows. `total` is the exact allocstall_us counter when given,
    else estimated from bucket midpoints.
    """
    count = sum(hist)

    def upper_bound_at(rank: int) -> int | None:
        seen = 0
        for i, n in enumerate(hist):
            seen += n
            if n and seen >= rank:
                return 2 ** (i + 1)
        return None

    if total_us is None:
        total_us = sum(n * 3 * 2**i // 2 for i, n in enumerate(hist))
    return {
        "count": count,
        "total": total_us,
        "p50": upper_bound_at(max(1, -(-count * 50 // 100))) if count else None,
        "p99": upper_bound_at(max(1, -(-count * 99 // 100))) if count else None,
        "max": upper_bound_at(count) if count else None,
        "hist": list(hist),
    }


def metrics(run_doc: dict[str, Any]) -> dict[str, float | int | None]:
    """The numbers a comparison is about, from one run's results (one definition for the
    compare summary and the report)."""
    c = run_doc.get("counters", {})
    orig, compr = c.get("orig_data_size"), c.get("compr_data_size")
    el, stall = c.get("elapsed_us"), run_doc["stall_us"]["total"]
    return {
        "pgsteal_anon_per_s": run_doc["rates"]["pgsteal_anon_per_s"],
        "allocstall": c.get("allocstall"),
        # PSI memory "some": the share of the run's time the app was stalled on reclaim.
        "stall_share": round(stall / el, 4) if el and stall is not None else None,
        "stall_total_us": stall,
        "stall_p99_us": run_doc["stall_us"]["p99"],
        "ops_per_s": run_doc["rates"]["ops_per_s"],
        "compression_ratio": round(orig / compr, 2) if orig and compr else None,
        "pswpout": c.get("pswpout"),
        "pgmajfault": c.get("pgmajfault"),
        "kcompressd_fallback": c.get("kcompressd_fallback"),
        # auto's switches, both ways (0 for the fixed designs)
        "auto_switches": (c["kcompressd_auto_inline"] + c["kcompressd_auto_offload"]
                          if "kcompressd_auto_inline" in c else None),
        "corrupt": c.get("corrupt"),
        # Broken invariants the runner found (check_every > 0): must stay 0, like corrupt.
        "problems": len(run_doc["problems"]) if "problems" in run_doc else None,
    }


# -- several boards ------------------------------------------------------------------------------


def on_boards(ports: list[str], job: Callable[[Board], dict[str, Any]],
              profile: Profile | None = None) -> dict[str, Any]:
    """job(board) on every board at once, one thread (and so one Link) each.

    Returns {"boards": {port: job's document}} in the order of `ports`. When some board
    fails, the others still finish; then RunFailed carries that same document, the failed
    boards' partial documents included. A port that cannot be opened raises its PortError.
    """
    docs: dict[str, dict[str, Any]] = {}
    errors: dict[str, BaseException] = {}

    def work(port: str) -> None:
        try:
            docs[port] = job(Board(url=port, kind="serial", profile=profile))
        except RunFailed as e:
            docs[port] = e.partial
            errors[port] = e
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread below
            errors[port] = e

    threads = [threading.Thread(target=work, args=(p,), name=f"board {p}", daemon=True)
               for p in ports]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors.values():
        if not isinstance(e, RunFailed):
            raise e
    doc = {"boards": {p: docs[p] for p in ports if p in docs}}
    if errors:
        failed = list(errors.values())
        raise RunFailed("; ".join(str(e) for e in failed), doc,
                        any(isinstance(e, RunFailed) and e.interrupted for e in failed))
    return doc


# -- compare ------------------------------------------------------------------------------------


def calibrate(board: Board, timeout: float = 10.0,
              loops: int = CALIBRATION_LOOPS) -> dict[str, Any]:
    """The board's fixed loop timed alone on each thread and on both at once (ucz.calibrate)."""
    with Link(board.url, timeout=timeout) as link:
        r = link.request("calibrate", {"loops": loops})
        r["parallel"] = parallel(link.hello)
        return r


def noise(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """Was the host busy around a compare? {"noisy": bool, "why": [reasons]} (see CONTENTION)."""
    why: list[str] = []
    for name, cal in (("before", before), ("after", after)):
        if cal and cal.get("parallel") and cal.get("both_main_us") and cal.get("main_us"):
            slow = max(cal["both_main_us"], cal["both_thread_us"]) / min(cal["main_us"],
                                                                          cal["thread_us"])
            if slow > CONTENTION:
                why.append(f"{name}: two threads at once ran {slow:.2f}x slower than one alone")
    if before and after and before.get("main_us") and after.get("main_us"):
        drift = after["main_us"] / before["main_us"]
        if not 1 / DRIFT <= drift <= DRIFT:
            why.append(f"the loop took {drift:.2f}x as long after the compare as before")
    return {"noisy": bool(why), "why": why}


def compare(
    board: Board,
    cfgs: dict[str, dict[str, Any]],
    repeat: int = 1,
    on_progress: ProgressHandler | None = None,
    timeout: float = 10.0,
    audit: int = 0,
    calibrate: bool = True,
) -> dict[str, Any]:
    """The same workload under each mode (cfgs: mode -> validated config), `repeat` times,
    interleaved (ABCABC..., not AAA BBB) so that drift on the host spreads over all of them,
    between two calibrations of the board (see noise()).

    Returns {MODE: RUN, ..., "summary": ..., "calibration": ...} (+ "repeats" when repeat > 1);
    each RUN is the repetition with the median pgsteal_anon/s. summary[metric][MODE] has the
    median, its 95% interval and min..max; summary[metric]["pairs"]["B/A"] has B against A
    (median, ci95, significant: see ucompressd.stats) for every mode against the first, and
    each later mode against the second too.
    """
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in cfgs}
    cal: dict[str, Any] | None = {"before": _calibration(board, timeout)} if calibrate else None
    for r in range(repeat):
        for mode, cfg in cfgs.items():
            label = f"{mode} {r + 1}/{repeat}" if repeat > 1 else mode
            try:
                runs[mode].append(run(board, cfg, on_progress, label, timeout, audit))
            except RunFailed as e:
                # Everything so far, the failed run's samples included, goes to the files.
                runs[mode].append(e.partial)
                doc = _compare_doc({m: rs for m, rs in runs.items() if rs}, cal)
                doc[mode] = e.partial
                raise RunFailed(str(e), doc, e.interrupted) from None
    if cal is not None:
        cal["after"] = _calibration(board, timeout)
    return _compare_doc(runs, cal)


def _calibration(board: Board, timeout: float) -> dict[str, Any] | None:
    try:
        return calibrate(board, timeout)
    except CommandError:  # firmware from before the calibrate command: compare without it
        return None


def _compare_doc(runs: dict[str, list[dict[str, Any]]],
                 cal: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    summary: dict[str, dict[str, Any]] = {}
    modes = list(runs)
    pairs = [(a, b) for i, a in enumerate(modes[:2]) for b in modes[i + 1:]]
    for mode, rs in runs.items():
        key = [metrics(r)["pgsteal_anon_per_s"] or 0 for r in rs]
        doc[mode] = rs[key.index(statistics.median_low(key))]
    for name in metrics(runs[modes[0]][0]):
        vals = {m: [metrics(r)[name] for r in rs] for m, rs in runs.items()}
        row: dict[str, Any] = summary.setdefault(name, {})
        for mode in modes:
            row[mode] = {**stats.median_ci(vals[mode]), "values": vals[mode]}
        row["pairs"] = {f"{b}/{a}": stats.compare(vals[a], vals[b]) for a, b in pairs}
    doc["summary"] = summary
    if cal is not None:
        doc["calibration"] = {**cal, **noise(cal.get("before"), cal.get("after"))}
    if any(len(rs) > 1 for rs in runs.values()):
        doc["repeats"] = runs
    return doc

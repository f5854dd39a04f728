"""Tables for the terminal (rich) and the files a run leaves behind (JSON, CSV)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable

from rich.table import Table

from ucompressd.experiment import MODES, SAMPLE_KEYS, metrics

# Metric rows of the compare table, in the order of MediaTek's kcompressd report:
# (metric key from experiment.metrics, label, True when higher is better / None when neutral).
COMPARE_ROWS: tuple[tuple[str, str, bool | None], ...] = (
    ("pgsteal_anon_per_s", "pgsteal_anon/s", True),
    ("allocstall", "allocation stalls", False),
    ("stall_share", "stall share of run time (PSI some)", False),
    ("stall_total_us", "stall time total (us)", False),
    ("stall_p99_us", "stall time p99 (us, <=)", False),
    ("ops_per_s", "app ops/s", True),
    ("compression_ratio", "compression ratio", None),
    ("pswpout", "pswpout", None),
    ("pgmajfault", "pgmajfault", None),
    ("kcompressd_fallback", "kcompressd fallback (ring full)", None),
    ("auto_switches", "auto switches", None),
    ("corrupt", "corrupt pages", False),
    ("problems", "invariant problems", False),
)


def _num(v: float | int | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{int(v):,}"


def _cell(s: dict[str, Any]) -> str:
    text = _num(s["median"])
    ci = s.get("ci95")
    if ci and ci[0] != ci[1]:  # the interval of the median (order statistics)
        text += f" ({_num(ci[0])}..{_num(ci[1])})"
    elif len(s["values"]) > 1 and s["min"] != s["max"]:
        text += f" ({_num(s['min'])}..{_num(s['max'])})"
    return text


def _change(before: float | None, after: float | None, higher_better: bool | None) -> str:
    if before is None or after is None:
        return "-"
    if before == 0:
        return "=" if after == 0 else f"+{_num(after)}"
    pct = (after - before) / before * 100
    if round(pct) == 0:
        return "0%"
    colour = ""
    if higher_better is not None and abs(pct) >= 1:
        colour = "green" if (pct > 0) == higher_better else "red"
    text = f"{pct:+.0f}%"
    return f"[{colour}]{text}[/{colour}]" if colour else text


def _pair_change(pair: dict[str, Any] | None, a: dict[str, Any] | None,
                 b: dict[str, Any] | None, higher_better: bool | None) -> str:
    """B against A: the estimate with its 95% interval; '*' and colour only when significant."""
    if not pair or pair.get("median") is None or pair.get("ci95") is None:
        return _change(a and a["median"], b and b["median"], higher_better)
    lo, hi = pair["ci95"]
    if pair["measure"] == "ratio":
        est, lo, hi = ((v - 1) * 100 for v in (pair["median"], lo, hi))
        text = f"{est:+.0f}% ({lo:+.0f}..{hi:+.0f}%)"
    else:
        est = pair["median"]
        text = f"{est:+,.4g} ({lo:+,.4g}..{hi:+,.4g})"
    if not pair["significant"]:
        return text
    text += "*"
    if higher_better is None or est == 0:
        return text
    colour = "green" if (est > 0) == higher_better else "red"
    return f"[{colour}]{text}[/{colour}]"


def _modes(doc: dict[str, Any]) -> list[str]:
    return [m for m in MODES if m in doc] + [
        k for k, v in doc.items() if k not in MODES and isinstance(v, dict) and "counters" in v]


def compare_table(doc: dict[str, Any]) -> Table:
    """Metric | kswapd only | kcompressd | auto | each against kswapd (and auto against
    kcompressd): medians with their 95% interval over repeats, changes with theirs."""
    modes = _modes(doc)
    summary = doc.get("summary", {})
    pairs = [p for p in summary.get("pgsteal_anon_per_s", {}).get("pairs", {})]
    if not pairs and len(modes) > 1:  # a document from before the pairs
        pairs = [f"{m}/{modes[0]}" for m in modes[1:]]
    cfg = next((doc[m]["config"] for m in modes[1:] if m in doc), doc[modes[0]]["config"])
    n = max((len(summary.get("pgsteal_anon_per_s", {}).get(m, {}).get("values", []))
             for m in modes), default=1)
    title = f"{cfg.get('workload')}, {cfg.get('data')} data, compressor {cfg.get('compressor')}"
    caption = None
    if n > 1:
        caption = (f"median (95% interval) of {n} interleaved runs; change: Hodges-Lehmann "
                   "estimate (95% interval), * significant (Mann-Whitney, p < 0.05)")
    t = Table(title=title, caption=caption)
    t.add_column("Metric")
    for m in modes:
        t.add_column("kswapd only" if m == "kswapd" else m, justify="right")
    for p in pairs:
        b, a = p.split("/")
        t.add_column(f"{b} vs {a}", justify="right")
    for key, label, better in COMPARE_ROWS:
        s = summary.get(key, {})
        cells = [_cell(s[m]) if s.get(m) else "-" for m in modes]
        for p in pairs:
            b, a = p.split("/")
            cells.append(_pair_change(s.get("pairs", {}).get(p), s.get(a), s.get(b), better))
        t.add_row(label, *cells)
    return t


def noise_line(doc: dict[str, Any]) -> str | None:
    """One line when the calibration found the host busy around the compare, else None."""
    cal = doc.get("calibration") or {}
    if not cal.get("noisy"):
        return None
    return "the host was busy (" + "; ".join(cal["why"]) + "): these figures are noisy"


def boards_compare_table(doc: dict[str, Any]) -> Table:
    """compare on several boards: a column per board, kswapd -> kcompressd (change) per metric,
    and the pgsteal_anon/s ratio first."""
    base, new = MODES[:2]
    boards = doc["boards"]
    t = Table(title="kswapd only -> kcompressd, per board")
    t.add_column("Metric")
    for port in boards:
        t.add_column(port, justify="right")
    cells = []
    for d in boards.values():
        s = d.get("summary", {}).get("pgsteal_anon_per_s", {})
        a, b = (s.get(base) or {}).get("median"), (s.get(new) or {}).get("median")
        cells.append(f"{b / a:.2f}x" if a and b is not None else "-")
    t.add_row("pgsteal_anon/s ratio", *cells)
    for key, label, better in COMPARE_ROWS:
        row = []
        for d in boards.values():
            s = d.get("summary", {}).get(key, {})
            a, b = (s.get(base) or {}).get("median"), (s.get(new) or {}).get("median")
            row.append(f"{_num(a)} -> {_num(b)} ({_change(a, b, better)})")
        t.add_row(label, *row)
    return t


def run_tables(doc: dict[str, Any]) -> list[Table]:
    """The summary and every counter of one run."""
    cfg = doc.get("config", {})
    head = Table(title=f"{cfg.get('mode')} ({cfg.get('compressor')}), {cfg.get('workload')}, "
                 f"{cfg.get('data')} data")
    head.add_column("Metric")
    head.add_column("value", justify="right")
    m = metrics(doc)
    for key, label, _ in COMPARE_ROWS:
        head.add_row(label, _num(m.get(key)))
    a = doc.get("audit")
    if a:
        head.add_row("codec audit (pages ok)", f"{a['ok']} of {a['checked']}")
    counters = Table(title="counters")
    counters.add_column("counter")
    counters.add_column("value", justify="right")
    for name, value in doc.get("counters", {}).items():
        counters.add_row(name, _num(value))
    return [head, counters]


def write_json(doc: dict[str, Any], path: Path | str) -> None:
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")


def write_csv(rows: Iterable[dict[str, Any]], path: Path | str) -> None:
    """Samples as rows; columns are every key seen, in order of first appearance (the sample
    columns when there is no row, so that the file always has its header)."""
    rows = list(rows)
    cols: dict[str, None] = {} if rows else dict.fromkeys(SAMPLE_KEYS)
    for r in rows:
        cols.update(dict.fromkeys(r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(cols), restval="")
        w.writeheader()
        w.writerows(rows)


def samples_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """CSV rows of a run document, or of a compare document (with mode and repeat columns), or
    of several boards' documents (with a port column first)."""
    if "boards" in doc:
        return [{"port": port, **r} for port, d in doc["boards"].items() for r in samples_rows(d)]
    if "samples" in doc:
        return list(doc["samples"])
    rows: list[dict[str, Any]] = []
    for mode in _modes(doc):
        runs = doc.get("repeats", {}).get(mode) or ([doc[mode]] if mode in doc else [])
        for rep, r in enumerate(runs, 1):
            rows += [{"mode": mode, "repeat": rep, **s} for s in r.get("samples", [])]
    return rows

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
    ("stall_total_us", "stall time total (us)", False),
    ("stall_p99_us", "stall time p99 (us, <=)", False),
    ("ops_per_s", "app ops/s", True),
    ("compression_ratio", "compression ratio", None),
    ("pswpout", "pswpout", None),
    ("pgmajfault", "pgmajfault", None),
    ("kcompressd_fallback", "kcompressd fallback (ring full)", None),
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
    if len(s["values"]) > 1 and s["min"] != s["max"]:
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


def compare_table(doc: dict[str, Any]) -> Table:
    """Metric | kswapd only | kcompressd | change (medians, with min..max over repeats)."""
    base, new = MODES
    cfg = doc[new]["config"] if new in doc else doc[base]["config"]
    title = f"{cfg.get('workload')}, {cfg.get('data')} data, compressor {cfg.get('compressor')}"
    t = Table(title=title)
    t.add_column("Metric")
    t.add_column("kswapd only", justify="right")
    t.add_column("kcompressd", justify="right")
    t.add_column("change", justify="right")
    summary = doc.get("summary", {})
    for key, label, better in COMPARE_ROWS:
        s = summary.get(key, {})
        a, b = s.get(base), s.get(new)
        t.add_row(
            label,
            _cell(a) if a else "-",
            _cell(b) if b else "-",
            _change(a and a["median"], b and b["median"], better),
        )
    return t


def boards_compare_table(doc: dict[str, Any]) -> Table:
    """compare on several boards: a column per board, kswapd -> kcompressd (change) per metric,
    and the pgsteal_anon/s ratio first."""
    base, new = MODES
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
    for mode in MODES:
        runs = doc.get("repeats", {}).get(mode) or ([doc[mode]] if mode in doc else [])
        for rep, r in enumerate(runs, 1):
            rows += [{"mode": mode, "repeat": rep, **s} for s in r.get("samples", [])]
    return rows

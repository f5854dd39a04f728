"""`ucompressd plot RESULTS.json -o fig.png`: one figure from real results.

Reads a `run --json` or `compare --json` file, or the reclaim benchmark's JSON
(benchmarks/bench_reclaim.py: a compare, a finely sampled trace pair, and sweeps). Panels:
free frames, ring depth and reclaim rate over time for each mode, the allocation-stall
histogram, when auto handed off and when it compressed inline (with its switches counted), and
one line panel per sweep (kcompressd and auto against kswapd). Every axes has a title; plot() returns them and the
PNG carries them in its Description text chunk, with the number of data series each panel shows
in its Series chunk (JSON), so a reader (or a test) can tell which panels were drawn, and filled.
matplotlib is an optional extra: pip install 'ucompressd[plot]'.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

from ucompressd.errors import InputError

# Runs in the order they are drawn; other keys of a compare document with runs come after.
MODE_ORDER = ("kswapd", "kcompressd", "kcompressd_task", "auto")
# Lines of a sweep panel: (key of the point, key in it, label).
SWEEP_LINES: tuple[tuple[str, str, str], ...] = (
    ("versus", "steal_ratio", "kcompressd pgsteal_anon/s ratio"),
    ("versus_auto", "steal_ratio", "auto pgsteal_anon/s ratio"),
    ("versus", "ideal", "ideal ratio"),
    ("versus", "ops_ratio", "kcompressd app ops/s ratio"),
)
QUEUEING = ("kcompressd", "auto")  # modes with a ring to draw


class NotResults(InputError):
    """The file is JSON, but not results this command can draw."""


def _is_run(v: Any) -> bool:
    return isinstance(v, dict) and isinstance(v.get("counters"), dict) and "config" in v


def time_runs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The runs of the time panels, by label: a benchmark's trace pair (sampled finely) when
    present, else its compare, else the compare document's runs, else the one run."""
    if doc.get("benchmark") == "reclaim":
        for key in ("trace", "compare"):
            runs = time_runs(doc[key]) if isinstance(doc.get(key), dict) else {}
            if any(r.get("samples") for r in runs.values()):
                return runs
        return time_runs(doc["compare"]) if isinstance(doc.get("compare"), dict) else {}
    if _is_run(doc):
        return {_label(str(doc["config"].get("mode")), doc): doc}
    keys = [k for k in MODE_ORDER if _is_run(doc.get(k))]
    keys += [k for k in doc if k not in keys and _is_run(doc[k])]
    return {_label(k, doc[k]): doc[k] for k in keys}


def _label(key: str, run: dict[str, Any]) -> str:
    cfg = run.get("config", {})
    if cfg.get("mode") in QUEUEING:
        return f"{cfg.get('mode')}/{cfg.get('compressor')}"
    return key


def check(doc: Any) -> None:
    """Raise NotResults unless `doc` holds at least one run to draw."""
    if not isinstance(doc, dict):
        raise NotResults("not a results document (a JSON object is expected)")
    if not time_runs(doc):
        raise NotResults("holds no run (expected the output of `ucompressd run/compare --json` "
                         "or benchmarks/bench_reclaim.py)")


# -- panels ---------------------------------------------------------------------------------------


def _t_ms(samples: list[dict[str, Any]]) -> list[float]:
    return [s["t_us"] / 1000 for s in samples]


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def panel_free(ax: Any, runs: dict[str, dict[str, Any]]) -> None:
    ax.set_title("Free frames over time")
    drawn = False
    for label, r in runs.items():
        s = r.get("samples") or []
        if s:
            ax.plot(_t_ms(s), [x["free"] for x in s], label=label, drawstyle="steps-post")
            drawn = True
    marks = next((r.get("watermarks") for r in runs.values() if r.get("watermarks")), None)
    if marks:
        for name, v in zip(("min", "low", "high"), marks):
            ax.axhline(v, color="grey", linestyle=":", linewidth=0.8)
            ax.annotate(name, (1, v), xycoords=("axes fraction", "data"), fontsize=7,
                        color="grey", ha="right", va="bottom")
    _finish_time_axes(ax, "free frames", drawn, "no samples (run shorter than sample_ms)")


def _finish_time_axes(ax: Any, ylabel: str, drawn: bool, empty: str) -> None:
    ax.set_xlabel("time (ms)")
    ax.set_ylabel(ylabel)
    if drawn:
        ax.legend(fontsize=8)
    else:
        _empty(ax, empty)


def panel_ring(ax: Any, runs: dict[str, dict[str, Any]]) -> None:
    ax.set_title("Ring depth over time (kcompressd)")
    drawn = False
    for label, r in runs.items():
        s = r.get("samples") or []
        if r.get("config", {}).get("mode") in QUEUEING and s:
            ax.plot(_t_ms(s), [x["ring"] for x in s], label=f"{label} ring",
                    drawstyle="steps-post")
            ax.plot(_t_ms(s), [x["queued"] for x in s], label=f"{label} queued + writeback",
                    linestyle="--", linewidth=0.8)
            ax.axhline(r["config"].get("ring", 0), color="grey", linestyle=":", linewidth=0.8)
            drawn = True
    _finish_time_axes(ax, "pages", drawn, "no kcompressd samples")


def panel_rate(ax: Any, runs: dict[str, dict[str, Any]]) -> None:
    ax.set_title("Reclaim rate over time (pgsteal_anon/s)")
    drawn = False
    for label, r in runs.items():
        s = r.get("samples") or []
        if not s:
            continue
        # Counters start at zero at t = 0: the first interval starts there.
        pts = [(0, 0)] + [(x["t_us"], x["pgsteal_anon"]) for x in s]
        t, rate = [], []
        for (t0, a), (t1, b) in zip(pts, pts[1:]):
            if t1 > t0:
                t.append((t0 + t1) / 2000)
                rate.append((b - a) * 1e6 / (t1 - t0))
        ax.plot(t, rate, marker=".", label=label)
        drawn = True
    _finish_time_axes(ax, "pages / s", drawn, "no samples")


def panel_auto(ax: Any, runs: dict[str, dict[str, Any]]) -> None:
    """auto's design over time (1: handing off, 0: inline), its switches and trials."""
    ax.set_title("Auto: handing off (1) or inline (0)")
    drawn = False
    for label, r in runs.items():
        s = [x for x in r.get("samples") or [] if "kcompressd_offloading" in x]
        if r.get("config", {}).get("mode") != "auto" or not s:
            continue
        c = r.get("counters", {})
        ax.plot(_t_ms(s), [x["kcompressd_offloading"] for x in s], drawstyle="steps-post",
                label=f"{label}: {c.get('kcompressd_auto_inline', 0)} to inline, "
                      f"{c.get('kcompressd_auto_offload', 0)} to offload, "
                      f"{c.get('kcompressd_auto_probe', 0)} trials")
        drawn = True
    ax.set_ylim(-0.1, 1.1)
    _finish_time_axes(ax, "design", drawn, "no auto samples")


def panel_stalls(ax: Any, runs: dict[str, dict[str, Any]]) -> None:
    ax.set_title("Allocation stall time histogram")
    hists = {label: list((r.get("stall_us") or {}).get("hist") or r.get("stall_hist") or [])
             for label, r in runs.items()}
    top = max((i for h in hists.values() for i, n in enumerate(h) if n), default=-1)
    if top < 0:
        _empty(ax, "no allocation stalls")
        return
    width = 0.8 / len(hists)
    for j, (label, h) in enumerate(hists.items()):
        h = (h + [0] * (top + 1))[: top + 1]
        total = sum(h)
        ax.bar([i + (j - (len(hists) - 1) / 2) * width for i in range(top + 1)], h, width,
               label=f"{label} ({total} stalls)")
    ax.set_xticks(range(top + 1))
    ax.set_xticklabels([str(2**i) for i in range(top + 1)], rotation=90, fontsize=7)
    ax.set_xlabel("stall time, log2 bucket lower bound (us)")
    ax.set_ylabel("stalls")
    ax.set_yscale("log")
    ax.legend(fontsize=8)


def panel_sweep(ax: Any, sweep: dict[str, Any]) -> None:
    ax.set_title(f"Sweep: {sweep.get('label') or sweep.get('param')}")
    points = sweep.get("points") or []
    xs = list(range(len(points)))
    for part, key, name in SWEEP_LINES:
        if not any(part in p for p in points):
            continue  # a sweep from before auto
        ys = [_median((p.get(part) or {}).get(key)) for p in points]
        ax.plot(xs, [math.nan if y is None else y for y in ys], marker="o", label=name)
    for part, name in (("versus", "kcompressd"), ("versus_auto", "auto")):
        if not any(part in p for p in points):
            continue
        stalls = [_median(((p.get(part) or {}).get("allocstall") or {}).get("reduction"))
                  for p in points]
        ax.plot(xs, [math.nan if y is None else 1 - y for y in stalls], marker="s",
                linestyle="--", label=f"{name} allocation stalls ratio")
    for x, p in zip(xs, points):
        if "error" in p:
            ax.axvline(x, color="red", alpha=0.3)
    ax.axhline(1, color="grey", linewidth=0.8)  # break-even: below it the split does not pay
    ax.set_xticks(xs)
    ax.set_xticklabels([str(p.get("value")) for p in points])
    ax.set_xlabel(str(sweep.get("param")))
    ax.set_ylabel("design / kswapd")
    ax.legend(fontsize=7)


def _median(s: Any) -> float | None:
    return s.get("median") if isinstance(s, dict) else None


# -- the figure -----------------------------------------------------------------------------------


def plot(results: dict[str, Any], out: Path) -> list[str]:
    """Draw `results` into the PNG `out`; return the titles of the panels drawn."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    check(results)
    runs = time_runs(results)
    sweeps = [s for s in (results.get("sweeps") or {}).values() if isinstance(s, dict)]
    drawers: list[Callable[[Any], None]] = [
        lambda ax: panel_free(ax, runs), lambda ax: panel_ring(ax, runs),
        lambda ax: panel_rate(ax, runs), lambda ax: panel_stalls(ax, runs)]
    if any(r.get("config", {}).get("mode") == "auto" for r in runs.values()):
        drawers.append(lambda ax: panel_auto(ax, runs))
    drawers += [functools.partial(panel_sweep, sweep=s) for s in sweeps]
    ncols = 2
    nrows = math.ceil(len(drawers) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(13, 4 * nrows), squeeze=False,
                             layout="constrained")
    flat = [ax for row in axes for ax in row]
    for ax, draw in zip(flat, drawers):
        draw(ax)
    for ax in flat[len(drawers):]:
        ax.remove()
    titles = [ax.get_title() for ax in flat[: len(drawers)]]
    # Per panel, the data series it shows (labelled lines and bar groups): 0 means an empty panel.
    series = {ax.get_title(): len(ax.get_legend_handles_labels()[1]) for ax in flat[: len(drawers)]}
    cfg = next(iter(runs.values())).get("config", {})
    fig.suptitle(f"ucompressd: {cfg.get('workload')} workload, {cfg.get('pages')} pages, "
                 f"{cfg.get('frames')} frames of {cfg.get('page_size')} B, data {cfg.get('data')}")
    fig.savefig(out, dpi=90, metadata={"Title": "ucompressd results",
                                       "Description": "\n".join(titles),
                                       "Series": json.dumps(series)})
    plt.close(fig)
    return titles


# -- the command ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, metavar="RESULTS.json",
                        help="a run/compare --json file or the reclaim benchmark's JSON")
    parser.add_argument("-o", "--out", type=Path, metavar="FIG.png",
                        help="the figure to write (default: RESULTS with .png)")


class PlotError(InputError):
    """The results file or the figure's name cannot be used (exit status 2)."""


def check_format(out: Path) -> None:
    """Refuse a figure name matplotlib cannot write, before the results are read."""
    from matplotlib.figure import Figure

    kinds = Figure().canvas.get_supported_filetypes()
    ext = out.suffix.lower().lstrip(".")
    if ext not in kinds:
        raise PlotError(f"-o {out}: {('.' + ext) if ext else 'no extension'} is not a figure "
                        f"format matplotlib writes ({', '.join('.' + k for k in sorted(kinds))})")


def run(args: argparse.Namespace) -> int:
    """The `plot` subcommand: the figure is written, or PlotError (one line, exit 2)."""
    path: Path = args.results
    out: Path = args.out or path.with_suffix(".png")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError("plotting needs matplotlib: pip install 'ucompressd[plot]'") from None
    check_format(out)
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise PlotError(f"cannot read {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PlotError(f"{path} is not JSON: {e}") from None
    try:
        check(doc)
    except NotResults as e:
        raise PlotError(f"{path}: {e}") from None
    try:
        titles = plot(doc, out)
    except OSError as e:
        raise PlotError(f"cannot write {out}: {e.strerror or e}") from None
    except (KeyError, TypeError, ValueError) as e:  # a results file missing parts we draw from
        raise PlotError(f"{path}: malformed results ({type(e).__name__}: {e})") from None
    print(f"{out}: {len(titles)} panels ({', '.join(titles)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    from ucompressd.cli import main as cli_main

    return cli_main(["plot", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

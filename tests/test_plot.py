"""`ucompressd plot`: a figure from a real compare on the simulated board (and from real sweep
points), and one clear line with exit status 2 for files it cannot draw."""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import bench_module

pytest.importorskip("matplotlib", reason="matplotlib not installed: pip install 'ucompressd[plot]'")

from ucompressd import experiment, plot, report  # noqa: E402
from ucz import runner  # noqa: E402

# Small enough for seconds per run, long enough (sample_ms 10) for a dozen samples per run.
SMALL = {"pages": 64, "frames": 16, "ops": 6000, "sample_ms": 10}
TIME_PANELS = ["Free frames over time", "Ring depth over time (kcompressd)",
               "Reclaim rate over time (pgsteal_anon/s)", "Allocation stall time histogram",
               "Auto: handing off (1) or inline (0)"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_text(path: Path) -> dict[str, str]:
    """The tEXt chunks of a PNG (where plot() records its panel titles)."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG"
    out: dict[str, str] = {}
    i = 8
    while i + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[i:i + 8])
        body = data[i + 8:i + 8 + n]
        if kind == b"tEXt":
            key, _, text = body.partition(b"\0")
            out[key.decode("latin-1")] = text.decode("latin-1")
        if kind == b"IEND":
            break
        i += 12 + n
    return out


def cfgs(**over: Any) -> dict[str, dict[str, Any]]:
    return {m: runner.config({**SMALL, **over, "mode": m, "compressor": "thread"})
            for m in experiment.MODES}


@pytest.fixture(scope="module")
def board() -> Iterator[experiment.Board]:
    with experiment.open_board(None) as b:
        yield b


@pytest.fixture(scope="module")
def compare_json(board: experiment.Board, tmp_path_factory: pytest.TempPathFactory) -> Path:
    doc = experiment.compare(board, cfgs(), 1)
    for mode in experiment.MODES:  # what the panels draw must be there: samples, stalls
        assert len(doc[mode]["samples"]) >= 3, f"{mode}: too few samples to draw"
    assert doc["kswapd"]["counters"]["allocstall"] > 0, "no stall: the histogram would be empty"
    path = tmp_path_factory.mktemp("plot") / "compare.json"
    report.write_json(doc, path)  # as `ucompressd compare --json` writes it
    return path


def run_plot(results: Path, out: Path | None = None) -> int:
    from ucompressd.cli import main

    return main(["plot", str(results), *(["-o", str(out)] if out else [])])


def test_compare_json_gives_a_png_with_the_time_panels(compare_json: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fig.png"
    assert run_plot(compare_json, out) == 0
    assert capsys.readouterr().err == ""
    assert out.stat().st_size > 20_000  # four drawn panels, not an empty canvas
    text = png_text(out)
    assert text["Description"].split("\n") == TIME_PANELS
    # Data series per panel: every design (free, rate, stalls); ring and queued of kcompressd
    # and auto; auto's design over time.
    assert json.loads(text["Series"]) == dict(zip(TIME_PANELS, [3, 4, 3, 3, 1]))


def test_default_output_is_the_results_name_with_png(compare_json: Path) -> None:
    png = compare_json.with_suffix(".png")
    png.unlink(missing_ok=True)
    assert run_plot(compare_json) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_reclaim_benchmark_json_adds_one_panel_per_sweep(
        board: experiment.Board, compare_json: Path, tmp_path: Path) -> None:
    bench_reclaim = bench_module("bench_reclaim")

    class Quiet:
        def update(self, text: str) -> None:
            pass

    bench = bench_reclaim.Bench(board, 10.0, Quiet())
    small = {"pages": 64, "frames": 16, "ops": 2000}
    sweep = bench_reclaim.sweep(bench, "ring", "ring slots", [4, 16],
                                [{**small, "ring": 4}, {**small, "ring": 16}], 1)
    assert all("versus" in p for p in sweep["points"]), sweep
    doc = {"benchmark": "reclaim", "compare": json.loads(compare_json.read_text()),
           "sweeps": {"ring": sweep}}
    out = tmp_path / "reclaim.png"
    titles = plot.plot(doc, out)
    assert titles == TIME_PANELS + ["Sweep: ring slots"]
    text = png_text(out)
    assert text["Description"].split("\n") == titles
    # kcompressd and auto steal ratios, ideal, ops ratio, and both stall ratios
    assert json.loads(text["Series"])["Sweep: ring slots"] == 6


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    cap = capsys.readouterr()
    lines = cap.err.splitlines()
    assert cap.out == "" and len(lines) == 1, cap
    return lines[0]


@pytest.mark.parametrize("content, says", [
    (None, "cannot read"),
    ("not json {", "is not JSON"),
    ("[1, 2, 3]", "not a results document"),
    ('{"benchmark": "codec", "kinds": {}}', "holds no run"),
], ids=["missing", "not-json", "json-list", "codec-results"])
def test_bad_file_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         content: str | None, says: str) -> None:
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "fig.png"
    assert run_plot(path, out) == 2
    line = _one_error_line(capsys)
    assert says in line and str(path) in line
    assert not out.exists()


def test_missing_matplotlib_says_how_to_install(compare_json: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert run_plot(compare_json, tmp_path / "fig.png") == 2
    assert "pip install 'ucompressd[plot]'" in _one_error_line(capsys)


def test_the_cli_runs_plot(compare_json: Path, tmp_path: Path) -> None:
    from ucompressd import cli

    out = tmp_path / "cli.png"
    argv = ["plot", str(compare_json), "-o", str(out)]
    try:
        cli.build_parser().parse_args(argv)
    except cli.ArgumentError as e:
        pytest.skip(f"the CLI has no plot subcommand yet (the lead wires ucompressd.plot): {e}")
    assert cli.main(argv) == 0
    assert png_text(out)["Description"].split("\n") == TIME_PANELS

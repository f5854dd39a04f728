"""ucz.bench under the MicroPython unix port and CPython, and the benchmark scripts end to end on
the simulated board. No timing is asserted: only that every figure is there and consistent."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import lz4.block
import pytest

from conftest import REPO, bench_module, run_micropython
from ucz import bench
from ucz.pagedata import KINDS, csum, fill

PAGE = 1024


def c_library(kind: str, pages: int, seed: int = 1) -> tuple[list[int], list[int]]:
    """Sizes and checksums of the C library's default-mode blocks for the pages bench.codec
    generates (regenerated here with the same pagedata.fill)."""
    buf = bytearray(pages * PAGE)
    sizes, sums = [], []
    for p in range(pages):
        fill(buf, p * PAGE, PAGE, KINDS.index(kind), seed, p, 0)
        block = lz4.block.compress(bytes(buf[p * PAGE:(p + 1) * PAGE]), mode="default",
                                   store_size=False)
        sizes.append(len(block))
        sums.append(csum(block, 0, len(block)))
    return sizes, sums


def mp_json(code: str) -> Any:
    proc = run_micropython(["-c", code], timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_codec(r: dict[str, Any], kind: str, pages: int, reps: int) -> None:
    assert r["kind"] == kind and r["pages"] == pages and r["bytes"] == pages * PAGE
    assert len(r["compress_us"]) == len(r["decompress_us"]) == reps
    assert all(isinstance(u, int) and u >= 0 for u in r["compress_us"] + r["decompress_us"])
    assert r["roundtrip_ok"] is True
    sizes, sums = c_library(kind, pages)
    # Byte-identical to the C library: same size and same checksum, page by page.
    assert r["sizes"] == sizes and r["sums"] == sums
    assert r["compressed"] == sum(sizes)


def test_codec_under_micropython_matches_the_c_library() -> None:
    pages, reps = 6, 2
    results = mp_json(
        "import ucz.bench, json\n"
        f"print(json.dumps([ucz.bench.codec(k, {PAGE}, {pages}, 1, {reps})"
        f" for k in {list(KINDS)!r}]))"
    )
    assert [r["kind"] for r in results] == list(KINDS)
    for r in results:
        assert r["impl"] == "viper" and r["platform"].startswith("micropython")
        check_codec(r, r["kind"], pages, reps)


def test_codec_on_cpython_plain_path() -> None:
    r = bench.codec("mixed", PAGE, 3, 1, 1)
    assert r["impl"] == "python"
    check_codec(r, "mixed", 3, 1)


def test_memory_under_micropython_is_consistent() -> None:
    # the very snippet the benchmark runs on a board
    m = mp_json(bench_module("bench_memory").MEMORY_CODE)
    assert m["modules"] == list(bench.SERVER_MODULES)
    assert set(m["heap_by_module"]) == set(bench.SERVER_MODULES) | {"Server()"}
    assert all(n >= 0 for n in m["heap_by_module"].values()), m["heap_by_module"]
    assert 0 < m["heap_idle"] < m["heap_alloc_idle"] < m["heap_total"]
    assert m["heap_alloc_idle"] + m["heap_free_idle"] == m["heap_total"]
    assert m["bench_loaded"] > 0
    # Measured growth per page / frame is the documented formula (arrays carry no per-item
    # overhead; the halving of rounding over 1024 pages leaves well under a byte).
    meas, form = m["meta_measured"], m["meta_formula"]
    assert abs(meas["bytes_per_page"] - form["bytes_per_page"]) < 0.5, m
    assert abs(meas["bytes_per_frame"] - form["bytes_per_frame"]) < 0.5, m


def test_memory_on_cpython_reports_no_heap() -> None:
    m = bench.memory()
    assert m["heap_idle"] is None and m["meta_measured"]["bytes_per_page"] is None
    assert m["meta_formula"]["bytes_per_page"] > 0


def run_script(name: str, out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / name), "--quick",
                           "--out", str(out), *args],
                          capture_output=True, text=True, timeout=240, cwd=REPO)
    assert out.exists(), proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())


def check_targets(doc: dict[str, Any], names: list[str], stdout: str) -> None:
    got = {t["name"]: t for t in doc["targets"]}
    assert sorted(got) == sorted(names)
    for t in got.values():
        assert t["measured"] and t["measured"] != "-", t
        if t["name"].startswith("("):  # context beside the targets: a figure, no verdict
            assert t["met"] is None, t
            continue
        assert t["want"], t
        assert isinstance(t["met"], bool), t  # the simulated board is the unix port: all apply
        assert t["name"] in stdout  # the table printed it (200 columns when not a terminal)
    assert doc["environment"]["cpus"] and len(doc["environment"]["loadavg_end"]) == 3


def test_bench_codec_quick_on_the_simulated_board(tmp_path: Path) -> None:
    proc, doc = run_script("bench_codec.py", tmp_path / "codec.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_targets(doc, ["compress speed, mixed corpus: C / firmware",
                        "decompress speed, mixed corpus: C / firmware",
                        "compression ratio, mixed corpus"], proc.stdout)
    assert set(doc["kinds"]) == set(KINDS)
    for k, s in doc["kinds"].items():
        assert s["identical"] and s["roundtrip_ok"], k
        assert s["fw_compress_MBps"]["n"] == doc["params"]["reps"] * doc["params"]["rounds"]
        assert s["c_ratio"] == pytest.approx(s["fw_ratio"])
    assert doc["board"]["kind"] == "sim" and doc["board"]["lz4_impl"] == "viper"


def test_bench_memory_quick_on_the_simulated_board(tmp_path: Path) -> None:
    proc, doc = run_script("bench_memory.py", tmp_path / "memory.json")
    check_targets(doc, ["metadata per logical page (heap growth per page)",
                        "metadata per frame (heap growth per frame)",
                        "firmware heap at idle (pool and zpool excluded)",
                        "corrupt pages in the capacity runs"], proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # every capacity run completed
    assert set(doc["capacity"]) == set(KINDS)
    for k, c in doc["capacity"].items():
        assert c["pages_held"] == doc["params"]["capacity"]["pages"], k
        assert c["capacity_x"] > 0 and c["corrupt"] == 0, k


def test_bench_reclaim_quick_headline_on_the_simulated_board(tmp_path: Path) -> None:
    proc, doc = run_script("bench_reclaim.py", tmp_path / "reclaim.json", "--no-sweeps")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_targets(doc, [
        "pgsteal_anon/s, kcompressd/thread over kswapd (default)",
        "allocation stalls removed, kcompressd/thread", "stall p99, kcompressd/thread vs kswapd",
        "pgsteal_anon/s, auto over kswapd (default)", "allocation stalls removed, auto",
        "stall p99, auto vs kswapd", "share of the ideal ratio, kcompressd/thread",
        "(the whole-run ideal x this host's two-thread speed-up on the calibration loop / 2)",
        "corrupt pages, every run"], proc.stdout)
    assert set(doc["headline"]) == {"kcompressd/thread", "kcompressd/task", "auto"}
    # the sim's two threads run in parallel: one repetition of the speed-up (--quick)
    par = doc["parallel"]
    assert par["n"] == 1 and par["loops"] > 0 and 0.5 < par["median"] < 4, par
    host = next(t for t in doc["targets"] if t["name"].startswith("(the whole-run ideal"))
    assert host["value"] == pytest.approx(
        doc["headline"]["kcompressd/thread"]["ideal_run"]["median"] * par["median"] / 2)
    c = doc["compare"]["kswapd"]["counters"]
    ideal = (c["scan_us"] + c["compress_us"]) / max(c["scan_us"], c["compress_us"])
    assert doc["headline"]["auto"]["ideal"]["median"] == pytest.approx(ideal)
    assert doc["compare"]["auto"]["config"]["mode"] == "auto"
    assert "calibration" in doc["compare"]
    assert "ideal ratio = (scan_us + compress_us) / max(scan_us, compress_us)" in proc.stdout


def test_bench_zram_quick_on_the_simulated_board(tmp_path: Path) -> None:
    proc, doc = run_script("bench_zram.py", tmp_path / "zram.json", "--kinds", "text,sensor")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # every record read back intact
    names = [t["name"] for t in doc["targets"]]
    assert "text: ZramLog kcompressd/thread capacity vs bytearray ring" in names
    assert "sensor: zramlog thread write p99 vs kswapd mode" in names
    check_targets(doc, names, proc.stdout)
    for kind in ("text", "sensor"):
        s = doc["summary"][kind]
        assert set(s) == {"ring", "ramblockdev"} | {
            f"{store} {m}" for store in ("zramlog", "zramdisk")
            for m in ("kswapd/task", "kcompressd/task", "kcompressd/thread")}
        for k, v in s.items():
            assert v["ok"] and v["corrupt"] == 0 and v["bytes"]["median"] > 0, (kind, k)
    # Text compresses: the log holds more than the ring of the same RAM.
    t = doc["summary"]["text"]
    assert t["zramlog kcompressd/thread"]["bytes"]["median"] > t["ring"]["bytes"]["median"]


def test_host_speed_quick(tmp_path: Path) -> None:
    proc, doc = run_script("host_speed.py", tmp_path / "host.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_targets(doc, ["quiet cores: slow level / fast level, worst CPU",
                        "one CPU of ours busy slows the other"], proc.stdout)
    assert len(doc["cpus"]) == 2
    for cpu, r in doc["cpus"].items():
        n = len(r["windows"])
        assert 4 / doc["window_s"] - 2 <= n <= 4 / doc["window_s"] + 1, (cpu, n)
        assert 0 < r["fast_ms"] <= r["slow_ms"] and r["ratio"] >= 1, r
        assert 0 <= r["slow_share"] <= 1 and 0 <= r["flips"] < n and r["dwell_s"] > 0, r
        assert 0 <= r["steal_share"] <= 1, r
    assert 0 <= doc["both_fast_share"] <= 1
    s = doc["sibling"]
    assert s["idle_ms"] > 0 and s["cost"] == pytest.approx(s["busy_ms"] / s["idle_ms"])


def _cell(rates: dict[str, list[float]], share: float = 0.002) -> dict[str, Any]:
    """A sweep cell's compare document: runs with these pgsteal/s and a stall share."""
    def run(rate: float) -> dict[str, Any]:
        return {"counters": {"elapsed_us": 1_000_000, "kcompressd_auto_inline": 0,
                             "kcompressd_auto_offload": 0},
                "rates": {"pgsteal_anon_per_s": rate, "ops_per_s": rate},
                "stall_us": {"total": share * 1_000_000, "p99": 128}, "problems": []}

    return {"repeats": {d: [run(r) for r in rs] for d, rs in rates.items()}}


def test_a_sweep_cell_miss_is_significant_only_when_its_interval_is_past_the_target() -> None:
    br = bench_module("bench_reclaim")
    ks = [10_000, 10_100, 9_900, 10_050, 9_950]
    kc = [20_000, 20_400, 19_600, 20_200, 19_800]
    # auto a third slower in every run: the interval lies wholly below 0.95
    slow = br.auto_verdict(_cell({"kswapd": ks, "kcompressd": kc,
                                  "auto": [r * 0.66 for r in kc]}))
    assert not slow["met"] and slow["miss"] == "significant", slow
    assert slow["rate_vs_best"]["ci95"][1] < br.AUTO_STEAL
    # auto's median 8% down, but its runs spread as far as the better design's top
    noisy = br.auto_verdict(_cell({"kswapd": ks, "kcompressd": kc,
                                   "auto": [18_400, 21_000, 15_000, 23_000, 17_000]}))
    assert not noisy["met"] and noisy["miss"] == "noise", noisy
    same = br.auto_verdict(_cell({"kswapd": ks, "kcompressd": kc, "auto": list(kc)}))
    assert same["met"] and same["miss"] is None
    # a stall share significantly over the better design's (and the floor) is significant too
    stalls = _cell({"kswapd": ks, "kcompressd": kc, "auto": list(kc)})
    for i, r in enumerate(stalls["repeats"]["auto"]):
        r["stall_us"]["total"] = 20_000 + i * 100  # 2% of the run against 0.2%
    assert br.auto_verdict(stalls)["miss"] == "significant"

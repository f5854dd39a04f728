"""The `ucompressd` command: argument errors, then short end-to-end runs on the simulated board."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ucompressd import experiment
from ucompressd.cli import main

pytestmark = pytest.mark.timeout(300)

HAVE_SIM = importlib.util.find_spec("ucompressd.sim") is not None
needs_sim = pytest.mark.skipif(not HAVE_SIM, reason="host/ucompressd/sim.py not there yet")

# Small and quick; page_size and frames keep it within a 400 KB board heap with room to spare.
QUICK = ["--pages", "128", "--frames", "32", "--page-size", "1024", "--ops", "6000", "--sample-ms", "10"]


@pytest.mark.parametrize(("argv", "says"), [
    (["run", "--pages", "-5"], "--pages: -5 is out of range"),
    (["run", "--pages", "64", "--frames", "64"], "--frames: "),
    (["run", "--workload", "nope"], "--workload: 'nope' is not one of"),
    (["run", "--data", "lava"], "--data: 'lava' is not one of"),
    (["run", "--page-size", "1000"], "--page-size: 1000 is not a power of two"),
    (["run", "--pages", "many"], "invalid int value"),
    (["run", "--port", "/dev/ttyNOPE-ucz"], "--port: /dev/ttyNOPE-ucz does not exist"),
    (["run", "--port", "socket://127.0.0.1:1"], "cannot open port socket://127.0.0.1:1"),
    (["run", "--micropython", "/nonexistent/micropython"], "--micropython: "),
    (["run", "--port", os.devnull, "--micropython", "mp"], "--micropython is for the simulated"),
    (["compare", "--repeat", "0"], "--repeat: must be at least 1"),
    (["compare", "--mode", "kswapd"], "unrecognized arguments: --mode"),
    (["compare", "--zpool", "-1"], "--zpool: -1 is out of range"),
    (["frobnicate"], "invalid choice"),
    ([], "required: COMMAND"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv, says):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("ucompressd: error: "), err
    assert says in err


def test_help_exits_0(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--page-size" in out and "--write-pct" in out and "--port URL" in out


# -- end to end on the simulated board -------------------------------------------------------------


@needs_sim
def test_run_writes_json_and_csv(tmp_path, capsys):
    j, c = tmp_path / "run.json", tmp_path / "run.csv"
    assert main(["run", *QUICK, "--mode", "kswapd", "--json", str(j), "--csv", str(c)]) == 0
    doc = json.loads(j.read_text())
    assert doc["board"]["kind"] == "sim" and doc["interpreter"]["impl"] == "micropython"
    assert doc["firmware"]["matches_host"] is True
    assert doc["config"]["mode"] == "kswapd" and doc["config"]["pages"] == 128
    assert doc["counters"]["ops"] == 6000 and doc["counters"]["corrupt"] == 0
    assert doc["rates"]["ops_per_s"] > 0
    assert doc["stall_us"]["count"] == sum(doc["stall_us"]["hist"])
    with open(c) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(doc["samples"]) >= 1
    assert list(rows[0])[:2] == ["t_us", "free"]
    assert "pgsteal_anon/s" in capsys.readouterr().out


@needs_sim
def test_compare_both_modes_same_workload(tmp_path, capsys):
    j = tmp_path / "cmp.json"
    assert main(["compare", *QUICK, "--workload", "zipf", "--repeat", "2", "--json", str(j)]) == 0
    doc = json.loads(j.read_text())
    ks, kc, au = doc["kswapd"], doc["kcompressd"], doc["auto"]
    assert [r["config"]["mode"] for r in (ks, kc, au)] == ["kswapd", "kcompressd", "auto"]
    # Only the mode differs; the simulated board has parallel threads: a compressor thread.
    for r in (kc, au):
        assert {k: v for k, v in ks["config"].items() if k != "mode"} == \
               {k: v for k, v in r["config"].items() if k != "mode"}
    assert kc["config"]["compressor"] == "thread"
    assert [len(doc["repeats"][m]) for m in experiment.MODES] == [2, 2, 2]
    for m in experiment.MODES:
        s = doc["summary"]["pgsteal_anon_per_s"][m]
        assert s["min"] <= s["median"] <= s["max"] and s["ci95"] == [s["min"], s["max"]]
        assert doc["summary"]["corrupt"][m]["values"] == [0, 0]
    pairs = doc["summary"]["pgsteal_anon_per_s"]["pairs"]
    assert set(pairs) == {"kcompressd/kswapd", "auto/kswapd", "auto/kcompressd"}
    for p in pairs.values():
        assert p["measure"] == "ratio" and p["median"] > 0 and isinstance(p["significant"], bool)
    cal = doc["calibration"]
    assert cal["before"]["main_us"] > 0 and cal["after"]["main_us"] > 0
    assert isinstance(cal["noisy"], bool) and isinstance(cal["why"], list)
    out = capsys.readouterr().out
    assert "kswapd only" in out and "kcompressd" in out and "auto" in out
    assert "pgsteal_anon/s" in out


@needs_sim
def test_board_killed_mid_run_saves_what_was_collected(tmp_path, capsys):
    from ucompressd.sim import SimBoard

    experiment.stage_firmware(tmp_path / "flash")
    j, c = tmp_path / "run.json", tmp_path / "run.csv"
    with SimBoard(flash_dir=tmp_path / "flash") as sim:

        def kill_after_three_samples() -> None:
            deadline = time.monotonic() + 120
            while sim.recent_output().count(b'"ev":"sample"') < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            sim.kill()

        killer = threading.Thread(target=kill_after_three_samples)
        killer.start()
        rc = main(["run", *QUICK, "--ops", "100000000", "--port", sim.port,
                   "--json", str(j), "--csv", str(c)])
        killer.join()
    assert rc == 1
    err = capsys.readouterr().err
    assert sim.port in err and str(j) in err
    doc = json.loads(j.read_text())
    assert sim.port in doc["error"]
    assert len(doc["samples"]) >= 1
    with open(c) as f:
        assert len(list(csv.DictReader(f))) == len(doc["samples"])


@needs_sim
def test_sim_command_serves_a_board_with_the_firmware(tmp_path):
    sim = subprocess.Popen([sys.executable, "-m", "ucompressd", "sim"],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        port = sim.stdout.readline().strip()
        assert port.startswith("/dev/")
        j = tmp_path / "run.json"
        assert main(["run", *QUICK, "--port", port, "--json", str(j)]) == 0
        assert json.loads(j.read_text())["board"]["port"] == port
    finally:
        sim.terminate()
        assert sim.wait(timeout=60) == 0


@needs_sim
def test_compare_on_two_boards_in_parallel_one_over_rfc2217(tmp_path, capsys):
    from ucompressd.rfc2217 import Rfc2217Server
    from ucompressd.sim import SimBoard

    experiment.stage_firmware(tmp_path / "a")
    experiment.stage_firmware(tmp_path / "b")
    j, c = tmp_path / "cmp.json", tmp_path / "cmp.csv"
    with SimBoard(flash_dir=tmp_path / "a") as a, SimBoard(flash_dir=tmp_path / "b") as b, \
            Rfc2217Server(b.port) as remote:
        assert remote.url.startswith("rfc2217://127.0.0.1:")
        rc = main(["compare", *QUICK, "--port", a.port, "--port", remote.url, "--audit", "8",
                   "--json", str(j), "--csv", str(c)])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(j.read_text())
    assert list(doc["boards"]) == [a.port, remote.url]
    for port, d in doc["boards"].items():
        for m in experiment.MODES:
            assert d[m]["board"]["port"] == port and d[m]["config"]["mode"] == m
            assert d[m]["counters"]["corrupt"] == 0 and d[m]["audit"]["bad"] == []
    with open(c) as f:
        assert {r["port"] for r in csv.DictReader(f)} == {a.port, remote.url}
    out = capsys.readouterr().out
    assert "pgsteal_anon/s ratio" in out and "corrupt pages" in out


def test_the_same_port_twice_is_refused(capsys):
    assert main(["run", "--port", os.devnull, "--port", os.devnull]) == 2
    assert "--port: the same board given twice" in capsys.readouterr().err


@pytest.mark.parametrize("hello, placement", [
    ({"threads": True, "gil": False}, "thread"),            # rp2, the simulated board
    ({"threads": True, "gil": False, "cores": 1}, "task"),  # a unix port pinned to one CPU
    ({"threads": True, "gil": True}, "task"),               # ESP32
    ({"threads": False, "gil": None}, "task"),              # one-core QEMU boards
], ids=["parallel", "one-core", "gil", "no-threads"])
def test_the_compressor_follows_the_boards_hello(hello, placement):
    # Without --compressor, auto (and kcompressd) get the placement the board's hello allows:
    # auto then starts as kswapd wherever a second thread would share the core.
    assert experiment.default_compressor(hello) == placement


def test_run_auto_starts_as_kswapd_where_threads_share_a_core(tmp_path):
    # The fake board is the real server under CPython: threads with a GIL. Without
    # --compressor, auto gets a task compressor there, and so never hands a page off.
    from fakeboard import FakeBoard

    b = FakeBoard()
    j = tmp_path / "run.json"
    try:
        assert main(["run", "--port", b.url, "--mode", "auto", "--pages", "64", "--frames", "16",
                     "--page-size", "256", "--ops", "1500", "--json", str(j)]) == 0
    finally:
        b.close()
    doc = json.loads(j.read_text())
    assert doc["board"]["gil"] is True and doc["config"]["compressor"] == "task"
    c = doc["counters"]
    assert c["pgsteal_anon"] > 0 and c["kcompressd_enqueue"] == 0 and c["corrupt"] == 0
    assert c["kcompressd_offloading"] == 0


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (Linux /proc: each thread's children)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        for t in tids:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = {int(k) for k in f.read().split()}
            except FileNotFoundError:
                continue
            todo += kids - found
            found |= kids
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


@needs_sim
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
def test_sigterm_stops_a_run_as_ctrl_c_does_and_no_board_outlives_it(tmp_path) -> None:
    # The simulated board runs in a session of its own, so the signal reaches only the CLI:
    # unless the CLI closes it, it would go on running with nobody to talk to.
    out = tmp_path / "run.json"
    proc = subprocess.Popen([sys.executable, "-m", "ucompressd", "run", *QUICK, "--ops", "50000000",
                             "--json", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        started = time.monotonic()
        kids: set[int] = set()
        # well into the run (samples collected), or given up on after a minute
        while time.monotonic() - started < (5 if kids else 60):
            kids |= _descendants(proc.pid)
            time.sleep(0.2)
        assert kids, "the run started no board"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 130
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "interrupted" in err, err
    deadline = time.monotonic() + 10
    while any(_alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [k for k in kids if _alive(k)], err
    doc = json.loads(out.read_text())  # what was collected is written
    assert doc["samples"], err

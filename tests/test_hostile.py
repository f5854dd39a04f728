"""The findings of issue 8 (a hostile user's inputs and faults), one test each: every one ends
in one clean line and the right exit status, nothing collected is lost, and the board's server
keeps serving after any single request. Re-run them all with
`pytest tests/test_hostile.py tests/firmware/test_lz4_into.py tests/test_link.py -k "hostile or
into or lost_mid_run"`: the codec's finding is a firmware test (it runs under MicroPython too),
the reboot's sits with the other ways a board is lost (test_link)."""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import re
import threading
import time
import tomllib
from pathlib import Path

import pytest

import ucz.server
from conftest import NO_MICROPYTHON, REPO, micropython_argv
from fakeboard import FakeBoard, vanish_after_samples
from ucompressd import errors, experiment, report
from ucompressd.cli import main
from ucompressd.link import BoardError, Link
from ucz import wire

pytestmark = pytest.mark.timeout(180)

QUICK = ["--page-size", "1024", "--pages", "64", "--frames", "16", "--ops", "3000",
         "--sample-ms", "10"]
needs_mp = pytest.mark.skipif(micropython_argv() is None, reason=NO_MICROPYTHON)


def one_line(capsys: pytest.CaptureFixture[str], start: str = "ucompressd: error: ") -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(start), err
    return err


# -- the wire: no request can stop the server, no result is dropped ------------------------------


@needs_mp
def test_a_4000_digit_id_gets_an_error_and_the_server_keeps_serving():
    from test_server import PipeBoard

    board = PipeBoard()
    try:
        body = b'{"id":' + b"7" * 4000 + b',"cmd":"hello","args":{}}'
        from binascii import crc32

        board.send(wire.MARK + body + b"*" + b"%08x" % (crc32(body) & 0xFFFFFFFF) + b"\n")
        msg = board.next_msg()
        assert msg["ok"] is False and msg["id"] is None and "id out of range" in msg["error"]
        # Echoed text is bounded too: a 3000-character command name.
        board.send(wire.encode({"id": 3, "cmd": "x" * 3000}))
        msg = board.next_msg()
        assert msg["id"] == 3 and "unknown command" in msg["error"]
        assert len(wire.encode(msg)) <= wire.MAX_LINE
        assert board.request(4, "hello")["result"]["proto"] == wire.PROTO
    finally:
        board.close()


def test_a_long_problems_list_arrives_whole(monkeypatch):
    """A result section too long for one line (thousands of invariant problems) comes in parts:
    nothing of the result, the corrupt count included, is lost."""
    problems = [f"page {i}: checksum mismatch in frame {i % 97}" for i in range(3000)]
    real_run = ucz.server.Server.run

    def run_with_problems(self, i, args):
        orig = self.runner.run

        def patched(cfg, emit=None, arena=None, audit=0):
            r = orig(cfg, emit, arena, audit)
            r["problems"] = problems
            return r

        monkeypatch.setattr(self.runner, "run", patched)
        return real_run(self, i, args)

    monkeypatch.setattr(ucz.server.Server, "run", run_with_problems)
    b = FakeBoard()
    try:
        with Link(b.url, timeout=20) as link:
            r = link.request("run", {"pages": 32, "frames": 16, "page_size": 256, "ops": 500})
            assert r["problems"] == problems
            assert r["counters"]["corrupt"] == 0
            assert link.request("hello")["proto"] == wire.PROTO
    finally:
        b.close()
    assert b.thread_error is None


# -- output files: checked before the run, never lost after it -----------------------------------


@pytest.mark.parametrize("flag, path, says", [
    ("--json", "/nonexistent/dir/x.json", "cannot write"),
    ("--json", "/tmp", "is a directory"),
    ("--json", "/dev/full", "not a regular file"),
    ("--csv", "/proc/x.csv", "cannot write"),
])
def test_an_output_that_cannot_be_written_is_refused_before_the_run(capsys, monkeypatch, flag,
                                                                    path, says):
    started = []
    monkeypatch.setattr(experiment, "open_board", lambda *a, **k: started.append(a))
    assert main(["run", *QUICK, flag, path]) == 2
    err = one_line(capsys)
    assert f"{flag} {path}: {says}" in err
    assert started == []  # nothing ran


def test_a_failed_run_with_a_file_that_fails_late_prints_both_and_keeps_the_data(
        tmp_path, capsys, monkeypatch):
    b = FakeBoard(mangle=vanish_after_samples(3))

    def disk_full(doc, path):
        if str(path) == str(target):
            raise OSError(28, "No space left on device")
        return real_write(doc, path)

    target = tmp_path / "run.json"
    real_write = report.write_json
    monkeypatch.setattr(report, "write_json", disk_full)
    try:
        rc = main(["run", "--page-size", "256", "--pages", "32", "--frames", "16",
                   "--ops", "100000000", "--sample-ms", "10", "--port", b.url,
                   "--json", str(target)])
    finally:
        b.close()
    assert rc == 1
    err = one_line(capsys, "ucompressd: ")
    assert b.url in err  # the board's error
    m = re.search(r"cannot write \S+ \(No space left on device\); it is in (\S+?)\)", err)
    assert m, err
    spare = json.loads(Path(m.group(1)).read_text())
    assert len(spare["samples"]) == 3 and b.url in spare["error"]
    os.unlink(m.group(1))


# -- arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "soon"])
@pytest.mark.parametrize("command", ["run", "compare", "deploy", "flash"])
def test_timeout_must_be_a_finite_number_above_0(capsys, command, value):
    extra = {"deploy": ["--port", "/dev/null"], "flash": ["--board", "pico", "--image", "x"]}
    assert main([command, *extra.get(command, []), "--timeout", value]) == 2
    assert "--timeout" in one_line(capsys)


def test_kswapd_mode_refuses_a_compressor(capsys):
    assert main(["run", "--mode", "kswapd", "--compressor", "thread"]) == 2
    assert "--compressor: kswapd mode has no compressor" in one_line(capsys)


def test_plot_to_an_unknown_format_names_the_output(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    results = tmp_path / "r.json"
    results.write_text("{}")
    assert main(["plot", str(results), "-o", str(tmp_path / "x.unknownext")]) == 2
    err = one_line(capsys)
    assert "x.unknownext: .unknownext is not a figure format" in err and ".png" in err


# -- sizes that do not fit the board -------------------------------------------------------------


def test_a_size_no_value_of_which_fits_says_so(capsys):
    assert main(["run", "--pages", "65000", "--frames", "60000"]) == 2
    err = one_line(capsys)
    assert "the board has" in err and "--frames" in err, err


@pytest.mark.parametrize("argv, knob", [
    (["--pages", "8000", "--frames", "6000"], "--frames"),
    (["--page-size", "4096", "--pages", "900", "--frames", "400", "--zpool", "1048576"],
     "--zpool"),
])
def test_a_size_that_does_not_fit_is_refused_naming_the_knob(capsys, argv, knob):
    assert main(["run", *argv, "--ops", "1000"]) == 2
    err = one_line(capsys)
    m = re.search(rf"largest that fits: .*{knob} (\d+)", err)
    assert m and "the board has" in err, err
    # ...and that value does fit: the run it names goes through.
    given = dict(zip(argv[::2], argv[1::2]))
    given[knob] = m.group(1)
    ok = [x for kv in given.items() for x in kv]
    assert main(["run", *ok, "--ops", "1000", "--sample-ms", "50"]) == 0, capsys.readouterr().err


def test_an_automatic_zpool_is_cut_to_what_fits(tmp_path, capsys):
    j = tmp_path / "run.json"
    assert main(["run", "--page-size", "4096", "--pages", "2000", "--frames", "200",
                 "--ops", "3000", "--sample-ms", "50", "--json", str(j)]) == 0
    doc = json.loads(j.read_text())
    from ucz import runner

    auto = runner.config({"page_size": 4096, "pages": 2000, "frames": 200})["zpool"]
    assert 0 < doc["config"]["zpool"] < auto
    assert f"zpool cut to {doc['config']['zpool']} bytes" in capsys.readouterr().err
    s = doc["sizing"]
    assert s["heap_needed"] + s["run_slack"] <= s["heap_free"]
    assert doc["counters"]["corrupt"] == 0


# -- ports and boards ----------------------------------------------------------------------------


def test_deploy_to_a_refused_socket_says_so_at_once(capsys):
    assert main(["deploy", "--port", "socket://127.0.0.1:1"]) == 2
    err = one_line(capsys)
    assert "cannot open port socket://127.0.0.1:1" in err and "refused" in err.lower()


# -- one error policy ----------------------------------------------------------------------------


def test_every_error_class_exits_by_its_base():
    from ucompressd import boards, deploy, flash, link, plot, session, sim, sizing, staging

    usage = [session.PortError, boards.ProfileError, flash.ImageError, deploy.DeployInputError,
             sim.SimError, sizing.FitError, staging.ToolchainError, plot.PlotError]
    failed = [session.BoardError, session.BoardReset, link.ProtocolMismatch, link.CommandError,
              flash.FlashError, deploy.DeployError, staging.CompileError]
    for cls in usage:
        assert issubclass(cls, errors.InputError) and not issubclass(cls, errors.Failure), cls
        assert errors.exit_status(cls("x")) == 2
    for cls in failed:
        assert issubclass(cls, errors.Failure) and not issubclass(cls, errors.InputError), cls
        assert errors.exit_status(cls("x")) == 1
    assert errors.exit_status(experiment.RunFailed("x", {}, interrupted=True)) == 130
    assert errors.exit_status(experiment.RunFailed("x", {})) == 1
    # Only cli.main maps errors to exit codes: no module prints its own last line.
    for f in (REPO / "host" / "ucompressd").glob("*.py"):
        if f.name not in ("errors.py", "cli.py"):
            assert "errors.report(" not in f.read_text() and "errors.exit_status(" not in \
                f.read_text(), f.name


def test_mpremote_floor_has_whole_operation_deadlines():
    """The session relies on enter_raw_repl(timeout_overall=...): mpremote 1.25 added it."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    floor = next(d for d in deps if d.startswith("mpremote"))
    m = re.fullmatch(r"mpremote>=(\d+)\.(\d+)(?:\.\d+)?", floor.split(";")[0].strip())
    assert m and (int(m.group(1)), int(m.group(2))) >= (1, 25), floor
    installed = tuple(int(x) for x in importlib.metadata.version("mpremote").split(".")[:2])
    assert installed >= (int(m.group(1)), int(m.group(2)))
    from mpremote.transport_serial import SerialTransport

    assert "timeout_overall" in inspect.signature(SerialTransport.enter_raw_repl).parameters


def test_session_reads_while_another_thread_captures_mpremote_output(capsys):
    """mpremote prints on some failures; the session keeps that per thread, so a board that
    fails in one thread does not swallow another thread's output."""
    from ucompressd import session

    done = threading.Event()
    printed = []

    def other() -> None:
        with session._captured() as buf:
            print("from mpremote")
            done.wait(5)
        printed.append(buf.getvalue())

    t = threading.Thread(target=other)
    t.start()
    time.sleep(0.05)
    print("main thread")
    done.set()
    t.join()
    assert printed == ["from mpremote\n"]
    assert "main thread" in capsys.readouterr().out

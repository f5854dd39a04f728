"""The host link: raw-REPL start, handshake, noise, and every way a board can fail mid-request.

Most tests use tests/fakeboard.py (socket://, the real server under CPython, failures on cue);
the last ones use the simulated board (real MicroPython behind a pty) once sim.py exists.
"""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest

import ucz.server
from fakeboard import FakeBoard, Vanish, vanish_after_samples
from ucompressd import experiment
from ucompressd.link import BoardError, CommandError, Link, PortError, ProtocolMismatch
from ucz import wire

pytestmark = pytest.mark.timeout(120)

TINY_RUN = {"pages": 32, "frames": 16, "page_size": 256, "ops": 3000, "sample_ms": 10}
LONG_RUN = {**TINY_RUN, "ops": 10**8}


@pytest.fixture
def fake(request):
    boards: list[FakeBoard] = []

    def make(**kw) -> FakeBoard:
        boards.append(FakeBoard(**kw))
        return boards[-1]

    yield make
    for b in boards:
        b.close()
        assert b.thread_error is None


def test_handshake_and_requests(fake):
    b = fake()
    with Link(b.url, timeout=10) as link:
        assert link.hello["proto"] == wire.PROTO
        assert b.soft_resets == 1  # a clean heap for every session
        assert b.requests == [b"import ucz.server;ucz.server.serve()"]
        assert set(link.request("gc")) == {"mem_free", "mem_alloc"}
        with pytest.raises(CommandError, match="unknown command"):
            link.request("format_flash")
        assert link.request("hello")["proto"] == wire.PROTO  # still usable after a refusal
    assert b.mode == "friendly"  # bye, then Ctrl-B: the board is back at its REPL


def test_a_port_failing_in_termios_is_a_disconnected_board(fake, monkeypatch):
    # pyserial's flush() calls tcdrain bare: on the pty of a board that died it raises
    # termios.error (EIO), which is no OSError (seen when QEMU was killed mid-session).
    termios = pytest.importorskip("termios")
    from ucompressd.session import Disconnected

    b = fake()
    with Link(b.url, timeout=10) as link:
        def tcdrain_fails() -> None:
            raise termios.error(5, "Input/output error")

        monkeypatch.setattr(link._t.serial, "flush", tcdrain_fails)
        with pytest.raises(Disconnected, match="board disconnected"):
            link.request("hello", timeout=10)
        monkeypatch.undo()


def test_protocol_mismatch_is_refused_with_a_deploy_hint(fake, monkeypatch):
    other = types.SimpleNamespace(**{k: getattr(wire, k) for k in dir(wire) if k.isupper()})
    other.PROTO = wire.PROTO + 1
    other.encode, other.decode = wire.encode, wire.decode
    monkeypatch.setattr(ucz.server, "wire", other)  # the board's server only
    b = fake()
    with pytest.raises(ProtocolMismatch) as e:
        Link(b.url, timeout=10)
    assert f"protocol {wire.PROTO + 1}" in str(e.value)
    assert f"ucompressd deploy --port {b.url}" in str(e.value)
    b.close()
    assert b.mode == "friendly"


def test_noise_before_and_among_lines_is_skipped_and_counted(fake):
    def noisy(line: bytes) -> bytes:
        damaged = bytearray(line)
        damaged[len(damaged) // 2] ^= 0x20
        # REPL chatter, a print() from the firmware, half a line, and a damaged copy first.
        return b"MPY: chatter\r\n" + b"debug print\n" + b"partial" + bytes(damaged) + line

    b = fake(mangle=noisy)
    with Link(b.url, timeout=10) as link:
        samples: list[dict] = []
        result = link.request("run", TINY_RUN,
                              on_event=lambda k, d: samples.append(d) if k == "sample" else None)
        assert result["counters"]["ops"] == TINY_RUN["ops"]
        assert {"config", "counters", "stall_hist"} <= set(result)
        assert samples and all("t_us" in s for s in samples)
        assert link.noise > 0 and link.corrupt > 0


def test_result_part_lost_to_noise_is_an_error_not_a_silent_gap(fake):
    def drop_zpool(line: bytes) -> bytes:
        if b'"ev":"result"' in line:  # breaks the checksum of that part only
            return line.replace(b'"zpool"', b'"zp00l"', 1)
        return line

    b = fake(mangle=drop_zpool)
    with Link(b.url, timeout=10) as link, pytest.raises(BoardError, match="zpool"):
        link.request("run", TINY_RUN)


def test_board_vanishing_mid_run_keeps_the_samples(fake):
    b = fake(mangle=vanish_after_samples(3))
    board = experiment.Board(b.url, "serial")
    with pytest.raises(experiment.RunFailed) as e:
        experiment.run(board, LONG_RUN, timeout=10)
    assert b.url in str(e.value)
    assert len(e.value.partial["samples"]) == 3
    assert e.value.partial["error"] == str(e.value)
    assert e.value.partial["config"] == LONG_RUN


def test_soft_reboot_mid_run_is_a_board_error(fake):
    def reboot_at_first_sample(line: bytes) -> bytes:
        if b'"ev":"sample"' in line:
            b.put(b"\r\nMPY: soft reboot\r\n")
            raise Vanish
        return line

    b = fake(mangle=reboot_at_first_sample)
    with Link(b.url, timeout=10) as link, pytest.raises(BoardError, match="reset"):
        link.request("run", LONG_RUN)


def test_silent_board_times_out(fake, monkeypatch):
    import threading

    release = threading.Event()
    # The defaults command hangs on the board until the test ends.
    monkeypatch.setattr(ucz.server.Server, "need_runner", lambda self: release.wait(60))
    b = fake()
    try:
        with Link(b.url, timeout=10) as link:
            with pytest.raises(BoardError, match="no answer") as e:
                link.request("defaults", timeout=0.5)
            assert b.url in str(e.value)
    finally:
        release.set()


def test_server_that_cannot_start_says_to_deploy(fake):
    b = fake(start_error="ImportError: no module named 'ucz.server'")
    with pytest.raises(BoardError) as e:
        Link(b.url, timeout=10)
    assert "ImportError: no module named 'ucz.server'" in str(e.value)
    assert "ucompressd deploy --port" in str(e.value)


@pytest.mark.parametrize("url", ["/dev/does-not-exist-ucz", "socket://127.0.0.1:1", "bogus://x"])
def test_a_port_that_cannot_be_opened(url):
    with pytest.raises(PortError, match="cannot open port"):
        Link(url, timeout=2)


# -- on the simulated board ------------------------------------------------------------------------

HAVE_SIM = importlib.util.find_spec("ucompressd.sim") is not None
needs_sim = pytest.mark.skipif(not HAVE_SIM, reason="host/ucompressd/sim.py not there yet")


@pytest.fixture
def sim(tmp_path: Path):
    from ucompressd.sim import SimBoard

    experiment.stage_firmware(tmp_path)
    with SimBoard(flash_dir=tmp_path) as board:
        yield board


@needs_sim
def test_sim_handshake_and_run(sim):
    with Link(sim.port, timeout=20) as link:
        assert link.hello["impl"] == "micropython"
        assert link.hello["fw_sha256"] == ucz.server.firmware_digest(
            str(experiment.FIRMWARE_DIR))
        r = link.request("run", TINY_RUN)
        assert r["counters"]["ops"] == TINY_RUN["ops"] and r["counters"]["corrupt"] == 0
    # Closed: the board is at its REPL again and a new session starts cleanly.
    with Link(sim.port, timeout=20) as link:
        assert link.request("gc")["mem_free"] > 0


@needs_sim
@pytest.mark.parametrize("how, says", [
    ("kill", None),  # unplugged: the port hangs up
    ("hard_reset", "the board reset (power-on boot) while running 'run'"),  # issue 8: at once
])
def test_sim_lost_mid_run_is_a_board_error(sim, how, says):
    samples: list[dict] = []

    def on_event(kind: str, data: dict) -> None:
        if kind == "sample":
            samples.append(data)
            if len(samples) == 3:
                getattr(sim, how)()

    # A long silence allowed: a reboot must be reported as one, not as silence after it.
    with Link(sim.port, timeout=60) as link, pytest.raises(BoardError) as e:
        link.request("run", LONG_RUN, on_event=on_event)
    assert sim.port in str(e.value)
    if says:
        assert says in str(e.value)
    assert len(samples) >= 3

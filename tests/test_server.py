"""The firmware's server under the real MicroPython unix port, over a subprocess pipe."""

from __future__ import annotations

import importlib.util
import os
import queue
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import NO_MICROPYTHON, micropython_argv
from ucz import wire
from ucz.server import firmware_digest

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"

pytestmark = [
    pytest.mark.skipif(micropython_argv() is None, reason=NO_MICROPYTHON),
    pytest.mark.timeout(120),
]

WAIT = 30.0  # generous: the machine is shared; no test asserts a duration

# A short run under pressure (fewer frames than pages), small enough for a 264 KB board.
# ops > 4096: the runner reports progress every 4096 ops.
SMALL_RUN = {"pages": 64, "frames": 32, "page_size": 256, "ops": 9000, "sample_ms": 20}


class PipeBoard:
    """`micropython -i -c 'serve()'` on pipes: after the server returns, the REPL answers."""

    def __init__(self, firmware: Path = FIRMWARE) -> None:
        env = {**os.environ, "MICROPYPATH": f".frozen:{firmware}"}  # .frozen: asyncio
        self.p = subprocess.Popen(
            [*micropython_argv(), "-i", "-c", "import ucz.server;ucz.server.serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.ready = self.next_msg()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.put(line)
        self.lines.put(b"")

    def send(self, data: bytes) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def next_line(self) -> bytes:
        line = self.lines.get(timeout=WAIT)
        assert line, "the board closed its output"
        return line

    def next_msg(self) -> dict[str, Any]:
        while True:
            line = self.next_line()
            if line.startswith(wire.MARK):
                return wire.decode(line)

    def request(self, i: int, cmd: str, args: dict | None = None) -> dict[str, Any]:
        """Send a request; the reply to it (events are skipped)."""
        self.send(wire.encode({"id": i, "cmd": cmd, "args": args or {}}))
        while "ok" not in (msg := self.next_msg()):
            pass
        assert msg["id"] == i
        return msg

    def repl_answers(self) -> bool:
        """Whether the MicroPython REPL evaluates an expression (the server has returned)."""
        self.send(b"print(6 * 7 + 100000)\n")
        while b"100042" not in (line := self.next_line()):
            assert not line.startswith(wire.MARK), f"the server still answers: {line!r}"
        return True

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=WAIT)


@pytest.fixture
def board():
    b = PipeBoard()
    yield b
    b.close()


def test_ready_then_hello(board):
    assert board.ready == {"id": 0, "ev": "ready", "data": {"proto": wire.PROTO, "version": "0.1.0"}}
    r = board.request(1, "hello")
    assert r["ok"] is True
    h = r["result"]
    assert h["proto"] == wire.PROTO and h["impl"] == "micropython"
    assert h["threads"] is True and h["gil"] is False  # the unix port: threads without a GIL
    assert isinstance(h["mem_free"], int) and h["mem_free"] > 0
    assert h["max_line"] == wire.MAX_LINE
    # The board hashes its files as the host does: same files, same digest.
    assert h["fw_sha256"] == firmware_digest(str(FIRMWARE / "ucz"))


def test_gc_reports_the_heap(board):
    r = board.request(1, "gc")["result"]
    assert isinstance(r["mem_free"], int) and isinstance(r["mem_alloc"], int)


def _random_bytes(seed: int) -> bytes:
    rnd = random.Random(seed)
    # No newline (it would split the line) and no Ctrl-C (the interrupt key on a real board).
    return bytes(b for b in rnd.randbytes(300) if b not in (10, 3)) + b"\n"


BAD_INPUT = [
    ("malformed JSON", wire.MARK + b'{"id": 1, "cmd": "hel*00000000\n', None, "bad checksum"),
    ("framed malformed JSON", None, None, "not JSON"),
    ("bad checksum", wire.encode({"id": 5, "cmd": "hello"}).replace(b"hello", b"hallo"), None,
     "bad checksum"),
    ("no marker", b'{"id": 5, "cmd": "hello"}\n', None, "no line marker"),
    ("over-long line", wire.MARK + b"x" * (wire.MAX_LINE * 5) + b"\n", None, "too long"),
    ("random bytes", _random_bytes(1), None, "bad line"),
    ("unknown command", wire.encode({"id": 9, "cmd": "format_flash"}), 9, "unknown command"),
    ("not a request", wire.encode({"id": 8, "ok": True, "result": 1}), 8, "not a request"),
]


def _framed(body: bytes) -> bytes:
    from binascii import crc32

    return wire.MARK + body + b"*" + b"%08x" % (crc32(body) & 0xFFFFFFFF) + b"\n"


@pytest.mark.parametrize(("what", "line", "reply_id", "reason"), BAD_INPUT,
                         ids=[b[0] for b in BAD_INPUT])
def test_bad_input_gets_an_error_and_the_server_keeps_serving(board, what, line, reply_id, reason):
    if line is None:
        line = _framed(b'{"id": 4, "cmd": "hello", "args": {')
    board.send(line)
    msg = board.next_msg()
    assert msg["ok"] is False and msg["id"] == reply_id
    assert reason in msg["error"]
    assert board.request(2, "hello")["result"]["proto"] == wire.PROTO


def test_a_line_of_exactly_max_line_is_served_one_more_byte_is_not(board):
    def padded(i: int, extra: int) -> bytes:
        n = wire.MAX_LINE - len(wire.encode({"id": i, "cmd": "gc", "args": {"pad": ""}}))
        body = b'{"id":%d,"cmd":"gc","args":{"pad":"%s"}}' % (i, b"x" * (n + extra))
        return _framed(body)

    assert len(padded(1, 0)) == wire.MAX_LINE
    board.send(padded(1, 0))
    assert board.next_msg()["ok"] is True
    board.send(padded(2, 1))
    msg = board.next_msg()
    assert msg["ok"] is False and "too long" in msg["error"] and msg["id"] is None


def test_noise_bursts_in_a_row_each_get_a_reply(board):
    bad = [_random_bytes(s) for s in range(2, 7)]
    board.send(b"".join(bad))
    for _ in bad:
        assert board.next_msg()["ok"] is False
    assert board.request(3, "gc")["ok"] is True


def test_bye_returns_to_the_repl(board):
    assert board.request(1, "bye") == {"id": 1, "ok": True, "result": None}
    assert board.repl_answers()


def test_ctrl_c_while_idle_returns_to_the_repl(board):
    board.request(1, "hello")
    board.p.send_signal(signal.SIGINT)  # what Ctrl-C on the console does on the unix port
    assert board.next_msg() == {"id": 0, "ev": "log", "data": "server stopped: KeyboardInterrupt"}
    assert board.repl_answers()


def test_without_a_runner_hello_still_answers(tmp_path):
    from ucompressd.experiment import stage_firmware

    stage_firmware(tmp_path)
    (tmp_path / "ucz" / "runner.py").unlink()
    board = PipeBoard(tmp_path)
    try:
        assert board.request(1, "hello")["result"]["proto"] == wire.PROTO
        r = board.request(2, "run", SMALL_RUN)
        assert r["ok"] is False and "runner unavailable: ImportError" in r["error"]
    finally:
        board.close()


# -- with the real runner --------------------------------------------------------------------------


def test_defaults_lists_every_knob(board):
    from ucz import runner

    r = board.request(1, "defaults")["result"]
    assert r["defaults"] == runner.DEFAULTS
    assert r["choices"] == {k: list(v) for k, v in runner.CHOICES.items()}


@pytest.mark.parametrize(("args", "key"), [
    ({"pages": -1}, "pages"),
    ({"workload": "nope"}, "workload"),
    ({"data": "lava"}, "data"),
    ({"pages": 16, "frames": 16}, "frames"),
    ({"no_such_knob": 1}, "no_such_knob"),
])
def test_out_of_range_parameters_are_refused(board, args, key):
    r = board.request(1, "run", args)
    assert r["ok"] is False and key in r["error"]
    assert board.request(2, "hello")["ok"] is True


def test_run_streams_events_then_the_result(board):
    board.send(wire.encode({"id": 4, "cmd": "run", "args": SMALL_RUN}))
    kinds: dict[str, int] = {}
    parts: dict[str, Any] = {}
    while "ok" not in (msg := board.next_msg()):
        assert msg["id"] == 4
        kinds[msg["ev"]] = kinds.get(msg["ev"], 0) + 1
        if msg["ev"] == "result":
            parts.update(msg["data"])
    assert msg["ok"] is True, msg
    assert msg["result"]["parts"] == list(parts)
    assert kinds.get("progress", 0) >= 1
    assert {"config", "counters", "stall_hist"} <= set(parts)
    assert parts["counters"]["ops"] == SMALL_RUN["ops"]
    assert parts["counters"]["corrupt"] == 0
    assert board.request(5, "hello")["ok"] is True


def test_ctrl_c_during_a_run_returns_to_the_repl(board):
    long_run = {**SMALL_RUN, "ops": 10**9}
    board.send(wire.encode({"id": 4, "cmd": "run", "args": long_run}))
    msg = board.next_msg()
    assert msg["id"] == 4 and "ev" in msg, msg  # the run is under way
    board.p.send_signal(signal.SIGINT)
    while (msg := board.next_msg())["id"] == 4:
        assert "ok" not in msg, "the run finished instead of stopping"
    assert msg == {"id": 0, "ev": "log", "data": "server stopped: KeyboardInterrupt"}
    assert board.repl_answers()


# -- over the simulated board (a pty, as a USB CDC port), through the host's link ----------------

HAVE_SIM = importlib.util.find_spec("ucompressd.sim") is not None
needs_sim = pytest.mark.skipif(not HAVE_SIM, reason="host/ucompressd/sim.py not there yet")


@pytest.fixture
def sim(tmp_path: Path):
    from ucompressd.experiment import stage_firmware
    from ucompressd.sim import SimBoard

    stage_firmware(tmp_path)
    with SimBoard(flash_dir=tmp_path) as board:
        yield board


def friendly_repl_answers(port: str) -> bool:
    """Whether the board's friendly REPL evaluates a line typed at it (no Ctrl-C sent first)."""
    import serial

    with serial.serial_for_url(port, timeout=0.1) as ser:
        ser.write(b"print(6 * 7 + 100000)\r")
        seen = b""
        deadline = time.monotonic() + WAIT
        while b"100042" not in seen and time.monotonic() < deadline:
            seen += ser.read(256)
        return b"100042" in seen


@needs_sim
def test_sim_bye_leaves_the_friendly_repl(sim):
    from ucompressd.link import Link

    with Link(sim.port, timeout=WAIT) as link:
        assert link.request("gc")["mem_free"] > 0
    assert friendly_repl_answers(sim.port)


@needs_sim
def test_sim_ctrl_c_during_a_run_returns_to_the_repl(sim):
    from ucompressd.link import Link

    class HostCtrlC(Exception):
        """Stands for the user's Ctrl-C on the host, mid-run."""

    samples: list[dict] = []

    def stop_at_third_sample(kind: str, data: Any) -> None:
        if kind == "sample":
            samples.append(data)
            if len(samples) == 3:
                raise HostCtrlC

    link = Link(sim.port, timeout=WAIT)
    with pytest.raises(HostCtrlC):
        link.request("run", {**SMALL_RUN, "ops": 10**9}, on_event=stop_at_third_sample)
    link.close()  # the run is still going on the board: close() sends Ctrl-C
    # The board prints it once the interrupt lands: under load that is after close() returns
    # (seen in CI: the output ended with the last sample).
    deadline = time.monotonic() + 10
    out = ""
    while time.monotonic() < deadline:
        out = sim.recent_output().decode(errors="replace")
        if "server stopped: KeyboardInterrupt" in out:
            break
        time.sleep(0.05)
    assert "server stopped: KeyboardInterrupt" in out, out[-500:]
    assert friendly_repl_answers(sim.port)

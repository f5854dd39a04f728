"""The wire format: round trips and every kind of bad line, on CPython and on MicroPython."""

import json
import os
import subprocess
from binascii import crc32
from pathlib import Path

import pytest

from conftest import NO_MICROPYTHON, micropython_argv
from ucz import wire

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"


def frame(body: bytes) -> bytes:
    """A correctly framed line around any body: for lines that are bad past the checksum."""
    return wire.MARK + body + b"*" + b"%08x" % (crc32(body) & 0xFFFFFFFF) + b"\n"


MESSAGES = [
    {"id": 1, "cmd": "hello", "args": {}},
    {"id": 7, "cmd": "run", "args": {"pages": 64, "workload": "zipf", "mode": "kcompressd"}},
    {"id": 3, "ok": True, "result": {"counters": {"pgsteal_anon": 12345678901}, "x": [1, 2.5]}},
    {"id": 3, "ok": True, "result": None},
    {"id": 4, "ok": False, "error": "pages: must be positive"},
    {"id": None, "ok": False, "error": "bad line: bad checksum"},
    {"id": 5, "ev": "sample", "data": {"t_us": 100, "free": 3}},
    {"id": 0, "ev": "ready", "data": {"proto": wire.PROTO}},
    {"id": 2, "ev": "log", "data": "caf\u00e9 \x04\x1e\n"},  # control chars are escaped in JSON
]


@pytest.mark.parametrize("msg", MESSAGES)
def test_round_trip(msg):
    line = wire.encode(msg)
    assert line.startswith(wire.MARK) and line.endswith(b"\n")
    assert line.count(b"\n") == 1 and line.count(wire.MARK) == 1 and b"\x04" not in line
    assert wire.decode(line) == msg
    assert wire.decode(line[:-1]) == msg  # without its newline
    assert wire.decode(line[:-1] + b"\r\n") == msg  # a tty added \r
    assert wire.decode(bytearray(line)) == msg


def test_encode_refuses_a_line_over_max_line():
    with pytest.raises(ValueError, match="too long"):
        wire.encode({"id": 1, "ev": "log", "data": "x" * wire.MAX_LINE})
    # The largest message that fits is exactly MAX_LINE bytes and decodes.
    base = len(wire.encode({"id": 1, "ev": "log", "data": ""}))
    line = wire.encode({"id": 1, "ev": "log", "data": "x" * (wire.MAX_LINE - base)})
    assert len(line) == wire.MAX_LINE
    assert wire.decode(line)["data"] == "x" * (wire.MAX_LINE - base)


GOOD = wire.encode({"id": 1, "cmd": "hello", "args": {}})

BAD_LINES = [
    (b"x" * (wire.MAX_LINE + 1), "too long"),
    (b"hello world\n", "no line marker"),
    (b"", "no line marker"),
    (GOOD[1:], "no line marker"),
    (GOOD[:-10] + b"\n", "no checksum"),
    (GOOD[:-2] + b"\n", "no checksum"),
    (GOOD.replace(b"hello", b"jello"), "bad checksum"),
    (GOOD[:-9] + GOOD[-9:-1].upper() + b"\n", "bad checksum"),
    (frame(b'{"id": 1, "cmd": "hello"'), "not JSON"),
    (frame(b"\xff\xfe"), "not JSON"),
    (frame(b"[1, 2]"), "not a JSON object"),
    (frame(b'"hello"'), "not a JSON object"),
    (frame(b'{"cmd": "hello"}'), "missing id"),
    (frame(b'{"id": "1", "cmd": "hello"}'), "missing id"),
    (frame(b'{"id": true, "cmd": "hello"}'), "missing id"),
    (frame(b'{"id": 1}'), "missing cmd"),
    (frame(b'{"id": 1, "args": {}}'), "missing cmd"),
    (frame(b'{"id": 1, "cmd": 5}'), "cmd is not a string"),
    (frame(b'{"id": 1, "cmd": "run", "args": [1]}'), "args is not an object"),
    (frame(b'{"id": 1, "ok": true}'), "reply without result"),
    (frame(b'{"id": 1, "ok": false}'), "error reply without a message"),
    (frame(b'{"id": 1, "ok": 1, "result": 2}'), "ok is not true or false"),
    (frame(b'{"id": 1, "ev": "bogus"}'), "unknown event kind"),
    (frame(b'{"id": null, "ev": "log"}'), "missing id"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_bad_line_names_its_problem(line, reason):
    with pytest.raises(ValueError, match=reason):
        wire.decode(line)


def test_noise_around_the_marker_is_not_decoded_here():
    # Resynchronisation (taking a line from its marker) is the reader's job, not decode's.
    with pytest.raises(ValueError, match="no line marker"):
        wire.decode(b"OK" + GOOD)


# The same checks, run by the firmware's own interpreter on the firmware's own copy of wire.py.
MP_SCRIPT = r"""
import json
from binascii import crc32
from ucz import wire
msgs = json.loads(%(msgs)r)
for m in msgs:
    assert wire.decode(wire.encode(m)) == m, m
# Lines framed by CPython decode on MicroPython: one format on both sides.
for line, m in zip(%(cpython_lines)r, msgs):
    assert wire.decode(line) == m, line
# MicroPython's own frames, for CPython to decode.
print(json.dumps([wire.encode(m).decode() for m in msgs]))
bad = %(bad)r
for line, reason in bad:
    try:
        wire.decode(line)
    except ValueError as e:
        assert reason in str(e), (line, reason, str(e))
    else:
        raise AssertionError("accepted %%r" %% line)
print("wire ok")
"""


@pytest.mark.skipif(micropython_argv() is None, reason=NO_MICROPYTHON)
def test_wire_under_micropython():
    msgs = MESSAGES
    script = MP_SCRIPT % {
        "msgs": json.dumps(msgs),
        "cpython_lines": [wire.encode(m) for m in msgs],
        "bad": BAD_LINES,
    }
    env = {**os.environ, "MICROPYPATH": f".frozen:{FIRMWARE}"}  # .frozen: asyncio
    p = subprocess.run([*micropython_argv(), "-c", script], capture_output=True, env=env,
                       timeout=60)
    out = p.stdout.decode().splitlines()
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    assert out[-1] == "wire ok"
    for text, m in zip(json.loads(out[0]), msgs):
        assert wire.decode(text.encode()) == m

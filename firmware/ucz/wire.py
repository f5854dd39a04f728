# The wire format between host and board, defined once: the host imports this very file.
#
# One message per line:   MARK <json> "*" <crc32 of <json>, 8 lowercase hex digits> "\n"
#
# MARK is \x1e (ASCII record separator). It never occurs in REPL output, tracebacks or inside JSON
# (JSON escapes control characters), so a reader resynchronises after noise by taking a line from
# its last MARK and skipping lines without one; the checksum catches a line damaged in transit.
# Readers accept "\r\n" too: tty layers may add the \r.
#
# Messages (all JSON objects with an integer "id"):
#   request  {"id": n, "cmd": str, "args": {...}}                  host -> board
#   reply    {"id": n, "ok": true, "result": ...}                  board -> host, ends request n
#            {"id": n, "ok": false, "error": "message"}            (id null: the line was unreadable)
#   event    {"id": n, "ev": kind, "data": ...}                    board -> host while n runs
# Event kinds: "ready" (id 0, once when the server starts), "sample", "progress", "log",
# "audit" (a run with args "audit": N sends compressed pages after it, see runner.send_audit),
# and "result": a result too big for one line is sent as "result" events, each carrying some of
# its top-level keys, then the reply {"ok": true, "result": {"parts": [those keys]}}; the host
# merges. A list too long for one line comes in several "result" events marked "extend": true,
# whose items the host appends in order.
# Ids are integers 0..MAX_ID: a bigger one would make the reply that echoes it too long.
import json
from binascii import crc32

PROTO = 2  # bump on any incompatible change of this file or of the server's commands
# 2: ids bounded, lists sent in parts ("extend")
MAX_LINE = 4096  # bytes per line, MARK and newline included; the board's input buffer size
MARK = b"\x1e"
_SEP = b"*"
EVENTS = ("ready", "sample", "progress", "result", "log", "audit")
MAX_ID = 0x7FFFFFFF  # a small int on every port


def _crc(body):
    return b"%08x" % (crc32(body) & 0xFFFFFFFF)


def encode(obj):
    """One message as one framed line (bytes). ValueError if it would exceed MAX_LINE."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    n = len(body) + 11  # MARK + "*" + 8 hex + "\n"
    if n > MAX_LINE:
        raise ValueError("message too long (%d > %d bytes)" % (n, MAX_LINE))
    return MARK + body + _SEP + _crc(body) + b"\n"


def decode(line):
    """The message in one framed line (bytes, with or without its newline).

    Raises ValueError naming the first problem: too long, no marker, no/bad checksum, not JSON,
    not an object, missing or malformed id / cmd / ok / ev.
    """
    if len(line) > MAX_LINE:
        raise ValueError("line too long (%d > %d bytes)" % (len(line), MAX_LINE))
    end = len(line)
    while end and line[end - 1] in b"\r\n":
        end -= 1
    if not line.startswith(MARK):
        raise ValueError("no line marker")
    sep = line.rfind(_SEP, 0, end)
    if sep < 0 or end - sep != 9:
        raise ValueError("no checksum")
    body = line[1:sep]
    if line[sep + 1 : end] != _crc(body):
        raise ValueError("bad checksum")
    try:
        msg = json.loads(body)
    except (ValueError, RuntimeError):  # RuntimeError: nesting deeper than the recursion limit
        raise ValueError("not JSON")
    if not isinstance(msg, dict):
        raise ValueError("not a JSON object")
    i = msg.get("id")
    if isinstance(i, int) and not isinstance(i, bool) and not 0 <= i <= MAX_ID:
        raise ValueError("id out of range 0..%d" % MAX_ID)
    if "cmd" in msg:
        if not isinstance(i, int) or isinstance(i, bool):
            raise ValueError("missing id (an integer)")
        if not isinstance(msg["cmd"], str):
            raise ValueError("cmd is not a string")
        if not isinstance(msg.get("args", {}), dict):
            raise ValueError("args is not an object")
    elif "ok" in msg:
        if not (i is None or isinstance(i, int)) or isinstance(i, bool):
            raise ValueError("missing id (an integer)")
        if msg["ok"] is True:
            if "result" not in msg:
                raise ValueError("reply without result")
        elif msg["ok"] is False:
            if not isinstance(msg.get("error"), str):
                raise ValueError("error reply without a message")
        else:
            raise ValueError("ok is not true or false")
    elif "ev" in msg:
        if not isinstance(i, int) or isinstance(i, bool):
            raise ValueError("missing id (an integer)")
        if msg["ev"] not in EVENTS:
            raise ValueError("unknown event kind")
    else:
        raise ValueError("missing cmd (not a request, reply or event)")
    return msg

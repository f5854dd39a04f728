# Serves requests from the host over stdio: USB CDC on a board, the pty on the simulated board.
# Started from the raw REPL with `import ucz.server;ucz.server.serve()`; runs until `bye`, end of
# input or Ctrl-C, then returns so the board is back at its REPL (mpremote keeps working).
# One request at a time: while a run is going, input waits in the stdin buffer.
import sys
import gc
import json
from ucz import wire, VERSION
from ucz.compat import THREADS, PARALLEL

COMMANDS = ("hello", "defaults", "run", "calibrate", "gc", "bye")
# Characters of text echoed in one reply (an error message, a traceback, one list item): JSON
# escapes a character to at most 6 bytes, so any reply stays under wire.MAX_LINE.
MAX_TEXT = 512


def _pkg_dir():
    return __file__.replace("\\", "/").rsplit("/", 1)[0]


def firmware_digest(path=None):
    """sha256 (hex) of the package as deployed: its .py/.mpy files in name order, each as
    name NUL size NUL content. The host hashes the files it deploys with this same function.
    None where hashlib or the files are not available (e.g. frozen into the firmware)."""
    try:
        import hashlib
        import os
        from binascii import hexlify

        path = path or _pkg_dir()
        h = hashlib.sha256()
        chunk = bytearray(512)
        mv = memoryview(chunk)
        for name in sorted(os.listdir(path)):
            if not (name.endswith(".py") or name.endswith(".mpy")):
                continue
            with open(path + "/" + name, "rb") as f:
                size = f.seek(0, 2)
                f.seek(0)
                h.update(("%s\0%d\0" % (name, size)).encode())
                while True:
                    n = f.readinto(chunk)
                    if not n:
                        break
                    h.update(mv[:n])
        return hexlify(h.digest()).decode()
    except (ImportError, OSError, NameError):  # NameError: frozen modules have no __file__
        return None


def _mem():
    # gc.mem_free/mem_alloc are MicroPython only; CPython reports None.
    f = getattr(gc, "mem_free", None)
    a = getattr(gc, "mem_alloc", None)
    return (f() if f else None), (a() if a else None)


def _count_cpus(allowed):
    """CPUs in a Linux CPU list ("0-1", "0,2-3")."""
    n = 0
    for part in allowed.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def _cores():
    """CPUs this board may run the compressor on: 2 on rp2 (core 1); on the unix port the CPUs
    its affinity allows, from the host's /proc or, on the simulated board (whose / is its
    flash folder), from what its ucz_board read at boot; None where unknown."""
    if not THREADS:  # no _thread (the QEMU boards): Python runs on one core only
        return 1
    if sys.platform == "rp2":
        return 2
    try:
        from ucz_board import CPUS_ALLOWED

        if CPUS_ALLOWED:
            return _count_cpus(CPUS_ALLOWED)
    except (ImportError, ValueError):
        pass
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    return _count_cpus(line.split(":", 1)[1].strip())
    except (OSError, ValueError, AttributeError):
        pass
    return None


def _hello():
    impl = sys.implementation
    threads = THREADS
    gil = (not PARALLEL) if threads else None
    gc.collect()  # free means free: the host sizes runs from it
    free, alloc = _mem()
    return {
        "proto": wire.PROTO,
        "version": VERSION,
        "impl": impl.name,
        "impl_version": ".".join(str(v) for v in impl.version[:3]),
        "machine": getattr(impl, "_machine", sys.platform),
        "platform": sys.platform,
        "threads": threads,
        "gil": gil,
        "cores": _cores(),
        "mem_free": free,
        "mem_alloc": alloc,
        "word": 8 if sys.maxsize > 0xFFFFFFFF else 4,  # bytes per machine word (objects scale)
        "max_line": wire.MAX_LINE,
        "fw_sha256": firmware_digest(),
    }


def _traceback(e):
    """The exception's traceback as text, or None (e.g. no memory left to format it)."""
    try:
        import io

        buf = io.StringIO()
        if hasattr(sys, "print_exception"):  # MicroPython
            sys.print_exception(e, buf)
        else:
            import traceback

            traceback.print_exception(type(e), e, e.__traceback__, file=buf)
        return buf.getvalue()
    except Exception:  # noqa: BLE001 - a missing traceback must not hide the error reply
        return None


def _clip(text):
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


class Server:
    def __init__(self, inp=None, out=None):
        # The runner and every module it needs are imported first, while the heap is fresh:
        # long-lived code then sits low in the heap and the run's arena and zpool find their
        # large blocks whole. A failed import (nothing deployed yet, a broken file) is reported
        # by run/defaults; hello, gc and bye work without it.
        try:
            from ucz import runner

            self.runner, self.runner_error = runner, None
        except Exception as e:  # noqa: BLE001 - ImportError, SyntaxError, MemoryError...
            self.runner, self.runner_error = None, "runner unavailable: %s: %s" % (
                type(e).__name__, e)
        gc.collect()
        self.inp = inp or sys.stdin.buffer
        self.out = out or sys.stdout.buffer
        self._flush = getattr(self.out, "flush", None)
        # Preallocated: a request never grows the heap, an over-long line is never held.
        self.buf = bytearray(wire.MAX_LINE)
        self.mv = memoryview(self.buf)
        self.b1 = bytearray(1)
        self.running = True

    def send(self, obj):
        self.out.write(wire.encode(obj))
        if self._flush:
            self._flush()

    def error(self, i, message):
        self.send({"id": i, "ok": False, "error": _clip(message)})

    def send_part(self, i, key, value):
        """One top-level key of a result as "result" events: one line, or a list in as many
        lines as it takes ("extend"), its items clipped to MAX_TEXT; never dropped."""
        try:
            self.send({"id": i, "ev": "result", "data": {key: value}})
            return
        except ValueError:  # too long for one line
            pass
        if not isinstance(value, list):
            value = [value]
        room = wire.MAX_LINE - 64 - len(key)  # the line's frame, id and key
        chunk, size = [], 0
        for item in value:
            if isinstance(item, str):
                item = _clip(item)
            n = len(json.dumps(item)) + 1
            if n > room:
                item = _clip(repr(item))
                n = len(json.dumps(item)) + 1
            if chunk and size + n > room:
                self.send({"id": i, "ev": "result", "data": {key: chunk}, "extend": True})
                chunk, size = [], 0
            chunk.append(item)
            size += n
        self.send({"id": i, "ev": "result", "data": {key: chunk}, "extend": True})

    def readline(self):
        """Length of the next line in self.buf (line ending excluded); minus the full length
        if the line did not fit (discarded up to its newline); None at end of input."""
        buf, b1, inp = self.buf, self.b1, self.inp
        limit = len(buf) - 1  # room for the newline: a line is at most MAX_LINE bytes in all
        n = 0
        while True:
            if not inp.readinto(b1):  # one byte at a time: no allocation, stops at the newline
                return None
            c = b1[0]
            if c == 10:
                if n > limit:
                    return -(n + 1)
                if n and buf[n - 1] == 13:
                    n -= 1
                return n
            if n < limit:
                buf[n] = c
            n += 1

    def handle(self, n):
        if n < 0:
            self.error(None, "bad line: line too long (%d > %d bytes)" % (-n, wire.MAX_LINE))
            return
        try:
            msg = wire.decode(bytes(self.mv[:n]))
        except ValueError as e:
            self.error(None, "bad line: %s" % e)
            return
        i = msg["id"]
        cmd = msg.get("cmd")
        if cmd is None:
            self.error(i, "not a request")
            return
        try:
            if cmd == "run":
                self.run(i, msg.get("args") or {})
                return
            if cmd == "hello":
                result = _hello()
            elif cmd == "defaults":
                runner = self.need_runner()
                result = {"defaults": runner.DEFAULTS, "choices": runner.CHOICES}
            elif cmd == "calibrate":
                from ucz.calibrate import calibrate

                args = msg.get("args") or {}
                loops = args.get("loops", 100000)
                if isinstance(loops, bool) or not isinstance(loops, int) or not 1 <= loops <= 10**8:
                    raise ValueError("loops: %r is not a count from 1 to 10**8" % (loops,))
                result = calibrate(loops, THREADS)
            elif cmd == "gc":
                gc.collect()
                free, alloc = _mem()
                result = {"mem_free": free, "mem_alloc": alloc}
            elif cmd == "bye":
                self.running = False
                result = None
            else:
                self.error(i, "unknown command %r (known: %s)" % (cmd, ", ".join(COMMANDS)))
                return
            self.send({"id": i, "ok": True, "result": result})
        except Exception as e:  # noqa: BLE001 - any failure is the host's to see; keep serving
            try:
                trace = _traceback(e)
                if trace:
                    self.send({"id": i, "ev": "log", "data": trace[-MAX_TEXT:]})
                self.error(i, "%s: %s" % (type(e).__name__, e))
            except Exception:  # noqa: BLE001 - even the report failed: a fixed, short one
                self.send({"id": i, "ok": False, "error": "internal error"})

    def need_runner(self):
        if self.runner is None:
            raise RuntimeError(self.runner_error)
        return self.runner

    def run(self, i, args):
        runner = self.need_runner()
        try:
            # "audit" is a request option, not a knob of the experiment: config() refuses it.
            audit = args.pop("audit", 0)
            if isinstance(audit, bool) or not isinstance(audit, int) or audit < 0:
                raise ValueError("audit: %r is not a count of pages" % (audit,))
            cfg = runner.config(args)
        except ValueError as e:  # "<key>: <problem>": the message is the whole answer
            self.error(i, str(e))
            return
        send = self.send

        def emit(kind, data):
            send({"id": i, "ev": kind, "data": data})

        gc.collect()  # the run preallocates its frames: give it the largest free block
        res = runner.run(cfg, emit, audit=audit)
        # One section per line: every line stays under MAX_LINE and no single big string is built.
        parts = []
        for k in res:
            self.send_part(i, k, res[k])
            parts.append(k)
        send({"id": i, "ok": True, "result": {"parts": parts}})


def serve(inp=None, out=None):
    """Serve requests on stdin/stdout (or the given binary streams) until bye, EOF or Ctrl-C."""
    s = Server(inp, out)
    s.send({"id": 0, "ev": "ready", "data": {"proto": wire.PROTO, "version": VERSION}})
    try:
        while s.running:
            n = s.readline()
            if n is None:
                break
            if n:  # blank lines are keystrokes, not requests
                s.handle(n)
    except KeyboardInterrupt:
        # Ctrl-C ends the server (runner.run stops its compressor on the way out); tell the host.
        try:
            s.send({"id": 0, "ev": "log", "data": "server stopped: KeyboardInterrupt"})
        except Exception:  # noqa: BLE001 - the host may be gone already
            pass

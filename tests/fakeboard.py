"""A stand-in board on socket://host:port for link tests that need to misbehave on cue.

It answers like MicroPython's raw REPL (Ctrl-A, Ctrl-B, Ctrl-C, Ctrl-D soft reset, code + Ctrl-D
-> "OK", output, EOT, error output, EOT, ">"), and runs the real ucz server (under CPython, in a
thread) on the connection. A Ctrl-C byte interrupts the server as a board's USB CDC driver does.
`mangle(line)` sees every line the server writes and returns the bytes to send instead, so a
test can add noise, damage lines, reset or vanish at a chosen moment.
"""

from __future__ import annotations

import socket
import threading
import traceback
from typing import Callable

from ucz import server

from ucompressd.link import START
from ucompressd.session import RAW_PROMPT as BANNER


class Vanish(BaseException):  # not Exception: the server must not catch it
    """Raised by a mangle hook: the board disappears (the connection closes)."""


def vanish_after_samples(n: int) -> Callable[[bytes], bytes]:
    """A mangle hook: the board disappears when it sends its (n+1)th sample."""
    seen = {"samples": 0}

    def mangle(line: bytes) -> bytes:
        if b'"ev":"sample"' in line:
            seen["samples"] += 1
            if seen["samples"] > n:
                raise Vanish
        return line

    return mangle


class _In:
    """The server's stdin: bytes from the socket; Ctrl-C raises KeyboardInterrupt."""

    def __init__(self, board: FakeBoard) -> None:
        self.board = board

    def readinto(self, b: bytearray) -> int:
        c = self.board.getc()
        if c is None:
            return 0
        if c == 3:
            raise KeyboardInterrupt
        b[0] = c
        return 1


class _Out:
    def __init__(self, board: FakeBoard) -> None:
        self.board = board

    def write(self, data: bytes) -> int:
        try:
            out = self.board.mangle(bytes(data))
        except Vanish:
            # Gone at once: the runner's sampler task would swallow the exception and go on.
            self.board.vanish()
            raise
        self.board.put(out)
        return len(data)


class FakeBoard:
    def __init__(self, mangle: Callable[[bytes], bytes] | None = None, start_error: str = "") -> None:
        self.mangle = mangle or (lambda line: line)
        self.start_error = start_error  # a traceback's last line instead of starting the server
        self.requests: list[bytes] = []  # code run from the raw REPL
        self.mode = "friendly"
        self.soft_resets = 0
        self.thread_error: BaseException | None = None
        self._buf = bytearray()
        self._lsock = socket.socket()
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(1)
        self.url = "socket://127.0.0.1:%d" % self._lsock.getsockname()[1]
        self._conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    # -- bytes ---------------------------------------------------------------------------------
    def getc(self) -> int | None:
        while not self._buf:
            try:
                data = self._conn.recv(4096) if self._conn else b""
            except OSError:
                data = b""
            if not data:
                return None
            self._buf += data
        c = self._buf[0]
        del self._buf[0]
        return c

    def put(self, data: bytes) -> None:
        if self._conn is None:
            raise Vanish
        self._conn.sendall(data)

    def vanish(self) -> None:
        conn, self._conn = self._conn, None  # the test thread and the board thread both may
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    # -- the REPL ------------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._conn, _ = self._lsock.accept()
            self._repl()
        except (Vanish, OSError):
            pass
        except BaseException as e:  # noqa: BLE001 - reported to the test through thread_error
            self.thread_error = e
            traceback.print_exc()
        finally:
            self.vanish()

    def _repl(self) -> None:
        code = bytearray()
        while (c := self.getc()) is not None:
            if c == 1:  # Ctrl-A
                self.mode, code = "raw", bytearray()
                self.put(b"\r\n" + BANNER)
            elif c == 2:  # Ctrl-B
                self.mode = "friendly"
                self.put(b"\r\nMicroPython fake\r\n>>> ")
            elif c == 3:  # Ctrl-C
                code = bytearray()
                self.put(b"\r\n>>> " if self.mode == "friendly" else b"")
            elif c == 4 and self.mode == "raw":
                if not code:
                    self.soft_resets += 1
                    self.put(b"\r\nMPY: soft reboot\r\n" + BANNER)
                else:
                    self.put(b"OK")
                    self.requests.append(bytes(code))
                    self._exec(bytes(code))
                    code = bytearray()
            elif self.mode == "raw":
                code.append(c)

    def _exec(self, code: bytes) -> None:
        if code != START:
            self.put(b"\x04Traceback (most recent call last):\r\nNameError: fake\r\n\x04>")
        elif self.start_error:
            self.put(b"\x04Traceback (most recent call last):\r\n  File \"<stdin>\", line 1\r\n"
                     + self.start_error.encode() + b"\r\n\x04>")
        else:
            try:
                server.serve(_In(self), _Out(self))
            except Vanish:
                self.vanish()
                raise
            self.put(b"\x04\x04>")

    def close(self) -> None:
        self.vanish()
        self._lsock.close()
        self._thread.join(timeout=30)

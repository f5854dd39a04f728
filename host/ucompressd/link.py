"""The host end of the wire: start the ucz server on a board and exchange requests with it.

Two layers, like mpremote: `Transport` moves bytes over any pyserial URL (device path,
rfc2217://host:port, socket://host:port) with a deadline on every read and knows the raw REPL;
`Link` speaks the wire format of `ucz.wire` (shared with the firmware) on top of it.

We drive the raw REPL with pyserial directly rather than through mpremote's SerialTransport:
its reads have per-character timeouts only and it prints to stdout on failure, while every wait
here must end at one deadline and every failure must be an exception naming the port.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import serial

from ucz import wire

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
SOFT_REBOOT = b"soft reboot"
EOT = b"\x04"  # the raw REPL ends a program's output, then its error output, with Ctrl-D
START = b"import ucz.server;ucz.server.serve()"

EventHandler = Callable[[str, Any], None]


class BoardError(Exception):
    """The board is gone, reset, silent past the timeout, or not running our server."""


class PortError(BoardError):
    """The port could not be opened: no such device, connection refused, bad URL."""


class ProtocolMismatch(BoardError):
    """The board's firmware speaks another protocol version than this host."""


class CommandError(Exception):
    """The board refused a request (an error reply); the link stays usable."""


def _deploy_hint(url: str) -> str:
    return f"deploy the matching firmware: ucompressd deploy --port {url}"


class Transport:
    """Bytes to and from one board; raw REPL entry and program start."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pending = bytearray()  # bytes read past the last expect() marker
        try:
            # A short port timeout lets every read loop check its own deadline.
            self.ser = serial.serial_for_url(url, baudrate=115200, timeout=0.05, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            raise PortError(f"cannot open port {url}: {e}") from None

    def read(self, deadline: float) -> bytes:
        """What has arrived, waiting until the deadline for at least one byte (b"" on timeout)."""
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            return data
        try:
            while True:
                data = self.ser.read(self.ser.in_waiting or 1)
                if data:
                    return data
                if time.monotonic() >= deadline:
                    return b""
        except (serial.SerialException, OSError) as e:
            raise BoardError(f"{self.url}: board disconnected ({e})") from None

    def write(self, data: bytes) -> None:
        try:
            self.ser.write(data)
            self.ser.flush()
        except (serial.SerialException, OSError) as e:
            raise BoardError(f"{self.url}: board disconnected ({e})") from None

    def expect(self, marker: bytes, deadline: float, doing: str) -> bytes:
        """Read through `marker` (returned with what preceded it); keep the rest for later."""
        data = bytearray()
        while (at := data.find(marker)) < 0:
            chunk = self.read(deadline)
            if not chunk:
                tail = bytes(data[-80:])
                raise BoardError(f"{self.url}: {doing}: no {marker!r} in time (last output {tail!r})")
            data += chunk
        end = at + len(marker)
        self._pending[:0] = data[end:]
        return bytes(data[:end])

    def drain(self, quiet: float = 0.1) -> None:
        """Discard input until the board has been quiet for `quiet` seconds (bounded)."""
        self._pending.clear()
        stop = time.monotonic() + 2.0
        while time.monotonic() < stop and self.read(time.monotonic() + quiet):
            pass

    def enter_raw_repl(self, soft_reset: bool, deadline: float) -> None:
        # Ctrl-C twice stops whatever runs (a server left over from an earlier session too).
        # Retried: a board that resets when its port opens (ESP32) is deaf while it boots.
        while True:
            self.write(b"\r\x03\x03")
            self.drain()
            self.write(b"\r\x01")  # Ctrl-A: raw REPL
            try:
                self.expect(RAW_BANNER + b">", min(deadline, time.monotonic() + 2.0), "raw REPL")
                break
            except BoardError:
                if time.monotonic() >= deadline:
                    raise BoardError(f"{self.url}: could not enter the raw REPL") from None
        if soft_reset:
            self.write(EOT)  # Ctrl-D in the raw REPL: soft reset, for a clean heap
            self.expect(SOFT_REBOOT, deadline, "soft reset")
            self.expect(RAW_BANNER + b">", deadline, "raw REPL after soft reset")

    def exec_no_follow(self, code: bytes, deadline: float) -> None:
        """Start `code` from the raw REPL prompt; its output is then the caller's to read."""
        self.write(code + EOT)
        self.expect(b"OK", deadline, "starting the server")

    def close(self) -> None:
        try:
            self.ser.close()
        except (serial.SerialException, OSError):
            pass


class Link:
    """A running ucz server on a board, after the PROTO handshake.

    `noise` counts lines that were not ours (REPL chatter, prints), `corrupt` the lines of ours
    that failed their checksum, `rejected` the board's complaints about lines it could not read.
    """

    def __init__(self, url: str, timeout: float = 10.0, soft_reset: bool = True) -> None:
        self.url = url
        self.timeout = timeout
        self.noise = 0
        self.corrupt = 0
        self.rejected: list[str] = []
        self.log: list[str] = []
        self.hello: dict[str, Any] = {}
        self._buf = bytearray()
        self._next_id = 1
        self._serving = False  # the server runs and the stream is in a known state
        self._busy = False  # a request is in flight (close() must interrupt, not ask)
        self._t: Transport | None = Transport(url)
        try:
            self._start(soft_reset)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self, soft_reset: bool) -> None:
        assert self._t is not None
        deadline = time.monotonic() + self.timeout
        self._t.enter_raw_repl(soft_reset, deadline)
        self._t.exec_no_follow(START, deadline)
        self._serving = True
        msg = self._next(max(0.1, deadline - time.monotonic()), "starting the server")
        while msg.get("ev") != "ready":  # e.g. a stale reply: the server has not said ready yet
            msg = self._next(max(0.1, deadline - time.monotonic()), "starting the server")
        data = msg.get("data")
        self._check_proto(data.get("proto") if isinstance(data, dict) else None)
        self.hello = self.request("hello")
        self._check_proto(self.hello.get("proto"))

    def _check_proto(self, proto: object) -> None:
        if proto != wire.PROTO:
            raise ProtocolMismatch(
                f"{self.url}: the board speaks protocol {proto}, this host speaks {wire.PROTO}: "
                + _deploy_hint(self.url)
            )

    # -- reading messages ---------------------------------------------------------------------

    def _next(self, silence: float, doing: str) -> dict[str, Any]:
        """The next wire message, skipping noise. BoardError when nothing of ours arrives for
        `silence` seconds, when the board resets, or when the server has ended."""
        assert self._t is not None
        deadline = time.monotonic() + silence
        while True:
            msg = self._pop(doing)
            if msg is not None:
                return msg
            chunk = self._t.read(deadline)
            if not chunk:
                self._serving = False
                said = f"; the board said: {self.rejected[-1]}" if self.rejected else ""
                raise BoardError(f"{self.url}: no answer while {doing} for {silence:g} s{said}")
            self._buf += chunk

    def _pop(self, doing: str) -> dict[str, Any] | None:
        while True:
            eot = self._buf.find(EOT)
            nl = self._buf.find(b"\n", 0, eot if eot >= 0 else len(self._buf))
            if nl < 0:
                if eot >= 0:
                    self._server_ended(eot, doing)
                if len(self._buf) > 2 * wire.MAX_LINE:  # endless junk without a newline
                    self.noise += 1
                    del self._buf[: -wire.MAX_LINE]
                return None
            line = bytes(self._buf[: nl + 1])
            del self._buf[: nl + 1]
            msg = self._parse(line, doing)
            if msg is not None:
                return msg

    def _parse(self, line: bytes, doing: str) -> dict[str, Any] | None:
        at = line.rfind(wire.MARK)  # the last marker: junk may precede ours on the same line
        junk = line if at < 0 else line[:at]
        if junk.strip():
            self.noise += 1
            if SOFT_REBOOT in line:
                self._serving = False
                raise BoardError(f"{self.url}: the board reset (soft reboot) while {doing}")
        if at < 0:
            return None
        try:
            return wire.decode(line[at:])
        except ValueError:
            self.corrupt += 1
            return None

    def _server_ended(self, eot: int, doing: str) -> None:
        """The raw REPL reported the end of the server: raise with its error output."""
        assert self._t is not None
        self._serving = False
        deadline = time.monotonic() + 1.0
        while self._buf.find(EOT, eot + 1) < 0 and (chunk := self._t.read(deadline)):
            self._buf += chunk
        end = self._buf.find(EOT, eot + 1)
        err = bytes(self._buf[eot + 1 : end if end >= 0 else len(self._buf)])
        lines = [s for s in err.decode("utf-8", "replace").splitlines() if s.strip()]
        why = lines[-1].strip() if lines else "it returned to the REPL"
        if SOFT_REBOOT in self._buf:
            why = "the board reset (soft reboot)"
        hint = f"; {_deploy_hint(self.url)}" if "ImportError" in why else ""
        raise BoardError(f"{self.url}: the ucz server stopped while {doing}: {why}{hint}")

    # -- requests ------------------------------------------------------------------------------

    def request(
        self,
        cmd: str,
        args: dict[str, Any] | None = None,
        on_event: EventHandler | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request and wait for its reply; events go to on_event(kind, data).

        `timeout` bounds the silence between two lines (a run streams samples), not the whole
        request. Raises CommandError for an error reply, BoardError when the board is lost.
        """
        if self._t is None or not self._serving:
            raise BoardError(f"{self.url}: the link is closed or the server is not running")
        if self._busy:
            raise BoardError(f"{self.url}: an earlier request was interrupted; close the link")
        i = self._next_id
        self._next_id += 1
        silence = timeout if timeout is not None else self.timeout
        doing = f"running '{cmd}'"
        parts: dict[str, Any] = {}
        # Stays True if anything but a reply ends the wait (Ctrl-C on the host, an exception
        # from on_event): the board may still be running it, so close() must interrupt it.
        self._busy = True
        try:
            self._t.write(wire.encode({"id": i, "cmd": cmd, "args": args or {}}))
            while True:
                msg = self._next(silence, doing)
                if msg.get("id") != i:
                    self._stray(msg)
                    continue
                if "ev" in msg:
                    if msg["ev"] == "result" and isinstance(msg.get("data"), dict):
                        parts.update(msg["data"])
                        continue
                    if msg["ev"] == "log":
                        self.log.append(str(msg.get("data")))
                    if on_event is not None:
                        on_event(msg["ev"], msg.get("data"))
                    continue
                if "ok" not in msg:  # our own request echoed back by a tty
                    continue
                self._busy = False
                if not msg["ok"]:
                    raise CommandError(msg["error"])
                if cmd == "bye":
                    self._serving = False
                return self._assemble(msg["result"], parts, cmd)
        except BoardError:
            self._serving = False
            raise

    def _stray(self, msg: dict[str, Any]) -> None:
        if msg.get("ok") is False and msg.get("id") is None:
            self.rejected.append(msg["error"])  # the board could not read some line
        elif msg.get("ev") == "log":
            self.log.append(str(msg.get("data")))

    def _assemble(self, result: Any, parts: dict[str, Any], cmd: str) -> Any:
        # A result sent in parts (see ucz.wire): check that every announced part arrived.
        if isinstance(result, dict) and list(result) == ["parts"]:
            missing = [k for k in result["parts"] if k not in parts]
            if missing:
                raise BoardError(
                    f"{self.url}: parts {missing} of the '{cmd}' result were lost "
                    f"({self.corrupt} lines failed their checksum)"
                )
            return {k: parts[k] for k in result["parts"]}
        return result

    def close(self) -> None:
        """Stop the server and leave the board at its friendly REPL. Never raises."""
        t, self._t = self._t, None
        if t is None:
            return
        try:
            if self._serving and not self._busy:
                self._t = t
                try:
                    self.request("bye", timeout=min(self.timeout, 2.0))
                except (BoardError, CommandError):
                    t.write(b"\x03")
                finally:
                    self._t = None
            elif self._busy:
                # Ctrl-C stops a run in flight; wait (briefly) for the raw REPL to report the
                # server's end so that Ctrl-B reaches the REPL, not the server's input.
                # A Ctrl-C can be lost (line noise; the simulated board passes it on as data
                # when it lands between two instants of interruptible code): send it again.
                for wait in (1.0, 2.0):
                    t.write(b"\x03")
                    try:
                        t.expect(EOT, time.monotonic() + wait, "stopping the server")
                        break
                    except BoardError:
                        pass
            t.write(b"\r\x02")  # Ctrl-B: from the raw REPL back to the friendly REPL
        except BoardError:
            pass
        finally:
            self._serving = False
            t.close()

"""The host end of the wire: start the ucz server on a board and exchange requests with it.

Two layers, like mpremote: a `Session` (session.py: the raw REPL on any pyserial URL through
mpremote, deadlines, reset detection) carries the bytes; `Link` speaks the wire format of
`ucz.wire` (shared with the firmware) on top of it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ucompressd.errors import Failure
from ucompressd.session import EOT, SOFT_REBOOT, BoardError, BoardReset, PortError, Session
from ucz import wire

__all__ = ["BoardError", "BoardReset", "CommandError", "EOT", "Link", "PortError",
           "ProtocolMismatch"]

START = b"import ucz.server;ucz.server.serve()"

EventHandler = Callable[[str, Any], None]


class ProtocolMismatch(BoardError):
    """The board's firmware speaks another protocol version than this host."""


class CommandError(Failure):
    """The board refused a request (an error reply); the link stays usable."""


def _deploy_hint(url: str) -> str:
    return f"deploy the matching firmware: ucompressd deploy --port {url}"


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
        self._t: Session | None = Session(url, timeout)
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
        self._t.enter_raw_repl(soft_reset)
        self._t.start(START, "starting the server")
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
            try:
                chunk = self._t.read(deadline)
            except BoardReset as e:
                self._serving = False
                raise BoardReset(f"{e} while {doing}") from None
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
        try:
            while self._buf.find(EOT, eot + 1) < 0 and (chunk := self._t.read(deadline)):
                self._buf += chunk
        except BoardError:
            pass
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
                        if msg.get("extend"):  # a long list, in order, a line at a time
                            for k, v in msg["data"].items():
                                parts.setdefault(k, []).extend(v)
                        else:
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
                    t.interrupt()
                finally:
                    self._t = None
            elif self._busy:
                # Ctrl-C stops a run in flight; wait (briefly) for the raw REPL to report the
                # server's end so that Ctrl-B reaches the REPL, not the server's input.
                # A Ctrl-C can be lost (line noise; the simulated board passes it on as data
                # when it lands between two instants of interruptible code): send it again.
                for wait in (1.0, 2.0):
                    t.interrupt()
                    try:
                        t.expect(EOT, time.monotonic() + wait, "stopping the server")
                        break
                    except BoardError:
                        pass
        except BoardError:
            pass
        finally:
            self._serving = False
            t.close()

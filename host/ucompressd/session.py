"""The one board session: MicroPython's raw REPL on any pyserial URL, through mpremote.

Everything that talks to a board goes through `Session` (the link, deploy, flash, the
benchmarks): open the port, enter the raw REPL within a deadline, run code and follow its
output, start a program and read what it streams, interrupt it, soft-reset, and notice at once
when the board reboots under a running program. The raw-REPL protocol itself is mpremote's
`SerialTransport` (its whole-operation deadline, `timeout_overall`, is why pyproject asks for
mpremote >= 1.25); this module adds the deadlines, retries and error wording mpremote leaves to
its command line, and turns every failure into a `PortError` (exit 2) or `BoardError` (exit 1)
naming the port. The wire format (ucz.wire) sits above, in link.py.

Threading: one Session belongs to one thread at a time (several boards: one Session each).
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import threading
import time
from typing import Callable, Iterator

import serial

from ucompressd.errors import Failure, InputError

try:
    import termios

    _TERMIOS: tuple[type[Exception], ...] = (termios.error,)
except ImportError:  # not a POSIX host
    _TERMIOS = ()

# What a port that went away raises: pyserial's own error, the OS's, and termios's, which is
# neither (pyserial's flush() calls tcdrain bare: a pty whose board died fails it with EIO).
PORT_ERRORS = (serial.SerialException, OSError, *_TERMIOS)

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
RAW_PROMPT = RAW_BANNER + b">"
SOFT_REBOOT = b"soft reboot"
EOT = b"\x04"  # the raw REPL ends a program's output, then its error output, with Ctrl-D
CTRL_C = b"\x03"
# How a board announces a reboot under a running program: the soft-reset line, or the friendly
# REPL's banner of a power-on boot ("MicroPython v1.28.0 on 2026-...; <board> with <chip>";
# the unix port prints a build hash where boards print the version).
_RESET = re.compile(rb"(MPY: soft reboot|MicroPython \S+ on \d{4}-\d\d-\d\d; )")
_RESET_TAIL = 64  # bytes kept to find a reset line split across two reads
BAUD = 115200
# mpremote reads its two-byte handshakes (raw-paste "R\x01", "OK") with one serial read: the
# port's timeout must let a slow or busy board answer. Our own reads poll and keep deadlines.
MPREMOTE_READ_S = 1.0
ATTEMPT_S = 2.0  # one try at the raw REPL; a booting ESP32 ignores the first ones
POLL_S = 0.005  # idle step of a read waiting for its deadline


class PortError(InputError):
    """The port could not be opened: no such device, connection refused, bad URL."""


class BoardError(Failure):
    """The board is gone, reset, silent past its deadline, or refused the raw REPL."""


class Disconnected(BoardError):
    """The port failed under us: the board was unplugged, or the connection dropped."""


class BoardReset(BoardError):
    """The board rebooted (soft or hard) while a program ran."""


class ExecError(BoardError):
    """Code run on the board raised; `error_output` is its traceback."""

    def __init__(self, message: str, error_output: str) -> None:
        super().__init__(message)
        self.error_output = error_output


# -- mpremote prints raw bytes on some failures: keep them for the error message ------------------


class _ThreadStdout:
    """sys.stdout while some thread captures: that thread's writes go to its buffer, every
    other thread's to the real stdout (contextlib.redirect_stdout would swap it for all)."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.local = threading.local()

    def write(self, s: str) -> int:
        buf = getattr(self.local, "buf", None)
        return (buf if buf is not None else self.real).write(s)  # type: ignore[union-attr]

    def flush(self) -> None:
        if getattr(self.local, "buf", None) is None:
            self.real.flush()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


_capture_lock = threading.Lock()
_capturing = 0


@contextlib.contextmanager
def _captured() -> Iterator[io.StringIO]:
    global _capturing
    buf = io.StringIO()
    with _capture_lock:
        if not isinstance(sys.stdout, _ThreadStdout):
            sys.stdout = _ThreadStdout(sys.stdout)  # type: ignore[assignment]
        proxy = sys.stdout
        _capturing += 1
    proxy.local.buf = buf  # type: ignore[attr-defined]
    try:
        yield buf
    finally:
        proxy.local.buf = None  # type: ignore[attr-defined]
        with _capture_lock:
            _capturing -= 1
            if _capturing == 0 and sys.stdout is proxy:
                sys.stdout = proxy.real  # type: ignore[attr-defined]


def _tail(data: bytes | str, n: int = 120) -> str:
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    return repr(text.strip()[-n:])


# -- the session ----------------------------------------------------------------------------------


class Session:
    """One board on `url` (device path, rfc2217://host:port, socket://host:port, a pty).

    `timeout` is the default deadline of each operation, in seconds.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.url = url
        self.timeout = timeout
        self.running = False  # a program started by start() may be running
        self._pending = bytearray()  # bytes read past the last expect() marker
        self._seen = b""  # the end of what read() returned, to find split reset lines
        self._reset: str | None = None  # a reset line arrived: the next read() raises
        try:
            with _captured():
                self.t = SerialTransport(url, baudrate=BAUD, timeout=MPREMOTE_READ_S)
        except TransportError:
            raise PortError(f"cannot open port {url}: {_open_reason(url)}") from None
        except (*PORT_ERRORS, ValueError) as e:
            raise PortError(f"cannot open port {url}: {_why(e)}") from None
        self.serial = self.t.serial

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- mpremote calls --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _mp(self, doing: str) -> Iterator[None]:
        """mpremote's and pyserial's exceptions as BoardError "URL: doing: why (last output)"."""
        from mpremote.transport import TransportError, TransportExecError

        with _captured() as out:
            try:
                yield
            except TransportExecError as e:
                raise self._exec_error(doing, e.error_output) from None
            except TransportError as e:
                seen = out.getvalue()
                said = f" (last output {_tail(seen)})" if seen.strip() else ""
                raise BoardError(f"{self.url}: {doing}: {e}{said}") from None
            except PORT_ERRORS as e:
                raise Disconnected(f"{self.url}: {doing}: board disconnected ({e})") from None

    def _exec_error(self, doing: str, error_output: str) -> ExecError:
        lines = [ln.strip() for ln in error_output.splitlines() if ln.strip()]
        return ExecError(f"{self.url}: {doing}: {lines[-1] if lines else 'error'}", error_output)

    def enter_raw_repl(self, soft_reset: bool = True, timeout: float | None = None) -> None:
        """Interrupt whatever runs and enter the raw REPL (soft-reset first: a clean heap).

        Retried until the deadline: a board that resets when its port opens (ESP32) is deaf
        while it boots. BoardError when the deadline passes.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self.running = False
        self._reset = None
        last: BoardError | None = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                why = f": {last}" if last else ""
                raise BoardError(f"{self.url}: could not enter the raw REPL within "
                                 f"{self._secs(timeout)}{why}")
            try:
                with self._mp("entering the raw REPL"):
                    self.serial.write(CTRL_C)  # two in all: one may land in a board's boot log
                    self.t.enter_raw_repl(soft_reset=soft_reset,
                                          timeout_overall=min(ATTEMPT_S, max(left, 0.1)))
                self._pending.clear()
                return
            except Disconnected:
                raise
            except BoardError as e:
                last = e

    def exec(self, code: str | bytes, doing: str, timeout: float | None = None) -> bytes:
        """Run `code` at the raw REPL prompt; its output. ExecError if it raised."""
        with self._mp(doing):
            out, err = self.t.exec_raw(code, timeout=self.timeout if timeout is None else timeout)
        if err:
            raise self._exec_error(doing, err.decode(errors="replace"))
        return bytes(out)

    def start(self, code: str | bytes, doing: str) -> None:
        """Start `code` at the raw REPL prompt and return at once: what it prints is then the
        caller's to read(), where a reboot of the board raises BoardReset."""
        with self._mp(doing):
            self.t.exec_raw_no_follow(code)
        self.running = True
        self._seen = b""

    def follow(self, code: str | bytes, doing: str, timeout: float,
               on_data: Callable[[bytes], None]) -> None:
        """Run `code` at the raw REPL prompt, handing its output to `on_data` as it arrives
        (a long program with progress lines); ExecError if it raised, BoardError when it has
        not finished within `timeout` seconds."""
        with self._mp(doing):
            self.t.exec_raw_no_follow(code)
            _, err = self.t.follow(timeout, on_data)
        if err:
            raise self._exec_error(doing, err.decode(errors="replace"))

    def write_file(self, path: str, data: bytes, chunk: int = 256) -> None:
        """The file at `path` on the board holds `data` (mpremote's fs_writefile)."""
        with self._mp(f"writing {path}"):
            self.t.fs_writefile(path, data, chunk_size=chunk)

    def read_file(self, path: str, chunk: int = 256) -> bytes:
        with self._mp(f"reading {path}"):
            return bytes(self.t.fs_readfile(path, chunk_size=chunk))

    def soft_reset(self, timeout: float | None = None) -> None:
        """A fresh interpreter, back at the raw REPL."""
        with self._mp("soft reset"):
            self.t.exit_raw_repl()
        self.enter_raw_repl(soft_reset=True, timeout=timeout)

    # -- bytes -----------------------------------------------------------------------------------

    def read(self, deadline: float) -> bytes:
        """What has arrived, waiting until the deadline for at least one byte (b"" then).

        While a program runs (start()), a reboot line ends the stream: what preceded it is
        returned first, the next call raises BoardReset.
        """
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            return data
        if self._reset is not None:
            raise BoardReset(f"{self.url}: the board reset ({self._reset})")
        try:
            while True:
                n = self.serial.in_waiting
                if n:
                    data = self.serial.read(n)
                    if data:
                        return self._watch(data) if self.running else data
                if time.monotonic() >= deadline:
                    return b""
                time.sleep(POLL_S)
        except PORT_ERRORS as e:
            raise Disconnected(f"{self.url}: board disconnected ({e})") from None

    def _watch(self, data: bytes) -> bytes:
        seen = self._seen + data
        m = _RESET.search(seen)
        if m is None:
            self._seen = seen[-_RESET_TAIL:]
            return data
        self.running = False
        self._reset = "soft reboot" if m.group(0).startswith(b"MPY") else "power-on boot"
        before = m.start() - len(self._seen)
        return data[:max(0, before)] or self.read(0)

    def write(self, data: bytes) -> None:
        try:
            self.serial.write(data)
            self.serial.flush()
        except PORT_ERRORS as e:
            raise Disconnected(f"{self.url}: board disconnected ({e})") from None

    def expect(self, marker: bytes, deadline: float, doing: str) -> bytes:
        """Read through `marker` (returned with what preceded it); keep the rest for later."""
        data = bytearray()
        while (at := data.find(marker)) < 0:
            chunk = self.read(deadline)
            if not chunk:
                raise BoardError(f"{self.url}: {doing}: no {marker!r} in time "
                                 f"(last output {bytes(data[-80:])!r})")
            data += chunk
        end = at + len(marker)
        self._pending[:0] = data[end:]
        return bytes(data[:end])

    def interrupt(self) -> None:
        """Ctrl-C: a running program gets KeyboardInterrupt."""
        self.write(CTRL_C)

    def close(self) -> None:
        """Leave the board at its friendly REPL and close the port. Never raises."""
        with contextlib.suppress(Exception):
            self.serial.write(b"\r\x02")  # Ctrl-B: from the raw REPL to the friendly one
            self.t.in_raw_repl = False
        with contextlib.suppress(Exception):
            self.t.close()
        with contextlib.suppress(Exception):
            self.serial.close()

    def _secs(self, timeout: float | None) -> str:
        return f"{self.timeout if timeout is None else timeout:g} s"


def _open_reason(url: str) -> str:
    """Why a port does not open: mpremote's error says only "failed to access", so ask pyserial
    once more (the port did not open, so this toggles no line of a board)."""
    try:
        s = serial.serial_for_url(url, baudrate=BAUD, timeout=0, exclusive=True)
    except (*PORT_ERRORS, ValueError) as e:
        return _why(e)
    s.close()
    return "failed to access it"


def _why(e: BaseException) -> str:
    """pyserial's reason without its own "could not open port URL: " in front."""
    return re.sub(r"^could not open port \S+: ", "", str(e), flags=re.IGNORECASE)


def wait_for_repl(url: str, timeout: float) -> bool:
    """Poll until MicroPython's raw REPL answers on `url`; True if it did within `timeout`.

    A port that does not exist yet (USB re-enumerating after a reset) is retried; once open it
    stays open between attempts (reopening toggles DTR/RTS, which resets some ESP32 boards all
    over again). The board is left at its friendly REPL.
    """
    deadline = time.monotonic() + timeout
    s: Session | None = None
    try:
        while True:
            if s is None:
                try:
                    s = Session(url, timeout=1.0)
                except PortError:
                    s = None
            if s is not None:
                try:
                    s.enter_raw_repl(soft_reset=False,
                                     timeout=max(0.1, min(1.0, deadline - time.monotonic())))
                    return True
                except Disconnected:  # unplugged mid-attempt: reopen on the next round
                    s.close()
                    s = None
                except BoardError:
                    pass
            if time.monotonic() >= deadline:
                return False
            if s is None:
                time.sleep(0.1)
    finally:
        if s is not None:
            s.close()

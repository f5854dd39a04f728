"""The simulated board, through the same clients that talk to a real one: pyserial and mpremote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from ucompressd import sim
from ucompressd.sim import ENV_MICROPYTHON, SimBoard, SimError, find_interpreter

pytestmark = pytest.mark.timeout(60)

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"


def read_until(port: serial.Serial, ending: bytes, timeout: float = 10.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(ending):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {ending!r} within {timeout}s; got {data[-300:]!r}")
        data += port.read(port.in_waiting or 1)
    return data


def friendly(port: serial.Serial) -> None:
    port.write(b"\r\x02")
    read_until(port, b">>> ")


def raw_exec(port: serial.Serial, code: str) -> tuple[bytes, bytes]:
    """Run code in the raw REPL (entered if needed): (stdout, stderr) as the board sent them."""
    port.write(b"\r\x01")
    read_until(port, RAW_PROMPT)
    port.write(code.encode() + b"\x04")
    reply = read_until(port, b"\x04>")
    assert reply.startswith(b"OK"), reply
    out, err = reply[2:-2].split(b"\x04")
    return out, err


def mpremote(port: str, *args: str, timeout: float = 30, cwd: Path | None = None) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    assert res.returncode == 0, f"mpremote {args}: {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimBoard]:
    with SimBoard(tmp_path_factory.mktemp("flash")) as b:
        yield b


@pytest.fixture
def port(board: SimBoard) -> Iterator[serial.Serial]:
    with serial.Serial(board.port, timeout=0.2) as p:
        yield p


def test_interpreter_is_micropython(board: SimBoard) -> None:
    assert board.interpreter.kind in ("micropython", "micropython-in-cpython")
    assert "MicroPython" in board.interpreter.version
    with pytest.raises(SimError, match="not MicroPython"):
        find_interpreter(sys.executable)
    with pytest.raises(SimError, match=ENV_MICROPYTHON):
        find_interpreter("/nonexistent/micropython")


def test_friendly_repl_evaluates(port: serial.Serial) -> None:
    friendly(port)
    port.write(b"6 * 7\r")
    assert b"42" in read_until(port, b">>> ")


def test_raw_repl_executes(port: serial.Serial) -> None:
    out, err = raw_exec(port, "print(sum(range(5)))")
    assert (out.strip(), err) == (b"10", b"")
    out, err = raw_exec(port, "1/0")
    assert out == b"" and b"ZeroDivisionError" in err
    friendly(port)


def test_board_sees_flash_as_root(board: SimBoard, port: serial.Serial) -> None:
    (board.flash_dir / "pkg_root").mkdir(exist_ok=True)
    (board.flash_dir / "pkg_root" / "__init__.py").write_text("WHERE = 'root'\n")
    (board.flash_dir / "lib").mkdir(exist_ok=True)
    (board.flash_dir / "lib" / "pkg_lib.py").write_text("WHERE = 'lib'\n")
    out, err = raw_exec(
        port,
        "import os, sys, gc, pkg_root, pkg_lib\n"
        "print(sorted(os.listdir('/')), os.getcwd(), sys.path, pkg_root.WHERE, pkg_lib.WHERE)\n"
        "gc.collect(); print(gc.mem_free(), os.uname().sysname)",
    )
    assert err == b""
    first, second = out.decode().splitlines()
    assert first.startswith("['lib', 'pkg_root']")
    assert " / " in first and "'', '.frozen', '/lib'" in first and first.endswith("root lib")
    free, sysname = second.split()
    heap = sim.default_heap()  # -X heapsize: the sim profile's memory.heap
    assert 0.9 * heap < int(free) <= heap and sysname == "sim"
    friendly(port)


def test_mpremote_exec_fs_and_run(board: SimBoard, tmp_path: Path) -> None:
    assert mpremote(board.port, "exec", "print(1+1)").strip() == "2"
    (tmp_path / "local.py").write_text("print('local says hi')\n")
    mpremote(board.port, "fs", "cp", "local.py", ":local.py", cwd=tmp_path)
    assert (board.flash_dir / "local.py").read_text() == "print('local says hi')\n"
    listing = mpremote(board.port, "fs", "ls")
    assert any(line.split()[-1:] == ["local.py"] for line in listing.splitlines()), listing
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "deep.py").write_text("DEEP = 3\n")
    mpremote(board.port, "fs", "cp", "-r", "tree/", ":", cwd=tmp_path)
    assert (board.flash_dir / "tree" / "sub" / "deep.py").read_text() == "DEEP = 3\n"
    (tmp_path / "script.py").write_text("from tree.sub.deep import DEEP\nprint('deep', DEEP)\n")
    assert mpremote(board.port, "run", "script.py", cwd=tmp_path).strip() == "deep 3"


def test_mpremote_soft_reset(board: SimBoard) -> None:
    mpremote(board.port, "exec", "marker = 1")
    boots = board.boots
    # mpremote's soft reset waits for "soft reboot" and then the raw REPL prompt; the sim restarts
    # the interpreter for it, and the new one has fresh globals.
    assert (
        mpremote(board.port, "soft-reset", "exec", "print('marker' in globals())").strip()
        == "False"
    )
    assert board.boots > boots
    assert mpremote(board.port, "exec", "print(2*21)").strip() == "42"


def test_ctrl_c_interrupts_friendly_raw_and_raw_paste(board: SimBoard, port: serial.Serial) -> None:
    friendly(port)
    port.write(b"while True: pass\r\r")
    read_until(port, b"... \r\n")
    time.sleep(0.2)
    port.write(b"\x03")
    assert b"KeyboardInterrupt" in read_until(port, b">>> ")
    port.write(b"\x01")
    read_until(port, RAW_PROMPT)
    port.write(b"while True: pass\x04")  # plain raw REPL
    read_until(port, b"OK")
    time.sleep(0.2)
    port.write(b"\x03\x03")  # a second Ctrl-C while the first is pending must not kill the board
    assert b"KeyboardInterrupt" in read_until(port, b"\x04>")
    friendly(port)
    pid = board.pid
    port.close()

    from mpremote.transport_serial import SerialTransport

    t = SerialTransport(board.port)  # raw-paste mode: code runs without the tty's ISIG
    try:
        t.enter_raw_repl(soft_reset=False)
        t.exec_raw_no_follow("import time\nwhile True: time.sleep_ms(1)")
        time.sleep(0.2)
        t.serial.write(b"\x03")
        out, err = t.follow(5)
        assert b"KeyboardInterrupt" in err
        assert t.eval("40 + 2") == 42
        t.exit_raw_repl()
    finally:
        t.close()
    assert board.pid == pid  # interrupted, not restarted


def test_ctrl_c_is_data_under_kbd_intr_off(board: SimBoard, port: serial.Serial) -> None:
    port.write(b"\r\x01")
    read_until(port, RAW_PROMPT)
    port.write(
        b"import micropython, sys\nmicropython.kbd_intr(-1)\nprint(sys.stdin.buffer.read(3))\x04"
    )
    time.sleep(0.2)
    port.write(b"a\x03b")  # binary data for the board, as a wire protocol sends it
    assert read_until(port, b"\x04>") == b"OKb'a\\x03b'\n\x04\x04>"
    port.write(
        b"print(sys.stdin.buffer.read(3))\x04"
    )  # interrupts back on: Ctrl-C interrupts the read
    time.sleep(0.2)
    port.write(b"\x03")
    assert b"KeyboardInterrupt" in read_until(port, b"\x04>")
    friendly(port)


def test_boot_main_and_resets(tmp_path: Path) -> None:
    (tmp_path / "boot.py").write_text("print('boot.py ran')\n")
    (tmp_path / "main.py").write_text("print('main.py ran')\nwhile True:\n    pass\n")
    with SimBoard(tmp_path) as board, serial.Serial(board.port, timeout=0.2) as port:
        port.write(b"\r\x03")  # main.py loops, like firmware that serves forever
        assert b"KeyboardInterrupt" in read_until(port, b">>> ")
        port.write(b"\x04")  # soft reset from the friendly REPL: boot.py and main.py again
        out = read_until(port, b"main.py ran\n")
        assert b"MPY: soft reboot\r\nboot.py ran\n" in out
        port.write(b"\x03")
        read_until(port, b">>> ")
        boots = board.boots
        port.write(b"import machine; machine.reset()\r")  # a power-on boot: no soft-reboot line
        out = read_until(port, b"main.py ran\n")
        assert b"soft reboot" not in out and board.boots == boots + 1
        port.write(b"\x03")
        read_until(port, b">>> ")
        (tmp_path / "main.py").unlink()
        raw_exec(port, "pass")
        port.write(b"import machine; machine.soft_reset()\x04")
        # as a board: end of output, then the soft reboot straight back into the raw REPL
        out = read_until(port, RAW_PROMPT)
        assert out == b"OK\x04\x04MPY: soft reboot\r\nboot.py ran\n" + RAW_PROMPT


def test_stalled_host_does_not_stall_the_board(tmp_path: Path) -> None:
    with SimBoard() as board:
        port = serial.Serial(board.port, timeout=0.2)
        friendly(port)
        port.write(b"for i in range(100000): print('x' * 99)\r\r")  # 10 MB nobody reads
        deadline = time.monotonic() + 40
        while not (board.dropped and board.recent_output().endswith(b">>> ")):
            assert time.monotonic() < deadline, board.recent_output()[-200:]
            time.sleep(0.1)
        assert board.pid is not None and board.alive
        port.close()
        with serial.Serial(board.port, timeout=0.2) as port:  # the host comes back
            port.write(b"'a' + 'b'\r")
            read_until(port, b"'ab'\n>>> ")
        assert mpremote(board.port, "exec", "print('still serving')").strip() == "still serving"


def test_kill_hangs_up_the_port(tmp_path: Path) -> None:
    link = tmp_path / "dev" / "ttyACM0"
    with SimBoard(link=link) as board:
        assert os.readlink(link) == board.port
        port = serial.Serial(str(link), timeout=0.2)
        friendly(port)
        port.write(b"import time\rwhile True: print(1); time.sleep_ms(10)\r\r")
        read_until(port, b"1\n1\n")
        pid = board.pid
        board.kill()
        assert not Path(f"/proc/{pid}").exists()
        assert not board.alive and board.pid is None
        got = b""
        with pytest.raises(serial.SerialException):  # a board unplugged: the port hangs up
            for _ in range(10):
                got += port.read(100)
        assert got == b""
        port.close()
        assert not os.path.exists(board.port)
    assert not os.path.lexists(link)


def test_serve_forever_cli(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from ucompressd.sim import main; sys.exit(main(sys.argv[1:]))",
            "--flash",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        dev = proc.stdout.readline().strip()
        assert dev.startswith("/dev/"), dev
        mpremote(dev, "exec", "open('/made.txt', 'w').write('hi')")
        assert (tmp_path / "made.txt").read_text() == "hi"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_hello_counts_the_cpus_the_board_may_use() -> None:
    # The board's / is its flash folder, so its hello learns its CPUs from what the boot read
    # (ucz_board): a board pinned to one CPU says so, and auto's compressor becomes a task.
    from ucompressd import experiment

    mine = os.sched_getaffinity(0)
    with experiment.open_board(None, None) as b:
        h = experiment.probe(b)
    assert h["cores"] == len(mine)
    os.sched_setaffinity(0, {min(mine)})  # the board's interpreter inherits it at spawn
    try:
        with experiment.open_board(None, None) as b:
            os.sched_setaffinity(0, mine)
            h = experiment.probe(b)
    finally:
        os.sched_setaffinity(0, mine)
    assert h["cores"] == 1 and experiment.default_compressor(h) == "task"

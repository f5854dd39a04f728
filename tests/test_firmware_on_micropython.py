"""The firmware test suite (tests/firmware) again, under the real MicroPython unix port.

pytest runs tests/firmware/*.py on CPython directly; here each file runs under `micropython
-X heapsize=` a Pico 2's heap (conftest.HEAPSIZE, from boards/pico2.json) through tests/mprun.py, one pytest case per file,
failing with the MicroPython traceback of every failed test.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, run_micropython

FILES = sorted((REPO / "tests" / "firmware").glob("test_*.py"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_firmware_file_on_micropython(path: Path) -> None:
    proc = run_micropython(["tests/mprun.py", str(path.relative_to(REPO))], timeout=600)
    out = proc.stdout + proc.stderr
    done = [line for line in proc.stdout.splitlines() if line.startswith("DONE ")]
    assert proc.returncode == 0 and done, f"runner did not finish:\n{out}"
    npass, nfail = map(int, done[-1].split()[1:])
    assert nfail == 0, out
    assert npass > 0, f"no test ran:\n{out}"

"""MicroPython package conventions: firmware/package.json installs ucz with `mpremote mip
install`, here onto the simulated board, and lists exactly the firmware (it cannot drift)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import FIRMWARE, micropython_argv, NO_MICROPYTHON

import ucz

PACKAGE = FIRMWARE / "package.json"


def test_package_json_lists_the_firmware():
    doc = json.loads(PACKAGE.read_text())
    assert doc["version"] == ucz.VERSION
    files = sorted(f"ucz/{p.name}" for p in (FIRMWARE / "ucz").glob("*.py"))
    assert sorted(dst for dst, _ in doc["urls"]) == files
    assert all(dst == src for dst, src in doc["urls"])  # local paths, relative to the json


def test_mip_install_onto_the_simulated_board(tmp_path):
    if micropython_argv() is None:
        pytest.skip(NO_MICROPYTHON)
    from ucompressd.sim import SimBoard

    with SimBoard(tmp_path / "flash") as board:
        def mpremote(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "mpremote", "connect", board.port, *args],
                                  capture_output=True, text=True, timeout=120)

        before = mpremote("exec", "import ucz")
        assert before.returncode != 0 and "ImportError" in before.stdout + before.stderr
        r = mpremote("mip", "install", str(PACKAGE))
        assert r.returncode == 0, r.stdout + r.stderr
        r = mpremote("exec", "import ucz, ucz.wire; print(ucz.VERSION, ucz.__file__)")
        assert r.returncode == 0, r.stdout + r.stderr
        version, path = r.stdout.split()
        assert version == ucz.VERSION and path.startswith("/lib/ucz/")
    assert (tmp_path / "flash" / "lib" / "ucz" / "lz4.py").read_bytes() == \
        (FIRMWARE / "ucz" / "lz4.py").read_bytes()

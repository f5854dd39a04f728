"""`ucompressd zram`: bad input is one line and exit 2; the data logger and the log/disk loads
run on the simulated board (a 400 KB heap) and their stats come back, every record checked."""

from __future__ import annotations

import json

import pytest

from conftest import micropython_argv
from ucompressd.cli import main

pytestmark = pytest.mark.timeout(300)
needs_mp = pytest.mark.skipif(micropython_argv() is None, reason="no MicroPython unix port")


@pytest.mark.parametrize(("argv", "says"), [
    (["--load", "nope"], "--load: 'nope' is not one of"),
    (["--kind", "lava"], "--kind: 'lava' is not one of"),
    (["--ram", "2"], "--ram: 2 KB is out of range"),
    (["--page", "1000"], "--page: 1000 is not"),
    (["--mode", "fast"], "--mode: 'fast' is not"),
    (["--port", "/dev/ttyNOPE-ucz"], "--port: /dev/ttyNOPE-ucz does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(argv, says, capsys):
    assert main(["zram", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err


@needs_mp
def test_the_data_logger_on_the_simulated_board(tmp_path, capsys):
    out = tmp_path / "zram.json"
    assert main(["zram", "--ram", "64", "--file", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    stores = {s["store"]: s for s in doc["result"]["stores"]}
    assert set(stores) == {"bytearray ring", "littlefs on RAMBlockDev", "ZramLog",
                           "littlefs on ZramDisk"}
    z = stores["ZramLog"]
    assert z["stats"]["corrupt"] == 0 and z["stats"]["pages_stored"] > 0
    assert z["samples"] > stores["bytearray ring"]["samples"]  # sensor CSV compresses
    assert stores["littlefs on ZramDisk"]["stats"]["corrupt"] == 0
    text = capsys.readouterr().out
    assert "ZramLog stats" in text and "compr_data_size" in text


@needs_mp
@pytest.mark.parametrize("load", ["log", "disk"])
def test_a_load_on_the_simulated_board(load, tmp_path):
    out = tmp_path / "zram.json"
    assert main(["zram", "--load", load, "--kind", "text", "--ram", "48", "--mode", "kswapd",
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())["result"]
    assert r["ok"] and r["records"] > 0 and r["stats"]["corrupt"] == 0
    assert r["stats"]["mode"] == "kswapd"

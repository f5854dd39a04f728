"""End to end on a board: a real one with `pytest -m hil --port URL --board NAME`, else a
fresh simulated board that got its firmware through `ucompressd deploy` (see conftest)."""

from __future__ import annotations

import pytest
import serial

from ucompressd import __version__, experiment
from ucompressd.link import EOT, Link
from ucz import runner, wire
from ucz.server import firmware_digest

pytestmark = pytest.mark.hil

# Small enough for a Pico 2's heap, under pressure (fewer frames than pages).
SMALL = {"page_size": 1024, "pages": 128, "frames": 32, "ops": 4000, "sample_ms": 50}


@pytest.mark.timeout(120)
def test_hello_reports_the_hosts_version(board, board_profile):
    with Link(board, timeout=15) as link:
        h = link.hello
    assert h["version"] == __version__ and h["proto"] == wire.PROTO
    if board_profile is not None and board_profile.qemu is not None:
        assert h["fw_sha256"] is None  # frozen: the image's cache key covers the files
    else:
        assert h["fw_sha256"] == firmware_digest(str(experiment.FIRMWARE_DIR))
    if board_profile is not None:
        assert h["gil"] is board_profile.threads.gil or not h["threads"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["kswapd", "kcompressd"])
def test_short_run_is_clean_and_passes_the_codec_audit(board, mode):
    b = experiment.Board(url=board, kind="serial")
    hello = experiment.probe(b, timeout=15)
    cfg = runner.config({**SMALL, "mode": mode, "compressor": experiment.default_compressor(hello)})
    doc = experiment.run(b, cfg, timeout=15, audit=16)
    assert doc["counters"]["ops"] == SMALL["ops"]
    assert doc["counters"]["corrupt"] == 0
    assert doc["audit"]["checked"] > 0 and doc["audit"]["bad"] == []


class _Stop(Exception):
    pass


@pytest.mark.timeout(120)
def test_ctrl_c_mid_run_returns_to_the_repl(board, board_profile):
    def stop_at_first_sample(kind: str, data: object) -> None:
        if kind == "sample":
            raise _Stop

    one_core = board_profile is not None and board_profile.threads.max_threads == 0
    with pytest.raises(_Stop):
        with Link(board, timeout=15) as link:
            cfg = runner.config({**SMALL, "ops": 1 << 30,
                                 **({"compressor": "task"} if one_core else {})})
            link.request("run", cfg, on_event=stop_at_first_sample)
    # Link.close() sent Ctrl-C, then Ctrl-B: the friendly REPL evaluates a line again.
    ser = serial.serial_for_url(board, baudrate=115200, timeout=0.2)
    try:
        ser.reset_input_buffer()
        ser.write(b"\r\n6*7\r\n")
        out = b""
        for _ in range(100):
            out += ser.read(256)
            if b"42" in out:
                break
    finally:
        ser.close()
    assert b"42" in out and EOT not in out, out
    with Link(board, timeout=15) as link:  # and the server starts again
        assert link.request("hello")["version"] == __version__


@pytest.mark.timeout(60)
def test_real_board_is_the_profiled_one(real_board, board_profile):
    if board_profile is None:
        pytest.skip("give --board NAME to check the board against its profile")
    with Link(real_board, timeout=15) as link:
        assert link.hello["platform"] == board_profile.port

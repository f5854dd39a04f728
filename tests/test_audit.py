"""Codec audit: the board's compressed pages decoded by the reference LZ4 on the host."""

from __future__ import annotations

import importlib.util
import json

import pytest

from fakeboard import FakeBoard
from ucompressd import experiment
from ucompressd.cli import main
from ucz import runner, wire

pytestmark = pytest.mark.timeout(300)

HAVE_SIM = importlib.util.find_spec("ucompressd.sim") is not None
SMALL = {"page_size": 1024, "pages": 128, "frames": 32, "ops": 4000}


def test_audit_pages_are_compressed_and_chosen_by_the_seed():
    def chosen(seed: int) -> list[int]:
        cfg = runner.config({**SMALL, "mode": "kswapd", "seed": seed})
        sent: list[int] = []
        runner.run(cfg, lambda k, d: sent.append(d["page"]) if k == "audit" else None, audit=16)
        return sent

    a, b = chosen(3), chosen(3)
    assert a == b and len(set(a)) == 16
    assert chosen(4) != a


def test_audit_skips_raw_pages():
    cfg = runner.config({**SMALL, "ops": 2000, "mode": "kswapd", "data": "random"})
    pages = []
    res = runner.run(cfg, lambda k, d: pages.append(d) if k == "audit" else None, audit=8)
    assert res["audit"] == {"sent": 0, "eligible": 0} and pages == []


def test_audit_lines_fit_on_the_wire():
    # 4 KiB pages: a compressed page may be 3 KiB, sent in chunks each well under MAX_LINE.
    cfg = runner.config({"page_size": 4096, "pages": 48, "frames": 16, "ops": 1500,
                         "mode": "kswapd", "data": "sensor"})
    events = []
    runner.run(cfg, lambda k, d: events.append(d) if k == "audit" else None, audit=4)
    assert events
    assert max(len(wire.encode({"id": 1, "ev": "audit", "data": d})) for d in events) \
        < wire.MAX_LINE


def test_a_page_damaged_on_its_way_is_reported():
    damaged: list[int] = []

    def flip_one_audited_byte(line: bytes) -> bytes:
        if b'"ev":"audit"' not in line or damaged:
            return line
        msg = wire.decode(line)
        d = msg["data"]
        damaged.append(d["page"])
        # A different valid base64 character: the line itself stays well-formed.
        c = d["b64"][10]
        d["b64"] = d["b64"][:10] + ("A" if c != "A" else "B") + d["b64"][11:]
        return wire.encode(msg)

    b = FakeBoard(mangle=flip_one_audited_byte)
    try:
        board = experiment.Board(url=b.url, kind="serial")
        cfg = runner.config({**SMALL, "mode": "kswapd"})
        doc = experiment.run(board, cfg, audit=8)
    finally:
        b.close()
    a = doc["audit"]
    assert a["checked"] == 8 and a["ok"] == 7
    assert [x["page"] for x in a["bad"]] == damaged
    assert experiment.audit_failed(doc)
    assert doc["counters"]["corrupt"] == 0  # the board itself saw nothing wrong


def test_bad_audit_count_is_an_argument_error(capsys):
    assert main(["run", "--audit", "-1"]) == 2
    assert "--audit: must be 0 or more" in capsys.readouterr().err


@pytest.mark.skipif(not HAVE_SIM, reason="no simulated board")
@pytest.mark.parametrize(("mode", "compressor"), [
    ("kswapd", None), ("kcompressd", "task"), ("kcompressd", "thread"),
])
def test_run_audit_passes_on_the_simulated_board(tmp_path, mode, compressor):
    j = tmp_path / "run.json"
    argv = ["run", "--mode", mode, "--audit", "32", "--json", str(j)]
    if compressor:  # kswapd mode has none (the scanner compresses): refused if given
        argv += ["--compressor", compressor]
    for k, v in SMALL.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    assert main(argv) == 0
    a = json.loads(j.read_text())["audit"]
    assert a["checked"] == a["ok"] == 32 and a["bad"] == []
    assert a["eligible"] >= 32


def test_audit_bad_page_fails_the_cli(monkeypatch, capsys):
    # The CLI's exit status follows the audit: one bad page is exit 1 with the page named.
    real = experiment.check_audit

    def one_bad(pages, cfg, requested, board):
        doc = real(pages, cfg, requested, board)
        doc["bad"].append({"page": 7, "version": 3, "reason": "decodes to other bytes"})
        return doc

    monkeypatch.setattr(experiment, "check_audit", one_bad)
    b = FakeBoard()
    try:
        argv = ["run", "--port", b.url, "--mode", "kswapd", "--audit", "4"]
        for k, v in SMALL.items():
            argv += ["--" + k.replace("_", "-"), str(v)]
        assert main(argv) == 1
    finally:
        b.close()
    assert "page 7 version 3: decodes to other bytes" in capsys.readouterr().err

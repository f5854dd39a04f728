"""Flashing without a board: esptool argv from the profiles (and esptool really run against a port
with no ESP32 behind it), image checks, and the UF2 copy into a folder standing in for the drive."""

from __future__ import annotations

import importlib.util
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ucompressd import boards, esp, uf2
from ucompressd.cli import main
from ucompressd.flash import FlashError, ImageError
from ucompressd.sim import SimBoard

pytestmark = pytest.mark.timeout(120)

needs_esptool = pytest.mark.skipif(importlib.util.find_spec("esptool") is None,
                                   reason="esptool not installed")

RP2040, RP2350_ARM, ABSOLUTE = 0xE48BFF56, 0xE48BFF59, 0xE48BFF57


def esp_image(path: Path, chip_id: int, size: int = 4096) -> Path:
    """A file with an ESP image header: magic, segments, mode, size/freq, entry, ext header."""
    head = bytes([0xE9, 3, 2, 0x20]) + struct.pack("<I", 0x40080000)
    ext = bytes([0xEE, 0, 0, 0]) + struct.pack("<H", chip_id) + bytes(10)
    path.write_bytes(head + ext + bytes(size - len(head) - len(ext)))
    return path


def uf2_blocks(family: int, n: int, *, start: int = 0x10000000, numbered: int | None = None
               ) -> list[bytes]:
    blocks = []
    for i in range(n):
        hdr = struct.pack("<8I", uf2.UF2_MAGIC_START0, uf2.UF2_MAGIC_START1,
                          uf2.UF2_FLAG_FAMILY_ID, start + 256 * i, 256, i,
                          numbered or n, family)
        data = bytes([i & 0xFF]) * 256 + bytes(476 - 256)
        blocks.append(hdr + data + struct.pack("<I", uf2.UF2_MAGIC_END))
    return blocks


def uf2_file(path: Path, *families: tuple[int, int]) -> Path:
    path.write_bytes(b"".join(b for fam, n in families for b in uf2_blocks(fam, n)))
    return path


def drive(tmp_path: Path, board_id: str, label: str | None = None) -> Path:
    d = tmp_path / (label or board_id)
    d.mkdir()
    model = "Raspberry Pi RP2" if board_id == "RPI-RP2" else "Raspberry Pi RP2350"
    (d / uf2.INFO_UF2).write_text(
        f"UF2 Bootloader v3.0\r\nModel: {model}\r\nBoard-ID: {board_id}\r\n")
    return d


# -- esptool ---------------------------------------------------------------------------------------


def test_esptool_commands_come_from_the_profiles() -> None:
    wrover = boards.load("esp32-wrover")
    s3 = boards.load("esp32-s3-n8r8")
    assert esp.esptool_commands(wrover, "/dev/ttyUSB0", "fw.bin") == [
        ["--chip", "esp32", "--port", "/dev/ttyUSB0", "erase-flash"],
        ["--chip", "esp32", "--port", "/dev/ttyUSB0", "--baud", "460800", "write-flash",
         "0x1000", "fw.bin"],
    ]
    assert esp.esptool_commands(s3, "/dev/ttyACM0", "s3.bin", baud=921600, erase=False) == [
        ["--chip", "esp32s3", "--port", "/dev/ttyACM0", "--baud", "921600", "write-flash",
         "0x0", "s3.bin"],
    ]
    assert esp.esptool_commands(s3, "P", "x.bin", connect_attempts=1)[0] == [
        "--chip", "esp32s3", "--port", "P", "--connect-attempts", "1", "erase-flash"]
    with pytest.raises(ImageError, match="not flashed with esptool"):
        esp.esptool_commands(boards.load("pico"), "P", "x.uf2")


def test_esp_image_must_be_for_the_chip(tmp_path: Path) -> None:
    wrover, s3 = boards.load("esp32-wrover"), boards.load("esp32-s3-n8r8")
    assert esp.check_esp_image(wrover, esp_image(tmp_path / "a.bin", 0)) == 4096
    assert esp.check_esp_image(s3, esp_image(tmp_path / "b.bin", 9)) == 4096
    with pytest.raises(ImageError, match=r"image is for esp32s3, board esp32-wrover is esp32 "
                                         r"\(expected ESP32_GENERIC-SPIRAM-\*\.bin\)"):
        esp.check_esp_image(wrover, tmp_path / "b.bin")
    uf2 = uf2_file(tmp_path / "c.uf2", (RP2040, 2))
    with pytest.raises(ImageError, match="not an ESP firmware image"):
        esp.check_esp_image(s3, uf2)


@needs_esptool
def test_esptool_really_runs_and_fails_clearly_without_an_esp32(tmp_path: Path) -> None:
    """The simulated board answers like MicroPython, not like the ESP32 ROM bootloader: esptool
    runs the erase-flash built from the profile and fails to connect."""
    image = esp_image(tmp_path / "fw.bin", 0)
    lines: list[str] = []
    with SimBoard() as b:
        with pytest.raises(FlashError) as err:
            esp.flash_esp(boards.load("esp32-wrover"), b.port, image, connect_attempts=1,
                            log=lines.append)
    msg = str(err.value)
    assert msg.startswith(f"esptool erase-flash on {b.port} failed: Failed to connect to ESP32")
    assert "download mode" in msg and "\n" not in msg
    assert any("esptool v5" in ln for ln in lines)  # its own output was streamed to the log


@needs_esptool
def test_wrong_image_never_reaches_esptool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(esp, "run_esptool", lambda argv, log=None: calls.append(argv))
    with pytest.raises(ImageError):
        esp.flash_esp(boards.load("esp32-s3-n8r8"), "/dev/null",
                        esp_image(tmp_path / "fw.bin", 0))
    assert calls == []  # nothing erased


# -- UF2 -------------------------------------------------------------------------------------------


def test_uf2_checks(tmp_path: Path) -> None:
    pico, pico2 = boards.load("pico"), boards.load("pico2")
    ok = uf2.check_uf2(pico, uf2_file(tmp_path / "pico.uf2", (RP2040, 5)))
    assert (ok.blocks, ok.payload, ok.families) == (5, 5 * 256, {RP2040: 5})
    # RP2350 images from the SDK start with an 'absolute' block (RP2350-E10 workaround).
    ok2 = uf2.check_uf2(pico2, uf2_file(tmp_path / "p2.uf2", (ABSOLUTE, 1), (RP2350_ARM, 4)))
    assert ok2.families == {ABSOLUTE: 1, RP2350_ARM: 4}
    with pytest.raises(ImageError, match=r"family 0xE48BFF56 is not for RP2350 .*"
                                         r"expected RPI_PICO2-\*\.uf2"):
        uf2.check_uf2(pico2, tmp_path / "pico.uf2")
    with pytest.raises(ImageError, match=r"no block of family 0xE48BFF59"):
        uf2.check_uf2(pico2, uf2_file(tmp_path / "abs.uf2", (ABSOLUTE, 1)))
    blocks = uf2_blocks(RP2040, 4)
    (tmp_path / "trunc.uf2").write_bytes(b"".join(blocks[:3]))
    with pytest.raises(ImageError, match="truncated"):
        uf2.check_uf2(pico, tmp_path / "trunc.uf2")
    (tmp_path / "gap.uf2").write_bytes(blocks[0] + blocks[2] + blocks[1] + blocks[3])
    with pytest.raises(ImageError, match=r"block 1: number 2, expected 1"):
        uf2.check_uf2(pico, tmp_path / "gap.uf2")
    (tmp_path / "magic.uf2").write_bytes(blocks[0][:-4] + b"\0\0\0\0")
    with pytest.raises(ImageError, match="block 0: bad UF2 magic"):
        uf2.check_uf2(pico, tmp_path / "magic.uf2")
    (tmp_path / "odd.uf2").write_bytes(blocks[0] + b"x")
    with pytest.raises(ImageError, match="not a UF2 file"):
        uf2.check_uf2(pico, tmp_path / "odd.uf2")


def test_find_drives_by_board_id(tmp_path: Path) -> None:
    rp2 = drive(tmp_path, "RPI-RP2")
    rp2350 = drive(tmp_path, "RP2350")
    (tmp_path / "USBSTICK").mkdir()
    roots = sorted(tmp_path.iterdir())
    assert [d.path for d in uf2.find_uf2_drives(None, roots)] == [rp2350, rp2]
    found = uf2.find_uf2_drives("RPI-RP2", roots)
    assert [(d.path, d.board_id, d.model) for d in found] == [(rp2, "RPI-RP2",
                                                              "Raspberry Pi RP2")]


@pytest.fixture
def reboot_on_copy() -> Iterator[list[Path]]:
    """Play the bootloader: once a .uf2 lands on a drive in the list, the drive goes away."""
    drives: list[Path] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for d in drives:
                if any(d.glob("*.uf2")) and (d / uf2.INFO_UF2).exists():
                    (d / uf2.INFO_UF2).unlink()
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    yield drives
    stop.set()
    t.join(2)


def test_uf2_copy_into_the_drive(tmp_path: Path, reboot_on_copy: list[Path]) -> None:
    image = uf2_file(tmp_path / "RPI_PICO-v1.28.0.uf2", (RP2040, 8))
    d = drive(tmp_path, "RPI-RP2")
    reboot_on_copy.append(d)
    log: list[str] = []
    assert uf2.flash_uf2(boards.load("pico"), image, roots=[d], log=log.append) is None
    assert (d / image.name).read_bytes() == image.read_bytes()
    assert any("8 UF2 blocks" in ln for ln in log)


def test_uf2_drive_that_stays_means_the_image_was_not_taken(tmp_path: Path) -> None:
    image = uf2_file(tmp_path / "fw.uf2", (RP2040, 2))
    d = drive(tmp_path, "RPI-RP2")
    with pytest.raises(FlashError, match="still mounted .* did not take fw.uf2"):
        uf2.flash_uf2(boards.load("pico"), image, drive=d, timeout=0.3, log=lambda _: None)
    assert (d / "fw.uf2").exists()


def test_uf2_wrong_drive_or_none(tmp_path: Path) -> None:
    image = uf2_file(tmp_path / "fw.uf2", (RP2040, 2))
    other = drive(tmp_path, "RP2350")
    with pytest.raises(ImageError, match=r"Board-ID is RP2350, board pico \(RP2040\) has RPI-RP2"):
        uf2.flash_uf2(boards.load("pico"), image, drive=other, log=lambda _: None)
    with pytest.raises(FlashError, match=r"no RPI-RP2 drive is mounted: hold the BOOTSEL button"
                                         r".*--bootloader"):
        uf2.flash_uf2(boards.load("pico"), image, roots=[other], log=lambda _: None)
    with pytest.raises(ImageError, match="2 RPI-RP2 drives"):
        uf2.flash_uf2(boards.load("pico"), image,
                        roots=[drive(tmp_path, "RPI-RP2", "a"), drive(tmp_path, "RPI-RP2", "b")],
                        log=lambda _: None)


def test_bootloader_request_goes_over_the_serial_port(tmp_path: Path) -> None:
    """--bootloader sends machine.bootloader() through mpremote; the simulated board has no
    bootloader, so no drive appears and the error says how to get there by hand."""
    image = uf2_file(tmp_path / "fw.uf2", (RP2040, 2))
    log: list[str] = []
    with SimBoard() as b:
        with pytest.raises(FlashError, match=r"no RPI-RP2 drive appeared .* machine.bootloader"):
            uf2.flash_uf2(boards.load("pico"), image, port=b.port, bootloader=True,
                            timeout=0.5, roots=[], log=log.append)
        assert f"{b.port}: machine.bootloader()" in log
        # The unix port has no machine.bootloader: its traceback proves the code arrived.
        deadline = time.monotonic() + 10
        while b"bootloader" not in b.recent_output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b"bootloader" in b.recent_output()


def test_cli_flash_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = uf2_file(tmp_path / "fw.uf2", (RP2040, 2))

    def run(*argv: str) -> int:
        return main(["flash", *argv])

    assert run("--board", "nope", "--image", str(image)) == 2
    assert run("--board", "pico", "--image", str(tmp_path / "missing.uf2")) == 2
    assert run("--board", "esp32-wrover", "--image", str(image)) == 2  # no --port
    assert run("--board", "sim", "--image", str(image)) == 2
    assert run("--board", "pico2", "--image", str(image), "--drive",
               str(drive(tmp_path, "RP2350"))) == 2  # RP2040 image, RP2350 board
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 5 and all(ln.startswith("ucompressd: error: ") for ln in err)
    assert run("--board", "pico", "--image", str(image), "--drive",
               str(drive(tmp_path, "RPI-RP2")), "--timeout", "0.2") == 1

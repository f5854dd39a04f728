"""ESP32 boards: check the image with esptool's own image loader, then erase and write with
esptool (v5 command names), and wait for MicroPython's REPL afterwards.

`esptool --chip C --port P erase-flash`, then `esptool --chip C --port P --baud B write-flash
OFFSET IMAGE`, run as `python -m esptool` in a child process: its output streams to the user as
it comes, its exit status is the verdict, and a failure is summed up from its "A fatal error
occurred" line. The image is checked first because the flash is erased first: a wrong image
would leave a blank board.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

from ucompressd.boards import Profile
from ucompressd.flash import FlashError, ImageError, Log, stderr_log
from ucompressd.options import BOOT_TIMEOUT
from ucompressd.session import wait_for_repl

ESP_DOWNLOAD_HINT = (
    "put the board in download mode (hold BOOT/IO0, press and release EN/RESET, release BOOT) "
    "and check --port"
)


def check_esp_image(profile: Profile, image: Path) -> int:
    """Refuse an image that is not an ESP image for this board's chip; return its size.

    The first image in a MicroPython .bin is the bootloader; esptool's own loader reads it
    (magic, segments, extended header with the chip id) as `esptool image-info` does.
    """
    chip = profile.flash.chip
    if profile.flash.method != "esptool" or chip is None:
        raise ImageError(f"board {profile.name} is not flashed with esptool")
    esptool = _esptool()
    from esptool.bin_image import LoadFirmwareImage
    from esptool.targets import CHIP_DEFS

    try:
        data = image.read_bytes()
    except OSError as e:
        raise ImageError(f"{image}: cannot read: {e.strerror or e}") from None
    expect = f"expected {profile.firmware.file_prefix}-*.bin"
    try:
        loaded = LoadFirmwareImage(chip, data)
    except (esptool.FatalError, struct.error, RuntimeError, ValueError, IndexError) as e:
        raise ImageError(f"{image}: not an ESP firmware image ({e}); {expect}") from None
    want = CHIP_DEFS[chip].IMAGE_CHIP_ID
    if loaded.chip_id != want:
        which = next((name for name, rom in CHIP_DEFS.items()
                      if getattr(rom, "IMAGE_CHIP_ID", None) == loaded.chip_id),
                     f"chip id {loaded.chip_id}")
        raise ImageError(f"{image}: image is for {which}, board {profile.name} is {chip} "
                         f"({expect})")
    return len(data)


def _esptool():
    try:
        import esptool
    except ImportError:
        raise ImageError("flashing an ESP32 needs esptool: pip install 'ucompressd[boards]'"
                         ) from None
    return esptool


def esptool_commands(
    profile: Profile,
    port: str,
    image: str | os.PathLike[str],
    *,
    baud: int | None = None,
    erase: bool = True,
    connect_attempts: int | None = None,
) -> list[list[str]]:
    """The esptool argv lists (without the program name) that flash `image` onto the board."""
    f = profile.flash
    if f.method != "esptool" or f.chip is None or f.offset is None:
        raise ImageError(f"board {profile.name} is not flashed with esptool ({f.method})")
    common = ["--chip", f.chip, "--port", port]
    if connect_attempts is not None:
        common += ["--connect-attempts", str(connect_attempts)]
    cmds = []
    if erase:
        cmds.append([*common, "erase-flash"])
    cmds.append([*common, "--baud", str(baud or f.baud), "write-flash", f"{f.offset:#x}",
                 os.fspath(image)])
    return cmds


def run_esptool(argv: list[str], log: Log | None = None) -> None:
    """Run `python -m esptool ARGV`, streaming its output to `log`; FlashError on failure."""
    _esptool()
    log = log or stderr_log
    cmd = next((a for a in argv if not a.startswith("-") and a in _ESPTOOL_COMMANDS), "esptool")
    port = argv[argv.index("--port") + 1] if "--port" in argv else "?"
    tail: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "esptool", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            log(line)
            tail = (tail + [line])[-20:]
        rc = proc.wait()
    if rc != 0:
        fatal = next((ln.split("A fatal error occurred:", 1)[1].strip() for ln in reversed(tail)
                      if "A fatal error occurred:" in ln), None)
        why = fatal or next((ln for ln in reversed(tail) if ln.strip()), f"exit status {rc}")
        hint = f"; {ESP_DOWNLOAD_HINT}" if fatal and "connect" in fatal.lower() else ""
        raise FlashError(f"esptool {cmd} on {port} failed: {why}{hint}")


_ESPTOOL_COMMANDS = {"erase-flash", "write-flash", "chip-id", "flash-id", "read-mac"}


def flash_esp(
    profile: Profile,
    port: str,
    image: Path,
    *,
    baud: int | None = None,
    erase: bool = True,
    connect_attempts: int | None = None,
    boot_timeout: float = BOOT_TIMEOUT,
    log: Log | None = None,
) -> bool:
    """Erase and write the ESP32 board; True when MicroPython answered afterwards."""
    log = log or stderr_log
    size = check_esp_image(profile, image)
    log(f"{image.name}: {size} bytes for {profile.chip}, writing at {profile.flash.offset:#x}")
    for argv in esptool_commands(profile, port, image, baud=baud, erase=erase,
                                 connect_attempts=connect_attempts):
        run_esptool(argv, log)
    # esptool hard-resets the chip after write-flash (--after hard-reset): wait for the REPL.
    return wait_for_repl(port, boot_timeout)

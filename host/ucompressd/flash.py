"""Put MicroPython on a real board: esptool for the ESP32 family, a UF2 copy for RP2.

Both paths check the image against the board profile *before* touching the board (an ESP32
flash is erased first, so a wrong image would leave a blank board): the ESP image header names
its chip, a UF2 file names its family in every block.

ESP32: `esptool --chip C --port P erase-flash`, then `esptool --chip C --port P --baud B
write-flash OFFSET IMAGE` (esptool v5 command names), run as `python -m esptool` in a child
process: its output streams to the user as it comes, its exit status is the verdict, and a
failure is summed up from its "A fatal error occurred" line.

RP2: the BOOTSEL bootloader is a USB drive with INFO_UF2.TXT (Board-ID RPI-RP2 on the RP2040,
RP2350 on the RP2350); copying the .uf2 onto it flashes and reboots the board, and the drive
disappears. When no drive is mounted, `--bootloader` runs `machine.bootloader()` over the serial
port (via mpremote), else we say how to get there by hand.

After either, `wait_for_board` polls until the raw REPL answers instead of sleeping a fixed
time: ESP32 boards print their boot log for a while, and USB CDC ports vanish and come back.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import io
import os
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import serial

from ucompressd import errors
from ucompressd.boards import Profile, ProfileError, load

Log = Callable[[str], None]

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
DEFAULT_BOOT_TIMEOUT = 20.0  # an ESP32 with a big filesystem can take several seconds to boot


class FlashError(RuntimeError):
    """The board or the tool failed (exit status 1)."""


class ImageError(ValueError):
    """The image is not one this board takes, or the arguments are wrong (exit status 2)."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- waiting for MicroPython -----------------------------------------------------------------------


def wait_for_board(port: str, timeout: float = DEFAULT_BOOT_TIMEOUT) -> bool:
    """Poll until MicroPython's raw REPL answers on `port`; True if it did within `timeout`.

    Each attempt interrupts whatever runs (Ctrl-C), asks for the raw REPL (Ctrl-A) and waits up
    to a second for its prompt, then leaves it (Ctrl-B). A port that does not exist yet (USB
    re-enumerating after a reset) is retried. The port stays open between attempts: reopening
    toggles DTR/RTS, which resets some ESP32 boards all over again.
    """
    deadline = time.monotonic() + timeout
    ser: serial.Serial | None = None
    try:
        while True:
            if ser is None:
                try:
                    ser = serial.serial_for_url(port, baudrate=115200, timeout=0.05,
                                                exclusive=True)
                except (serial.SerialException, OSError, ValueError):
                    ser = None
            if ser is not None:
                try:
                    if _raw_repl_answers(ser, min(deadline, time.monotonic() + 1.0)):
                        return True
                except (serial.SerialException, OSError):
                    with contextlib.suppress(Exception):
                        ser.close()
                    ser = None  # unplugged mid-attempt: reopen on the next round
            if time.monotonic() >= deadline:
                return False
            if ser is None:
                time.sleep(0.1)
    finally:
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()


def _raw_repl_answers(ser: serial.Serial, deadline: float) -> bool:
    ser.write(b"\r\x03\x03")
    ser.write(b"\r\x01")
    buf = b""
    while time.monotonic() < deadline:
        buf = (buf + ser.read(ser.in_waiting or 1))[-256:]
        if RAW_PROMPT in buf:
            ser.write(b"\r\x02")  # back to the friendly REPL, as we found it
            return True
    return False


# -- ESP32: esptool --------------------------------------------------------------------------------

ESP_IMAGE_MAGIC = 0xE9
# Chip IDs in the extended image header (esptool's IMAGE_CHIP_ID per chip).
ESP_IMAGE_CHIP_ID = {
    "esp32": 0, "esp32s2": 2, "esp32c3": 5, "esp32s3": 9, "esp32c2": 12, "esp32c6": 13,
    "esp32h2": 16, "esp32p4": 18,
}
ESP_DOWNLOAD_HINT = (
    "put the board in download mode (hold BOOT/IO0, press and release EN/RESET, release BOOT) "
    "and check --port"
)


def check_esp_image(profile: Profile, image: Path) -> int:
    """Refuse an image that is not an ESP application/bootloader image for this chip.

    Returns its size. The first image in a MicroPython .bin is the bootloader: magic 0xE9, and
    the chip ID at byte 12 of its extended header.
    """
    chip = profile.flash.chip
    if profile.flash.method != "esptool" or chip is None:
        raise ImageError(f"board {profile.name} is not flashed with esptool")
    data = _read_head(image, 24)
    if len(data) < 24 or data[0] != ESP_IMAGE_MAGIC:
        raise ImageError(f"{image}: not an ESP firmware image (no 0xE9 magic at the start); "
                         f"expected {profile.firmware.file_prefix}-*.bin")
    chip_id = struct.unpack_from("<H", data, 12)[0]
    expected = ESP_IMAGE_CHIP_ID[chip]
    if chip_id != expected:
        names = {v: k for k, v in ESP_IMAGE_CHIP_ID.items()}
        which = names.get(chip_id, f"chip id {chip_id}")
        raise ImageError(f"{image}: image is for {which}, board {profile.name} is {chip} "
                         f"(expected {profile.firmware.file_prefix}-*.bin)")
    return image.stat().st_size


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
    if importlib.util.find_spec("esptool") is None:
        raise FlashError("esptool is not installed: pip install 'esptool>=5'")
    log = log or _stderr
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
    boot_timeout: float = DEFAULT_BOOT_TIMEOUT,
    log: Log | None = None,
) -> bool:
    """Erase and write the ESP32 board; True when MicroPython answered afterwards."""
    log = log or _stderr
    size = check_esp_image(profile, image)
    log(f"{image.name}: {size} bytes for {profile.chip}, writing at {profile.flash.offset:#x}")
    for argv in esptool_commands(profile, port, image, baud=baud, erase=erase,
                                 connect_attempts=connect_attempts):
        run_esptool(argv, log)
    # esptool hard-resets the chip after write-flash (--after hard-reset): wait for the REPL.
    return wait_for_board(port, boot_timeout)


# -- RP2: UF2 --------------------------------------------------------------------------------------

UF2_MAGIC_START0 = 0x0A324655  # "UF2\n"
UF2_MAGIC_START1 = 0x9E5D5157
UF2_MAGIC_END = 0x0AB16F30
UF2_FLAG_NOT_MAIN_FLASH = 0x00000001
UF2_FLAG_FAMILY_ID = 0x00002000
UF2_BLOCK = 512
INFO_UF2 = "INFO_UF2.TXT"


@dataclass
class Uf2Info:
    blocks: int
    payload: int  # bytes that land in flash
    families: dict[int, int] = field(default_factory=dict)  # family ID -> blocks


def check_uf2(profile: Profile, image: Path) -> Uf2Info:
    """Every block well-formed, numbered, and of a family this board's bootloader takes.

    The profile's first family must be present (an RP2350 image made only of 'absolute' blocks
    carries no program).
    """
    f = profile.flash
    if f.method != "uf2":
        raise ImageError(f"board {profile.name} is not flashed with UF2 ({f.method})")
    try:
        data = image.read_bytes()
    except OSError as e:
        raise ImageError(f"{image}: cannot read: {e.strerror or e}") from None
    if not data or len(data) % UF2_BLOCK:
        raise ImageError(f"{image}: not a UF2 file ({len(data)} bytes is not a whole number of "
                         f"{UF2_BLOCK}-byte blocks)")
    info = Uf2Info(blocks=len(data) // UF2_BLOCK, payload=0)
    main = f.families[0]  # the program's family (the profile lists it first)
    expected_no = 0
    for i in range(info.blocks):
        blk = data[i * UF2_BLOCK:(i + 1) * UF2_BLOCK]
        m0, m1, flags, _addr, size, blockno, nblocks, fam = struct.unpack_from("<8I", blk)
        (mend,) = struct.unpack_from("<I", blk, UF2_BLOCK - 4)
        if (m0, m1, mend) != (UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_MAGIC_END):
            raise ImageError(f"{image}: block {i}: bad UF2 magic numbers")
        if size > 476 or blockno >= nblocks:
            raise ImageError(f"{image}: block {i}: payload {size} or number {blockno}/{nblocks} "
                             "out of range")
        if not flags & UF2_FLAG_FAMILY_ID:
            raise ImageError(f"{image}: block {i}: no family ID; the {profile.chip} bootloader "
                             "ignores such blocks")
        if fam not in f.families:
            raise ImageError(
                f"{image}: block {i}: family 0x{fam:08X} is not for {profile.chip} "
                f"(board {profile.name} takes {', '.join(f'0x{x:08X}' for x in f.families)}; "
                f"expected {profile.firmware.file_prefix}-*.uf2)"
            )
        # Numbering is checked for the program's family only: the RP2350 'absolute' block
        # comes with its own numbering, and concatenated UF2 files are legal.
        if fam == main:
            if blockno != expected_no:
                raise ImageError(f"{image}: block {i}: number {blockno}, expected "
                                 f"{expected_no} (truncated or reordered file?)")
            expected_no = (blockno + 1) % nblocks
        info.families[fam] = info.families.get(fam, 0) + 1
        if not flags & UF2_FLAG_NOT_MAIN_FLASH:
            info.payload += size
    if main not in info.families:
        raise ImageError(f"{image}: no block of family 0x{main:08X}: nothing for the "
                         f"{profile.chip} to run")
    if expected_no != 0:
        raise ImageError(f"{image}: truncated: the last {profile.chip} block is missing")
    return info


@dataclass(frozen=True)
class Uf2Drive:
    path: Path
    board_id: str
    model: str


def read_info_uf2(drive: Path) -> dict[str, str]:
    """INFO_UF2.TXT as a dict ("Board-ID", "Model", ...; the first line under "banner")."""
    text = (drive / INFO_UF2).read_text(errors="replace")
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines()):
        key, sep, value = line.partition(":")
        if sep and n:
            out[key.strip()] = value.strip()
        elif n == 0:
            out["banner"] = line.strip()
    return out


def mount_roots() -> list[Path]:
    """Where desktops mount USB drives (udisks, macOS, plain mounts, Windows drive letters)."""
    pats = ["/media/*/*", "/media/*", "/run/media/*/*", "/Volumes/*", "/mnt/*"]
    roots = [Path(p) for pat in pats for p in glob.glob(pat)]
    if os.name == "nt":
        roots += [Path(f"{c}:\\") for c in "DEFGHIJKLMNOPQRSTUVWXYZ"]
    return roots


def find_uf2_drives(board_id: str | None = None,
                    roots: list[Path] | None = None) -> list[Uf2Drive]:
    """Mounted UF2 bootloader drives (a folder with INFO_UF2.TXT), of `board_id` if given."""
    found = []
    for root in mount_roots() if roots is None else roots:
        try:
            if not (root / INFO_UF2).is_file():
                continue
            info = read_info_uf2(root)
        except OSError:
            continue
        bid = info.get("Board-ID", "")
        if board_id is None or bid == board_id:
            found.append(Uf2Drive(root, bid, info.get("Model", "")))
    return found


def check_drive(profile: Profile, drive: Path) -> Uf2Drive:
    try:
        info = read_info_uf2(drive)
    except OSError:
        raise ImageError(f"--drive {drive}: no {INFO_UF2}: not a UF2 bootloader drive") from None
    bid = info.get("Board-ID", "")
    if bid != profile.flash.board_id:
        raise ImageError(f"--drive {drive}: bootloader Board-ID is {bid or 'missing'}, board "
                         f"{profile.name} ({profile.chip}) has {profile.flash.board_id}")
    return Uf2Drive(drive, bid, info.get("Model", ""))


def copy_uf2(image: Path, drive: Path, wait: float = 10.0) -> bool:
    """Copy the image onto the drive; True when the drive went away (the board took it and
    rebooted) within `wait` seconds.

    The bootloader reboots the moment the last block lands, so the final flush may fail with
    an I/O error; that counts as success once the drive is gone.
    """
    data = image.read_bytes()
    dest = drive / image.name
    try:
        with open(dest, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if _drive_present(drive):
            raise FlashError(f"copying {image.name} to {drive} failed: {e.strerror or e}") from e
        return True
    deadline = time.monotonic() + wait
    while _drive_present(drive):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _drive_present(drive: Path) -> bool:
    try:
        return (drive / INFO_UF2).is_file()
    except OSError:
        return False


def enter_bootloader(port: str) -> None:
    """`machine.bootloader()` over the serial port: an RP2 board drops into BOOTSEL."""
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):  # mpremote prints raw data on failures
            t = SerialTransport(port, baudrate=115200)
            try:
                t.enter_raw_repl(soft_reset=False)
                # No reply will come: the board leaves USB CDC for the bootloader.
                t.exec_raw_no_follow("import machine\nmachine.bootloader()")
            finally:
                with contextlib.suppress(Exception):
                    t.close()
    except (TransportError, serial.SerialException, OSError) as e:
        extra = out.getvalue().strip()[-200:]
        raise FlashError(f"cannot reach MicroPython on {port} to enter the bootloader: {e}"
                         + (f" ({extra})" if extra else "")) from None


def bootsel_help(profile: Profile) -> str:
    return (
        f"no {profile.flash.board_id} drive is mounted: hold the BOOTSEL button while plugging "
        f"the {profile.title} in (USB {profile.flash.bootsel_usb}, a drive named "
        f"{profile.flash.board_id} appears), or pass --bootloader --port PORT to send "
        "machine.bootloader() to a running MicroPython; --drive PATH if it mounts elsewhere"
    )


def flash_uf2(
    profile: Profile,
    image: Path,
    *,
    port: str | None = None,
    drive: Path | None = None,
    bootloader: bool = False,
    timeout: float = 10.0,
    boot_timeout: float = DEFAULT_BOOT_TIMEOUT,
    roots: list[Path] | None = None,
    log: Log | None = None,
) -> bool | None:
    """Copy the UF2 onto the board's BOOTSEL drive. Returns whether MicroPython answered on
    `port` afterwards (None without a port)."""
    log = log or _stderr
    info = check_uf2(profile, image)
    fams = ", ".join(f"0x{k:08X} x{v}" for k, v in info.families.items())
    log(f"{image.name}: {info.blocks} UF2 blocks, {info.payload} bytes ({fams})")
    if drive is not None:
        target = check_drive(profile, drive)
    else:
        board_id = profile.flash.board_id
        drives = find_uf2_drives(board_id, roots)
        if not drives and bootloader:
            if not port:
                raise ImageError("--bootloader needs --port: the serial port of the running "
                                 "board")
            log(f"{port}: machine.bootloader()")
            enter_bootloader(port)
            deadline = time.monotonic() + timeout
            while not drives and time.monotonic() < deadline:
                time.sleep(0.2)
                drives = find_uf2_drives(board_id, roots)
            if not drives:
                raise FlashError(f"no {board_id} drive appeared within {timeout:.0f}s of "
                                 "machine.bootloader(); " + bootsel_help(profile))
        if not drives:
            raise FlashError(bootsel_help(profile))
        if len(drives) > 1:
            raise ImageError(f"{len(drives)} {board_id} drives are mounted ("
                             + ", ".join(str(d.path) for d in drives) + "): pick one with --drive")
        target = drives[0]
    log(f"copying to {target.path} ({target.model or target.board_id})")
    if not copy_uf2(image, target.path, timeout):
        raise FlashError(f"{target.path} is still mounted {timeout:.0f}s after the copy: the "
                         f"bootloader did not take {image.name}")
    if port is None:
        return None
    return wait_for_board(port, boot_timeout)


def _read_head(image: Path, n: int) -> bytes:
    try:
        with open(image, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise ImageError(f"{image}: cannot read: {e.strerror or e}") from None


# -- CLI: `ucompressd flash` -----------------------------------------------------------------------


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The `flash` subcommand's options."""
    ap.add_argument("--board", required=True, metavar="NAME",
                    help="board profile (ucompressd boards lists them)")
    ap.add_argument("--image", required=True, metavar="FILE",
                    help="MicroPython firmware: .bin for ESP32 boards, .uf2 for RP2 boards")
    ap.add_argument("--port", metavar="PORT",
                    help="serial port (ESP32: required; RP2: for --bootloader and to wait for "
                         "MicroPython afterwards)")
    ap.add_argument("--drive", metavar="DIR", help="RP2: the mounted BOOTSEL drive, if not found")
    ap.add_argument("--bootloader", action="store_true",
                    help="RP2: no drive mounted? send machine.bootloader() over --port first")
    ap.add_argument("--baud", type=int, metavar="N", help="ESP32: baud rate for write-flash")
    ap.add_argument("--no-erase", action="store_true",
                    help="ESP32: write without erasing the whole flash first (keeps the "
                         "filesystem)")
    ap.add_argument("--timeout", type=float, default=DEFAULT_BOOT_TIMEOUT, metavar="S",
                    help="seconds to wait for the drive / for MicroPython after flashing "
                         "(default %(default)s)")


def run(args: argparse.Namespace) -> int:
    """`ucompressd flash`: 0 flashed (and MicroPython answered, if it could be asked),
    1 the board or tool failed, 2 bad arguments or an image that does not fit the board."""
    try:
        profile = load(args.board)
        image = Path(args.image)
        if not image.is_file():
            raise ImageError(f"--image: {image} does not exist")
        if profile.flash.method == "esptool":
            if not args.port:
                raise ImageError(f"--port is required to flash {profile.name} with esptool")
            answered: bool | None = flash_esp(
                profile, args.port, image, baud=args.baud, erase=not args.no_erase,
                boot_timeout=args.timeout)
        elif profile.flash.method == "uf2":
            answered = flash_uf2(
                profile, image, port=args.port, drive=Path(args.drive) if args.drive else None,
                bootloader=args.bootloader, timeout=args.timeout, boot_timeout=args.timeout)
        else:
            raise ImageError(f"board {profile.name} has nothing to flash ({profile.title})")
    except (ProfileError, ImageError) as e:
        return errors.usage(e)
    except FlashError as e:
        return errors.failed(e)
    if answered is False:
        print(f"ucompressd: flashed, but MicroPython did not answer on {args.port} within "
              f"{args.timeout:.0f}s", file=sys.stderr)
        return 1
    where = f"; MicroPython answers on {args.port}" if answered else ""
    print(f"flashed {image.name} onto {profile.name}{where}")
    return 0

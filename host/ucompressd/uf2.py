"""RP2 boards: the BOOTSEL bootloader is a USB drive with INFO_UF2.TXT (Board-ID RPI-RP2 on the
RP2040, RP2350 on the RP2350); copying the .uf2 onto it flashes and reboots the board, and the
drive disappears. When no drive is mounted, `--bootloader` runs `machine.bootloader()` over the
serial port, else we say how to get there by hand. The image is checked against the profile
first: a UF2 file names its family in every block.
"""

from __future__ import annotations

import glob
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from ucompressd.boards import Profile
from ucompressd.flash import FlashError, ImageError, Log, stderr_log
from ucompressd.options import BOOT_TIMEOUT
from ucompressd.session import BoardError, PortError, Session, wait_for_repl

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


def enter_bootloader(port: str, timeout: float = 10.0) -> None:
    """`machine.bootloader()` over the serial port: an RP2 board drops into BOOTSEL."""
    try:
        with Session(port, timeout) as s:
            s.enter_raw_repl(soft_reset=False)
            # No reply will come: the board leaves USB CDC for the bootloader.
            s.start("import machine\nmachine.bootloader()", "entering the bootloader")
    except (BoardError, PortError) as e:
        raise FlashError(f"cannot reach MicroPython on {port} to enter the bootloader: {e}"
                         ) from None


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
    boot_timeout: float = BOOT_TIMEOUT,
    roots: list[Path] | None = None,
    log: Log | None = None,
) -> bool | None:
    """Copy the UF2 onto the board's BOOTSEL drive. Returns whether MicroPython answered on
    `port` afterwards (None without a port)."""
    log = log or stderr_log
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
    return wait_for_repl(port, boot_timeout)

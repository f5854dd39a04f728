"""`ucompressd flash`: put MicroPython on a real board: esptool for the ESP32 family (esp.py),
a UF2 copy for RP2 (uf2.py). Both check the image against the board profile *before* touching
the board; afterwards we poll until the raw REPL answers instead of sleeping a fixed time (ESP32
boards print their boot log for a while, and USB CDC ports vanish and come back).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from ucompressd import options
from ucompressd.boards import load
from ucompressd.errors import Failure, InputError

Log = Callable[[str], None]


class FlashError(Failure):
    """The board or the tool failed (exit status 1)."""


class ImageError(InputError):
    """The image is not one this board takes, or the arguments are wrong (exit status 2)."""


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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
    options.add_timeout(ap, options.BOOT_TIMEOUT,
                        "seconds to wait for the drive / for MicroPython after flashing")


def run(args: argparse.Namespace) -> int:
    """`ucompressd flash`: flashed (and MicroPython answered, if it could be asked), or raises
    FlashError (the board or tool failed) / ImageError (bad arguments or image)."""
    profile = load(args.board)
    image = Path(args.image)
    if not image.is_file():
        raise ImageError(f"--image: {image} does not exist")
    if profile.flash.method == "esptool":
        from ucompressd.esp import flash_esp

        if not args.port:
            raise ImageError(f"--port is required to flash {profile.name} with esptool")
        answered: bool | None = flash_esp(
            profile, args.port, image, baud=args.baud, erase=not args.no_erase,
            boot_timeout=args.timeout)
    elif profile.flash.method == "uf2":
        from ucompressd.uf2 import flash_uf2

        answered = flash_uf2(
            profile, image, port=args.port, drive=Path(args.drive) if args.drive else None,
            bootloader=args.bootloader, timeout=args.timeout, boot_timeout=args.timeout)
    else:
        raise ImageError(f"board {profile.name} has nothing to flash ({profile.title})")
    if answered is False:
        raise FlashError(f"flashed, but MicroPython did not answer on {args.port} within "
                         f"{args.timeout:g} s")
    where = f"; MicroPython answers on {args.port}" if answered else ""
    print(f"flashed {image.name} onto {profile.name}{where}")
    return 0

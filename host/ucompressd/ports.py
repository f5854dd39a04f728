"""Serial ports attached to this machine, and the board profiles each may be (USB VID:PID and
serial-number patterns from boards/*.json); `ucompressd ports`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ucompressd.boards import Profile, all_profiles


@dataclass(frozen=True)
class PortMatch:
    device: str
    usb: str | None  # "VID:PID" or None for a port without USB ids (pty, rfc2217, built-in UART)
    serial_number: str | None
    description: str
    profiles: tuple[str, ...]  # candidate boards, best first (several share one USB-UART)


def match_port(info: Any, profiles: dict[str, Profile] | None = None) -> PortMatch:
    """Which profiles fit one serial port (a serial.tools.list_ports ListPortInfo, or anything
    with device/vid/pid/serial_number/description). VID:PID must match; a profile that gives a
    serial-number pattern must match that too."""
    profiles = all_profiles() if profiles is None else profiles
    vid, pid = getattr(info, "vid", None), getattr(info, "pid", None)
    serial = getattr(info, "serial_number", None)
    names = tuple(
        n for n, p in profiles.items() if any(u.matches(vid, pid, serial) for u in p.usb)
    )
    usb = f"{vid:04X}:{pid:04X}" if vid is not None and pid is not None else None
    desc = getattr(info, "description", None) or getattr(info, "product", None) or ""
    return PortMatch(info.device, usb, serial, desc if desc != "n/a" else "", names)


def attached_ports(profiles: dict[str, Profile] | None = None) -> list[PortMatch]:
    """The serial ports on this machine, each with the profiles it may be."""
    from serial.tools import list_ports

    profiles = all_profiles() if profiles is None else profiles
    return [match_port(i, profiles) for i in sorted(list_ports.comports(), key=lambda i: i.device)]



def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The `ports` subcommand's options."""
    ap.add_argument("--all", action="store_true",
                    help="also list ports that match no profile")


def run(args: argparse.Namespace) -> int:
    """`ucompressd ports`: attached serial ports and the profiles they may be."""
    from rich.console import Console
    from rich.table import Table

    matches = attached_ports()
    shown = [m for m in matches if m.profiles or getattr(args, "all", False)]
    console = Console()
    if not shown:
        hidden = len(matches) - len(shown)
        more = f" ({hidden} other ports: --all lists them)" if hidden else ""
        console.print(f"no serial port matches a board profile{more}", highlight=False)
        return 0
    t = Table(title="Serial ports")
    for col in ("port", "VID:PID", "serial number", "description", "board"):
        t.add_column(col, no_wrap=col in ("port", "VID:PID"))
    for m in shown:
        t.add_row(m.device, m.usb or "-", m.serial_number or "-", m.description or "-",
                  " | ".join(m.profiles) or "-")
    console.print(t)
    return 0

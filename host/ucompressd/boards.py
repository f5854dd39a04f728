"""Board profiles: one JSON file per board in boards/, loaded and validated here.

A profile is data, not code, so that the firmware could read it too (plain JSON, sizes in bytes,
hex strings where a datasheet writes hex). Validation is hand-written against a small fixed
schema. A JSON Schema (jsonschema) was weighed and not taken: it would replace only the type and
range checks of a dozen fields (about a third of _Validator), while the checks that matter are
cross-field ones it cannot express (the defaults must fit the heap, the flash method must match
the MicroPython port and decide which flash fields belong, the mpy architecture must match the
chip, the UF2 families must be the chip's), and its messages (a JSON path and the failed
keyword) would lose the "did you mean" hints; a new dependency for a third of the code is not
worth it. Every problem is one ProfileError "FILE: field: problem" (exit status 2).

What a profile sets for a run (`--board NAME`): its `defaults` (run knobs; flags override), and
for a board started here (experiment.open_board, by `kind`) the heap. Sizes are checked by the
same arithmetic the host uses before a run (sizing.py), in the board's machine words.

Where the files are: in a source checkout, boards/ at the repository root (the documented
location). An installed package carries the same files as the package data `ucompressd.profiles`
(pyproject maps that package to boards/), so both cases read one set of files.

The `defaults` are run knobs (ucz.runner), checked by ucz.runner.config itself: the firmware's
own rules, one definition on both sides.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ucompressd.errors import InputError
from ucompressd import sizing

ENV_BOARDS = "UCOMPRESSD_BOARDS"  # extra profile folder, searched first (a user's own boards)

PORTS = ("rp2", "esp32", "unix")  # MicroPython ports we have profiles for
FLASH_METHOD = {"rp2": "uf2", "esp32": "esptool", "unix": "none"}
PORT_CHIPS = {"rp2": ("RP2040", "RP2350"), "esp32": ("ESP32", "ESP32-S2", "ESP32-S3"), "unix": ()}
FIRMWARE_FORMAT = {"uf2": "uf2", "esptool": "bin", "none": "none"}
# mpy-cross -march names, in the order of sys.implementation._mpy's arch field (bits 10+).
MPY_ARCHS = (
    None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
    "xtensa", "xtensawin", "rv32imc", "rv64imc",
)
WIDE_ARCHS = ("x64", "rv64imc")  # 64-bit words: 8-byte objects, 63-bit small ints
# The architecture MicroPython's native emitter uses on each chip (viper code is compiled for it).
CHIP_ARCH = {
    "RP2040": "armv6m", "RP2350": "armv7emsp", "ESP32": "xtensawin", "ESP32-S3": "xtensawin",
    "ESP32-S2": "xtensawin",
}
# esptool --chip names of the chips above.
ESPTOOL_CHIP = {"ESP32": "esp32", "ESP32-S2": "esp32s2", "ESP32-S3": "esp32s3"}
# UF2 family IDs (uf2families.json): what each RP2 chip's bootloader accepts.
UF2_FAMILIES = {
    "RP2040": {0xE48BFF56},
    # rp2350-arm-s, rp2350-riscv, rp2350-arm-ns; "absolute" (0xE48BFF57) blocks precede them in
    # SDK-built images (RP2350-E10 workaround); "data" (0xE48BFF58).
    "RP2350": {0xE48BFF59, 0xE48BFF5A, 0xE48BFF5B, 0xE48BFF57, 0xE48BFF58},
}
BOOTSEL_BOARD_ID = {"RP2040": "RPI-RP2", "RP2350": "RP2350"}

MAX_MEMORY = 64 << 20  # no MCU board we know has more SRAM or PSRAM than this
DEFAULT_KEYS = ("page_size", "pages", "frames", "zpool", "ring", "compressor")

_USB_ID = re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class ProfileError(InputError):
    """A profile that cannot be used: "FILE: field: problem", or an unknown board name."""


@dataclass(frozen=True)
class UsbId:
    vid: int
    pid: int
    what: str
    serial: str | None = None  # regex the USB serial number matches (None: any)

    def __str__(self) -> str:
        return f"{self.vid:04X}:{self.pid:04X}"

    def matches(self, vid: int | None, pid: int | None, serial: str | None) -> bool:
        if (vid, pid) != (self.vid, self.pid):
            return False
        return self.serial is None or bool(serial and re.search(self.serial, serial))


@dataclass(frozen=True)
class Firmware:
    name: str  # MicroPython board name (micropython.org/download/NAME) or the vendor's build
    format: str  # uf2 | bin | none
    url: str
    variant: str | None = None

    @property
    def file_prefix(self) -> str:
        """How the download is named: BOARD[-VARIANT]-DATE-vX.Y.Z.ext."""
        return self.name + (f"-{self.variant}" if self.variant else "")


@dataclass(frozen=True)
class Flash:
    method: str  # uf2 | esptool | none
    chip: str | None = None  # esptool --chip
    offset: int | None = None  # esptool write-flash address
    baud: int | None = None
    board_id: str | None = None  # INFO_UF2.TXT Board-ID of the BOOTSEL drive
    families: tuple[int, ...] = ()  # UF2 family IDs the image may carry; the program's first
    bootsel_usb: UsbId | None = None


@dataclass(frozen=True)
class Memory:
    sram: int
    psram: int
    heap: int  # Python heap the firmware sees (gc.mem_free() at boot, about)


@dataclass(frozen=True)
class Threads:
    cores: int
    gil: bool
    max_threads: int | None  # extra threads _thread allows (None: memory-bound)
    note: str

    @property
    def parallel(self) -> bool:
        """A compressor thread runs beside the app (second core, no GIL)."""
        return self.cores > 1 and not self.gil and self.max_threads != 0


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    chip: str
    port: str
    firmware: Firmware
    mpy_arch: str
    flash: Flash
    usb: tuple[UsbId, ...]
    memory: Memory
    threads: Threads
    defaults: dict[str, Any] = field(hash=False)
    notes: str = ""
    path: Path | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        """How a board of this profile is started when no --port is given (experiment.open_board):
        "sim" the MicroPython unix port behind a pty; "real" a board only a --port reaches (a
        simulated board with its heap stands in)."""
        return "sim" if self.port == "unix" else "real"

    def config(self) -> dict[str, Any]:
        """The run configuration these defaults give (ucz.runner.config filled in)."""
        from ucz import runner

        return runner.config(dict(self.defaults))

    @property
    def word(self) -> int:
        """Bytes per machine word of the board's MicroPython."""
        return 8 if self.mpy_arch in WIDE_ARCHS else 4

    def heap_needed(self) -> int:
        """Heap bytes a run with the defaults takes: arena + pool metadata + the firmware."""
        return heap_needed(self.config(), self.word)


def heap_needed(cfg: dict[str, Any], word: int = sizing.WORD) -> int:
    """Heap a run with `cfg` takes on a board with nothing else loaded: its preallocations
    (sizing.heap_needed, the firmware's own arithmetic), what the run allocates beside them,
    and the firmware itself (both in machine words of `word` bytes)."""
    return sizing.heap_needed(cfg) + sizing.run_slack(cfg, word) + sizing.firmware_heap(word)


# -- where profiles live ---------------------------------------------------------------------------


def profile_dirs() -> list[Path]:
    """Folders searched for NAME.json, first match wins: $UCOMPRESSD_BOARDS, the installed package
    data, the source checkout's boards/."""
    dirs: list[Path] = []
    extra = os.environ.get(ENV_BOARDS)
    if extra:
        dirs.append(Path(extra))
    # Installed: the package data sits next to this module (no import needed: it is a folder
    # of JSON files, a namespace package at most). In a checkout it does not exist there.
    installed = Path(__file__).resolve().parent / "profiles"
    if installed.is_dir():
        dirs.append(installed)
    checkout = Path(__file__).resolve().parents[2] / "boards"
    if checkout.is_dir():
        dirs.append(checkout)
    unique: list[Path] = []
    for d in dirs:
        if d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def profile_paths() -> dict[str, Path]:
    """Every profile file by board name (earlier folders shadow later ones)."""
    found: dict[str, Path] = {}
    for d in reversed(profile_dirs()):
        for p in sorted(d.glob("*.json")):
            found[p.stem] = p
    return dict(sorted(found.items()))


def load(name: str | os.PathLike[str]) -> Profile:
    """A profile by board name (e.g. "pico2") or by path to a .json file; validated."""
    s = os.fspath(name)
    if s.endswith(".json") or os.sep in s:
        return load_file(Path(s))
    paths = profile_paths()
    if s not in paths:
        hint = difflib.get_close_matches(s, list(paths), n=1)
        also = f" (did you mean {hint[0]}?)" if hint else ""
        raise ProfileError(f"unknown board {s!r}{also}; known: {', '.join(paths) or 'none'}")
    return load_file(paths[s])


def all_profiles() -> dict[str, Profile]:
    """Every profile, validated (the first broken one raises)."""
    return {n: load_file(p) for n, p in profile_paths().items()}


def load_file(path: Path) -> Profile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ProfileError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProfileError(f"{path}: line {e.lineno} column {e.colno}: {e.msg}") from None
    return _Validator(path).profile(doc)


# -- validation ------------------------------------------------------------------------------------


class _Validator:
    """Checks one parsed profile; every error names the file and the dotted field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> ProfileError:
        return ProfileError(f"{self.path}: {where}: {problem}")

    def obj(self, doc: Any, where: str, required: Iterable[str], optional: Iterable[str] = ()
            ) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise self.fail(where or "profile", f"must be an object, not {_kind(doc)}")
        required, optional = tuple(required), tuple(optional)
        known = required + optional
        for key in doc:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                also = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise self.fail(_join(where, key), f"unknown field{also}")
        for key in required:
            if key not in doc:
                raise self.fail(_join(where, key), "missing")
        return doc

    def str_(self, doc: dict[str, Any], key: str, where: str, *, choices: Iterable[str] = (),
             pattern: re.Pattern[str] | None = None) -> str:
        v = doc[key]
        w = _join(where, key)
        if not isinstance(v, str) or not v.strip():
            raise self.fail(w, f"must be a non-empty string, not {_kind(v)}")
        choices = tuple(choices)
        if choices and v not in choices:
            hint = difflib.get_close_matches(v, choices, n=1)
            also = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise self.fail(w, f"{v!r} is not one of {', '.join(choices)}{also}")
        if pattern is not None and not pattern.match(v):
            raise self.fail(w, f"{v!r} does not match {pattern.pattern}")
        return v

    def int_(self, v: Any, w: str, lo: int, hi: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(w, f"must be an integer, not {_kind(v)}")
        if not lo <= v <= hi:
            raise self.fail(w, f"{v} is out of range {lo}..{hi}")
        return v

    def hex_(self, v: Any, w: str, lo: int, hi: int) -> int:
        """A hex string like "0x1000" (or a plain integer)."""
        if isinstance(v, str):
            try:
                n = int(v, 16) if v.lower().startswith("0x") else int(v, 10)
            except ValueError:
                raise self.fail(w, f"{v!r} is not a number (write hex as \"0x1000\")") from None
            return self.int_(n, w, lo, hi)
        return self.int_(v, w, lo, hi)

    def usb_id(self, v: Any, w: str) -> tuple[int, int]:
        if not isinstance(v, str) or not _USB_ID.match(v):
            raise self.fail(w, f"{v!r} is not a USB VID:PID like \"2E8A:0005\"")
        vid, pid = v.split(":")
        return int(vid, 16), int(pid, 16)

    def profile(self, doc: Any) -> Profile:
        top = self.obj(
            doc, "",
            ("name", "title", "chip", "port", "firmware", "mpy_arch", "flash", "usb", "memory",
             "threads", "defaults"),
            ("notes",),
        )
        name = self.str_(top, "name", "", pattern=_NAME)
        if name != self.path.stem:
            raise self.fail("name", f"{name!r} differs from the file name {self.path.stem!r}")
        title = self.str_(top, "title", "")
        chip = self.str_(top, "chip", "")
        port = self.str_(top, "port", "", choices=PORTS)
        if port != "unix" and chip not in PORT_CHIPS[port]:
            raise self.fail("chip", f"{chip!r} is not a chip of the {port} port "
                                    f"({', '.join(PORT_CHIPS[port])})")
        arch = self.str_(top, "mpy_arch", "", choices=[a for a in MPY_ARCHS if a])
        if port != "unix" and arch != CHIP_ARCH[chip]:
            raise self.fail("mpy_arch", f"{arch!r} is wrong for {chip}: its native emitter "
                                        f"is {CHIP_ARCH[chip]}")
        flash = self.flash(top["flash"], port, chip)
        firmware = self.firmware(top["firmware"], flash.method)
        usb = self.usb(top["usb"], port)
        memory = self.memory(top["memory"])
        threads = self.threads(top["threads"])
        word = 8 if arch in WIDE_ARCHS else 4
        defaults = self.defaults(top["defaults"], memory, threads, word)
        notes = self.str_(top, "notes", "") if "notes" in top else ""
        return Profile(name, title, chip, port, firmware, arch, flash, usb, memory, threads,
                       defaults, notes, self.path)

    def firmware(self, doc: Any, method: str) -> Firmware:
        d = self.obj(doc, "firmware", ("name", "format", "url"), ("variant",))
        name = self.str_(d, "name", "firmware", pattern=re.compile(r"^[A-Za-z0-9_.-]+$"))
        fmt = self.str_(d, "format", "firmware", choices=("uf2", "bin", "none"))
        if fmt != FIRMWARE_FORMAT[method]:
            raise self.fail("firmware.format",
                            f"{fmt!r} cannot be flashed by {method!r}: "
                            f"use {FIRMWARE_FORMAT[method]!r}")
        url = self.str_(d, "url", "firmware", pattern=re.compile(r"^https://\S+$"))
        variant = self.str_(d, "variant", "firmware") if "variant" in d else None
        return Firmware(name, fmt, url, variant)

    def flash(self, doc: Any, port: str, chip: str) -> Flash:
        if not isinstance(doc, dict):
            raise self.fail("flash", f"must be an object, not {_kind(doc)}")
        if "method" not in doc:  # the method decides which other fields belong
            raise self.fail("flash.method", "missing")
        method = self.str_(doc, "method", "flash", choices=("uf2", "esptool", "none"))
        if method != FLASH_METHOD[port]:
            raise self.fail("flash.method", f"{method!r} does not flash a {port} board: "
                                            f"use {FLASH_METHOD[port]!r}")
        if method == "esptool":
            d = self.obj(doc, "flash", ("method", "chip", "offset", "baud"))
            echip = self.str_(d, "chip", "flash", choices=sorted(set(ESPTOOL_CHIP.values())))
            if echip != ESPTOOL_CHIP[chip]:
                raise self.fail("flash.chip", f"{echip!r} is not {chip} (esptool calls it "
                                              f"{ESPTOOL_CHIP[chip]!r})")
            offset = self.hex_(d["offset"], "flash.offset", 0, (16 << 20) - 1)
            if offset % 0x1000:
                raise self.fail("flash.offset", f"{offset:#x} is not on a 4 KiB flash sector")
            baud = self.int_(d["baud"], "flash.baud", 9600, 5_000_000)
            return Flash(method, chip=echip, offset=offset, baud=baud)
        if method == "uf2":
            d = self.obj(doc, "flash", ("method", "board_id", "families", "bootsel_usb"))
            board_id = self.str_(d, "board_id", "flash", choices=(BOOTSEL_BOARD_ID[chip],))
            fams = d["families"]
            if not isinstance(fams, list) or not fams:
                raise self.fail("flash.families", "must be a non-empty list of UF2 family IDs")
            families = tuple(
                self.hex_(f, f"flash.families[{i}]", 0, 0xFFFFFFFF) for i, f in enumerate(fams)
            )
            for i, f in enumerate(families):
                if f not in UF2_FAMILIES[chip]:
                    raise self.fail(f"flash.families[{i}]",
                                    f"{f:#010x} is not a UF2 family of the {chip}")
            vid, pid = self.usb_id(d["bootsel_usb"], "flash.bootsel_usb")
            return Flash(method, board_id=board_id, families=families,
                         bootsel_usb=UsbId(vid, pid, f"{chip} BOOTSEL"))
        self.obj(doc, "flash", ("method",))
        return Flash(method)

    def usb(self, doc: Any, port: str) -> tuple[UsbId, ...]:
        if not isinstance(doc, list):
            raise self.fail("usb", f"must be a list, not {_kind(doc)}")
        if port != "unix" and not doc:
            raise self.fail("usb", "a USB board needs at least one VID:PID to be detected")
        out = []
        for i, item in enumerate(doc):
            w = f"usb[{i}]"
            d = self.obj(item, w, ("id", "what"), ("serial",))
            vid, pid = self.usb_id(d["id"], f"{w}.id")
            what = self.str_(d, "what", w)
            serial = None
            if "serial" in d:
                serial = self.str_(d, "serial", w)
                try:
                    re.compile(serial)
                except re.error as e:
                    raise self.fail(f"{w}.serial", f"bad regular expression: {e}") from None
            out.append(UsbId(vid, pid, what, serial))
        return tuple(out)

    def memory(self, doc: Any) -> Memory:
        d = self.obj(doc, "memory", ("sram", "psram", "heap"))
        sram = self.int_(d["sram"], "memory.sram", 16 << 10, MAX_MEMORY)
        psram = self.int_(d["psram"], "memory.psram", 0, MAX_MEMORY)
        heap = self.int_(d["heap"], "memory.heap", 16 << 10, MAX_MEMORY)
        if heap > sram + psram:
            raise self.fail("memory.heap", f"{heap} bytes is more than sram + psram "
                                           f"({sram + psram} bytes)")
        return Memory(sram, psram, heap)

    def threads(self, doc: Any) -> Threads:
        d = self.obj(doc, "threads", ("cores", "gil", "max_threads", "note"))
        cores = self.int_(d["cores"], "threads.cores", 1, 64)
        if not isinstance(d["gil"], bool):
            raise self.fail("threads.gil", f"must be true or false, not {_kind(d['gil'])}")
        mt = d["max_threads"]
        max_threads = None if mt is None else self.int_(mt, "threads.max_threads", 0, 1024)
        note = self.str_(d, "note", "threads")
        return Threads(cores, d["gil"], max_threads, note)

    def defaults(self, doc: Any, memory: Memory, threads: Threads, word: int
                 ) -> dict[str, Any]:
        d = self.obj(doc, "defaults", DEFAULT_KEYS)
        from ucz import runner

        try:
            cfg = runner.config(dict(d))
        except ValueError as e:  # "<knob>: <problem>", the firmware's own wording
            key, _, problem = str(e).partition(": ")
            raise self.fail(f"defaults.{key}", problem or str(e)) from None
        if d["compressor"] == "thread":
            if threads.max_threads == 0:
                raise self.fail("defaults.compressor", "'thread' on a board without threads")
            if threads.gil:
                raise self.fail("defaults.compressor",
                                "'thread' under a GIL never runs beside the app, it only "
                                "contends for the GIL: use 'task'")
        need = heap_needed(cfg, word)
        if need > memory.heap:
            raise self.fail(
                "defaults",
                f"need {need} bytes of heap (arena of {cfg['frames']} frames x "
                f"{cfg['page_size']} + zpool {cfg['zpool']}, metadata, "
                f"{sizing.run_slack(cfg, word)} for the run and {sizing.firmware_heap(word)} "
                f"for the firmware) but memory.heap is {memory.heap}",
            )
        return dict(d)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "an integer", float: "a number"}.get(type(v), type(v).__name__)


# -- CLI: `ucompressd boards` and `ucompressd ports` -----------------------------------------------


def _size(n: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.1f} {unit}" if v != int(v) else f"{int(v)} {unit}"
    return f"{n} B" if n else "-"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The `boards` subcommand's options."""
    ap.add_argument("--show", metavar="NAME", help="one profile in full, with its derived values")


def run(args: argparse.Namespace) -> int:
    """`ucompressd boards`: list the profiles, or --show one. Exit 2 on a broken profile."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if args.show:
        console.print(_show(load(args.show)), highlight=False)
        return 0
    profiles = all_profiles()
    t = Table(title="Board profiles")
    t.add_column("board", no_wrap=True)
    for col in ("chip", "firmware", "mpy arch", "SRAM", "PSRAM", "heap", "compressor"):
        t.add_column(col)
    for p in profiles.values():
        t.add_row(p.name, p.chip, p.firmware.file_prefix, p.mpy_arch, _size(p.memory.sram),
                  _size(p.memory.psram), _size(p.memory.heap), p.defaults["compressor"])
    console.print(t)
    return 0


def _show(p: Profile) -> str:
    cfg = p.config()
    f = p.flash
    if f.method == "esptool":
        how = f"esptool --chip {f.chip}, write-flash at {f.offset:#x}, {f.baud} baud"
    elif f.method == "uf2":
        how = (f"copy the .uf2 to the {f.board_id} drive (BOOTSEL {f.bootsel_usb}); families "
               + ", ".join(f"0x{x:08X}" for x in f.families))
    else:
        how = "nothing to flash"
    lines = [
        f"{p.name}: {p.title}",
        f"  file          {p.path}",
        f"  chip          {p.chip} ({p.port} port), mpy-cross -march={p.mpy_arch}",
        f"  firmware      {p.firmware.file_prefix} ({p.firmware.format}) {p.firmware.url}",
        f"  flash         {how}",
        "  usb           " + ("; ".join(f"{u} {u.what}" for u in p.usb) or "-"),
        f"  memory        SRAM {_size(p.memory.sram)}, PSRAM {_size(p.memory.psram)}, "
        f"heap {_size(p.memory.heap)}",
        f"  threads       {p.threads.cores} cores, GIL: {'yes' if p.threads.gil else 'no'}, "
        f"extra threads: {p.threads.max_threads if p.threads.max_threads is not None else 'any'}"
        f" -> compressor thread {'parallel' if p.threads.parallel else 'not parallel'}",
        f"                {p.threads.note}",
        "  defaults      " + ", ".join(f"{k}={p.defaults[k]}" for k in DEFAULT_KEYS),
        f"  heap use      {_size(p.heap_needed())} of {_size(p.memory.heap)} "
        f"(arena, metadata, {_size(sizing.run_slack(cfg, p.word))} run, "
        f"{_size(sizing.firmware_heap(p.word))} firmware)",
    ]
    if p.notes:
        lines.append(f"  notes         {p.notes}")
    return "\n".join(lines)

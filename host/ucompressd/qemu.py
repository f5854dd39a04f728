"""The emulated Cortex-M boards: MicroPython's ports/qemu with ucz frozen in, under qemu-system-arm.

No board is attached to our machines; the nearest real thing is what MicroPython's own CI runs:
its bare-metal qemu port, driven over the emulated UART. Here that becomes a board like any other:

* ``build(profile)`` makes the image from **Debian's ``micropython`` source package** (fetched
  with apt's ordinary source download, through a private apt configuration whose ``deb-src``
  entry is derived from the machine's own apt sources: the system's apt state is not touched),
  Debian's ``gcc-arm-none-eabi`` and the board definition in ``boards/qemu/`` (passed with
  ``BOARD_DIR=``). The image is cached under the user's cache dir, keyed by the source version
  and everything that goes into it (board definition, heap, frozen firmware, compiler): a second
  call builds nothing.
* ``QemuBoard`` runs it behind a pseudo-terminal with the interface of ``sim.SimBoard``
  (``start()`` gives ``.port``; ``close()``; ``kill()``; ``recent_output()``). QEMU's UART is
  its stdio; a bridge thread copies it to and from the pty (the bridge holds the pty's slave
  open, so the host can close and reopen the port without losing bytes, and it always reads
  the UART at once, so the guest never waits on a slow host: that would cost emulated time).
  ``machine.reset()`` ends QEMU with status 0 (semihosting): the board boots again on the same
  pty, as a board does. Any other end of QEMU is a dead board: the port hangs up and
  ``failure`` says why.
* ``-icount shift=N``: each guest instruction is 2**N ns of emulated time, so a run's figures
  (elapsed_us, compress_us, stalls) are a function of the instructions executed: runs repeat
  exactly. N=3 is 8 ns per instruction: a 125 MHz core at one instruction per cycle.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import ucz
from ucompressd import boards, staging
from ucompressd.errors import Failure, InputError
from ucompressd.sim import _read, _write, stop_bridge  # what both pty bridges share

SOURCE_PACKAGE = "micropython"
# The first Debian release whose micropython source (1.25) carries ports/qemu; our machines run
# the release before it, so apt gets a deb-src entry for this suite (same archive, same keys).
SOURCE_SUITE = "trixie"
MIN_SOURCE_VERSION = (1, 25)
APT_SOURCES = (Path("/etc/apt/sources.list.d"), Path("/etc/apt/sources.list"))
# Debian packages of the tools, by the command that proves each is there.
TOOLS = {
    "qemu-system-arm": "qemu-system-arm",
    "arm-none-eabi-gcc": "gcc-arm-none-eabi",
    "make": "make",
    "gcc": "gcc",  # mpy-cross is built for the host
    "apt-get": "apt",
    "dpkg-source": "dpkg-dev",
    "xz": "xz-utils",
}
NEWLIB = "libnewlib-arm-none-eabi"
HOST_LIBC = "libc6-dev"  # gcc only recommends it; mpy-cross needs its headers
ENV_CACHE = "UCOMPRESSD_CACHE"
BUILD_RECIPE = 1  # bump when build() changes what an image holds: cached images are then stale
FIRMWARE_DIR = Path(ucz.__file__).resolve().parent
MANIFEST = FIRMWARE_DIR.parent / "manifest.py"  # firmware/manifest.py (a source checkout)

BANNER = b'Type "help()" for more information.\r\n'
FAULT = re.compile(rb"(\w+|External interrupt \d+) exception caught:")
HOST_BUFFER = 1 << 20  # board output kept for a host that does not read, before the oldest goes
BOOT_S = 20.0  # from launch to the REPL banner (QEMU itself starts in well under a second)


class QemuError(Failure):
    """The QEMU board cannot be built or run (a tool failed, QEMU died): exit status 1."""


class ToolsMissing(InputError):
    """What building or running a QEMU board needs is not installed: exit status 2."""


def _profile_dirs() -> Path:
    # boards/qemu/ beside the profiles: the source checkout's boards/ (editable installs), or
    # the installed package data ucompressd/profiles/qemu.
    for d in boards.profile_dirs():
        if (d / "qemu" / "ucz_board.c").exists():
            return d / "qemu"
    raise ToolsMissing("the QEMU board definitions (boards/qemu/) are not installed")


def cache_dir() -> Path:
    base = os.environ.get(ENV_CACHE) or os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    d = Path(base).expanduser() / "ucompressd" / "qemu"
    d.mkdir(parents=True, exist_ok=True)
    return d


def packages() -> list[str]:
    """Every Debian package the QEMU boards need, to build and to run them."""
    return sorted({*TOOLS.values(), NEWLIB, HOST_LIBC})


def check_tools(build: bool = True) -> None:
    """ToolsMissing naming the Debian packages to install, if any tool is absent."""
    need = TOOLS if build else {"qemu-system-arm": TOOLS["qemu-system-arm"]}
    missing = sorted({pkg for cmd, pkg in need.items() if shutil.which(cmd) is None})
    if build and "gcc-arm-none-eabi" not in missing:
        # The port links newlib's libc/libm (or picolibc): the compiler alone is not enough.
        libc = subprocess.run(["arm-none-eabi-gcc", "-print-file-name=libc.a"],
                              capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(libc):
            missing.append(NEWLIB)
    if missing:
        what = "build and run" if build else "run"
        raise ToolsMissing(f"the QEMU boards need Debian packages to {what} them: "
                           f"apt-get install {' '.join(missing)}")


# -- the source ------------------------------------------------------------------------------------


def _machine_archive() -> tuple[str, str | None]:
    """(URI, Signed-By) of the machine's Debian archive entry (not -security): where the
    deb-src entry points. Read from deb822 .sources files, then one-line sources.list."""
    for path in sorted(APT_SOURCES[0].glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if "main" not in fields.get("components", "").split():
                continue
            for uri in fields.get("uris", "").split():
                if uri.rstrip("/").endswith("/debian"):
                    return uri, fields.get("signed-by")
    one_line = [APT_SOURCES[1], *sorted(APT_SOURCES[0].glob("*.list"))]
    for path in one_line:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            m = re.match(r"^deb\s+(\[[^]]*\]\s+)?(\S+)\s+\S+\s+.*\bmain\b", line)
            if m and m.group(2).rstrip("/").endswith("/debian"):
                opts = m.group(1) or ""
                sb = re.search(r"signed-by=(\S+?)\]?(\s|$)", opts)
                return m.group(2), sb.group(1) if sb else None
    raise ToolsMissing("no Debian archive in the machine's apt sources "
                       f"({', '.join(map(str, APT_SOURCES))}): cannot fetch {SOURCE_PACKAGE}")


def _apt(cache: Path, *args: str, cwd: Path | None = None, tool: str = "apt-get") -> str:
    """apt-get (or apt-cache) with a private configuration: our deb-src list, lists and cache in `cache`."""
    etc = cache / "apt" / "sources.list.d"
    etc.mkdir(parents=True, exist_ok=True)
    uri, signed_by = _machine_archive()
    entry = f"Types: deb-src\nURIs: {uri}\nSuites: {SOURCE_SUITE}\nComponents: main\n"
    if signed_by:
        entry += f"Signed-By: {signed_by}\n"
    (etc / f"{SOURCE_PACKAGE}.sources").write_text(entry)
    empty = cache / "apt" / "sources.list"
    empty.write_text("")
    for d in ("lists/partial", "cache/archives/partial"):
        (cache / "apt" / d).mkdir(parents=True, exist_ok=True)
    opts = [
        f"-oDir::Etc::SourceList={empty}", f"-oDir::Etc::SourceParts={etc}",
        f"-oDir::State::Lists={cache / 'apt' / 'lists'}", f"-oDir::Cache={cache / 'apt' / 'cache'}",
        "-oDebug::NoLocking=1", "-oAPT::Sandbox::User=root" if os.geteuid() == 0 else "-q",
    ]
    proc = subprocess.run([tool, *opts, *args], capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise QemuError(f"{tool} {' '.join(args)} failed: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0].split("-")[0])[:3])


def fetch_source(cache: Path, log: TextIO | None = None) -> tuple[str, Path]:
    """(version, tree) of Debian's micropython source, extracted under `cache`/src."""
    src = cache / "src"
    src.mkdir(exist_ok=True)
    done = sorted(src.glob(f"{SOURCE_PACKAGE}-*/.ucz-extracted"))
    if done:  # extracted before: no network needed
        tree = done[-1].parent
        return tree.name[len(SOURCE_PACKAGE) + 1:], tree
    _say(log, f"fetching the {SOURCE_PACKAGE} source package ({SOURCE_SUITE}) with apt-get source")
    _apt(cache, "update")
    show = _apt(cache, "showsrc", SOURCE_PACKAGE, tool="apt-cache")
    versions = re.findall(r"^Version: (\S+)$", show, re.M)
    if not versions:
        raise QemuError(f"apt knows no source package {SOURCE_PACKAGE} in {SOURCE_SUITE}")
    version = max(versions, key=_version_tuple)
    if _version_tuple(version) < MIN_SOURCE_VERSION:
        raise QemuError(f"{SOURCE_PACKAGE} {version} is older than "
                        f"{'.'.join(map(str, MIN_SOURCE_VERSION))}: no ports/qemu")
    dl = Path(tempfile.mkdtemp(prefix="dl-", dir=src))
    try:
        _apt(cache, "source", "--download-only", f"{SOURCE_PACKAGE}={version}", cwd=dl)
        dsc = next(dl.glob("*.dsc"))
        tree = src / f"{SOURCE_PACKAGE}-{version}"
        shutil.rmtree(tree, ignore_errors=True)
        # apt checked every file against the signed Sources index; the .dsc's own signature
        # would need the maintainers' keyring, which is not what proves the download here.
        proc = subprocess.run(["dpkg-source", "--no-check", "-x", str(dsc), str(tree)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise QemuError(f"dpkg-source -x failed: {proc.stderr.strip()[-400:]}")
    finally:
        shutil.rmtree(dl, ignore_errors=True)
    if not (tree / "ports" / "qemu" / "Makefile").exists():
        raise QemuError(f"{SOURCE_PACKAGE} {version} has no ports/qemu")
    (tree / ".ucz-extracted").write_text(version + "\n")
    return version, tree


# -- the image -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """A built firmware image and what it was built from."""

    path: Path  # firmware.elf
    board: str  # the profile's name
    heap: int  # MICROPY_HEAP_SIZE
    source_version: str
    key: str  # the cache key: hash of everything that went in
    sha256: str  # of firmware.elf
    compiled_on_board: tuple[str, ...]  # ucz files frozen as source (no mpy-cross took them)
    # ucz files the source's mpy-cross refused, frozen as .mpy from the project's newer one
    cross_compiled: tuple[str, ...] = ()
    cross_compiler: str | None = None  # that mpy-cross's --version line

    @property
    def info(self) -> dict[str, object]:
        return {"path": str(self.path), "board": self.board, "heap": self.heap, "source": f"{SOURCE_PACKAGE} "
                f"{self.source_version}", "key": self.key, "sha256": self.sha256,
                "compiled_on_board": list(self.compiled_on_board),
                "cross_compiled": list(self.cross_compiled), "cross_compiler": self.cross_compiler}


def _firmware_files() -> list[Path]:
    return sorted(FIRMWARE_DIR.glob("*.py"))


def _image_key(profile: boards.Profile, version: str, qdir: Path, gcc: str, heap: int,
               cross: str | None) -> str:
    assert profile.qemu is not None
    h = hashlib.sha256()
    h.update(f"{version}\0{heap}\0{profile.qemu.board_dir}\0{gcc}\0{cross}\0".encode())
    files = [*sorted(p for p in qdir.glob("*") if p.is_file()),
             *sorted((qdir / profile.qemu.board_dir).glob("*")), *_firmware_files()]
    if MANIFEST.exists():
        files.append(MANIFEST)
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    h.update(f"{BUILD_RECIPE}\0{_MPY_TOOL_FIX}".encode())  # how we build, too
    return h.hexdigest()[:16]


def _mpy_arch(board_dir: Path) -> str:
    m = re.search(r"-march=(\S+)", (board_dir / "mpconfigboard.mk").read_text())
    return m.group(1) if m else "armv7m"


def _needs_board_compile(mpy_cross: Path, arch: str, tmp: Path) -> list[str]:
    """ucz files the source's mpy-cross cannot emit for `arch` (MicroPython 1.25 on ARMv6-M:
    a viper jump over 2 KiB is "native method too big")."""
    out = []
    for f in _firmware_files():
        proc = subprocess.run([str(mpy_cross), f"-march={arch}", "-o", str(tmp / "x.mpy"), str(f)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            if "native method too big" not in proc.stderr + proc.stdout:
                raise QemuError(f"mpy-cross -march={arch} {f.name}: {proc.stderr.strip()}")
            out.append(f.name)
    return out


def _cross_compiler(source_mpy_cross: Path) -> tuple[str, str] | None:
    """(binary, --version line) of the project's mpy-cross (the one `deploy --mpy` uses) when
    it emits the .mpy version the source's own loads; None without one."""
    try:
        binary = staging.mpy_cross_binary()
        version, line = staging.mpy_cross_about(binary)
        if version != staging.mpy_cross_version(str(source_mpy_cross)):
            return None
    except staging.ToolchainError:
        return None
    return binary, line


def _cross_compile(refused: list[str], arch: str, binary: str, stage: Path) -> list[str]:
    """Compile the refused files with the newer mpy-cross into stage/ucz/*.mpy; returns the
    ones it took. MicroPython 1.26 gave the ARMv6-M emitter long jumps (PR #17293): a Pico
    on such firmware gets this very code from `deploy --mpy`. Its .mpy version is the one
    the 1.25 runtime loads, the native ABI it names included."""
    took = []
    (stage / "ucz").mkdir(parents=True, exist_ok=True)
    for name in refused:
        src = FIRMWARE_DIR / name
        try:
            staging.compile_mpy(src, stage / "ucz" / (src.stem + ".mpy"), arch, binary)
        except staging.CompileError:
            continue  # it refuses it too: compiled at import on the board, as before
        took.append(name)
    return took


def _manifest(build: Path, on_board: list[str], cross: list[str], cross_stage: Path) -> Path:
    """on_board: frozen as source; cross: frozen as the .mpy files _cross_compile staged."""
    lines = ['include("$(MPY_DIR)/extmod/asyncio")']
    elsewhere = (*on_board, *cross)
    if MANIFEST.exists():
        lines.append(f"include({str(MANIFEST)!r}, exclude={elsewhere!r})")
    else:  # an installed (not editable) ucompressd: freeze the installed package
        files = [f.name for f in _firmware_files() if f.name not in elsewhere]
        lines.append(f"package('ucz', files={files!r}, base_path={str(FIRMWARE_DIR.parent)!r})")
    if on_board:
        stage = build / "on-board" / "ucz"
        stage.mkdir(parents=True, exist_ok=True)
        for name in on_board:
            shutil.copyfile(FIRMWARE_DIR / name, stage / name)
        lines.append(f"freeze_as_str({str(stage.parent)!r})")
    if cross:
        lines.append(f"freeze_mpy({str(cross_stage)!r})")
    path = build / "manifest.py"
    path.write_text("\n".join(lines) + "\n")
    return path


# MicroPython 1.25's mpy-tool aligns frozen ARMv6-M native code to 2 bytes, but the ARMv6-M
# Thumb emitter loads 32-bit constants PC-relative from a literal pool it places as if the code
# began on a word: frozen viper code at an address = 2 mod 4 then reads the wrong constants
# (seen here: pagedata's checksum lost its masks and ucz counted pages corrupt). Code loaded
# from .mpy at run time sits in the (word-aligned) heap and is right; only freezing needs this.
_MPY_TOOL_FIX = ("            MP_NATIVE_ARCH_ARMV6,\n",
                 "            MP_NATIVE_ARCH_ARMV6,\n            MP_NATIVE_ARCH_ARMV6M,\n")


def _patch_source(tree: Path) -> None:
    tool = tree / "tools" / "mpy-tool.py"
    text = tool.read_text()
    old, new = _MPY_TOOL_FIX
    if new in text:
        return
    if old not in text:
        raise QemuError(f"{tool}: cannot apply the ARMv6-M alignment fix (the source changed)")
    tool.write_text(text.replace(old, new, 1))


def _run(cmd: list[str], log: Path, what: str, cwd: Path | None = None) -> None:
    with open(log, "ab") as f:
        f.write(f"$ {' '.join(cmd)}\n".encode())
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd)
    if proc.returncode != 0:
        tail = log.read_bytes()[-1500:].decode(errors="replace")
        raise QemuError(f"{what} failed (exit {proc.returncode}; log {log}):\n{tail}")


def build(profile: boards.Profile, log: TextIO | None = None, force: bool = False,
          heap: int | None = None) -> Image:
    """The cached image of this QEMU board, built first if it is not there (or `force`).
    heap: MICROPY_HEAP_SIZE other than the profile's (the firmware suite's 400K on qemu-m0)."""
    if profile.qemu is None:
        raise ToolsMissing(f"{profile.name} is not a QEMU board (its profile has no qemu section)")
    check_tools(build=True)
    qdir = _profile_dirs()
    board_dir = qdir / profile.qemu.board_dir
    if not (board_dir / "mpconfigboard.mk").exists():
        raise ToolsMissing(f"{profile.name}: no board definition at {board_dir}")
    cache = cache_dir()
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; the second finds it done
        version, tree = fetch_source(cache, log)
        gcc = subprocess.run(["arm-none-eabi-gcc", "-dumpversion"], capture_output=True,
                             text=True).stdout.strip()
        heap = heap or profile.memory.heap
        jobs = str(max(1, os.cpu_count() or 1))
        mpy_cross = tree / "mpy-cross" / "build" / "mpy-cross"
        if not mpy_cross.exists():  # the source's own: it says which files need another one
            _run(["make", "-j", jobs, "-C", str(tree / "mpy-cross")], cache / "mpy-cross.log",
                 "building mpy-cross")
        cross_bin, cross_line = _cross_compiler(mpy_cross) or (None, None)
        key = _image_key(profile, version, qdir, gcc, heap, cross_line)
        label = profile.name if heap == profile.memory.heap else f"{profile.name}-heap{heap}"
        out = cache / "images" / f"{label}-{key}"
        info_file = out / "image.json"
        if info_file.exists() and not force:
            info = json.loads(info_file.read_text())
            return Image(out / "firmware.elf", profile.name, heap, version, key, info["sha256"],
                         tuple(info["compiled_on_board"]), tuple(info.get("cross_compiled", ())),
                         info.get("cross_compiler"))
        t0 = time.monotonic()
        _say(log, f"building {profile.name} ({profile.qemu.board_dir}, heap {heap}) from "
                  f"{SOURCE_PACKAGE} {version}")
        _patch_source(tree)
        work = cache / "build" / f"{profile.name}-{key}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        blog = work / "build.log"
        arch = _mpy_arch(board_dir)
        on_board = _needs_board_compile(mpy_cross, arch, work)
        stage = work / "cross"
        took = _cross_compile(on_board, arch, cross_bin, stage) if cross_bin and on_board else []
        on_board = [f for f in on_board if f not in took]
        manifest = _manifest(work, on_board, took, stage)
        _run(["make", "-j", jobs, "-C", str(tree / "ports" / "qemu"),
              f"BOARD={profile.qemu.board_dir}", f"BOARD_DIR={board_dir}",
              f"BUILD={work / 'obj'}", f"MICROPY_HEAP_SIZE={heap}",
              f"FROZEN_MANIFEST={manifest}"], blog, f"building the {profile.name} image")
        elf = work / "obj" / "firmware.elf"
        tmp = Path(tempfile.mkdtemp(prefix=".img-", dir=cache))
        shutil.copyfile(elf, tmp / "firmware.elf")
        shutil.copyfile(blog, tmp / "build.log")
        sha = hashlib.sha256(elf.read_bytes()).hexdigest()
        img = Image(out / "firmware.elf", profile.name, heap, version, key, sha, tuple(on_board),
                    tuple(took), cross_line if took else None)
        (tmp / "image.json").write_text(json.dumps({**img.info, "build_s": round(
            time.monotonic() - t0, 1)}, indent=1) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
        shutil.rmtree(work, ignore_errors=True)
        _say(log, f"built {img.path} in {time.monotonic() - t0:.0f} s")
        return img


def _say(log: TextIO | None, text: str) -> None:
    if log is not None:
        print(f"ucompressd qemu: {text}", file=log, flush=True)


def qemu_argv(profile: boards.Profile, image: Image) -> list[str]:
    assert profile.qemu is not None
    return [
        "qemu-system-arm", "-machine", profile.qemu.machine, "-nographic", "-monitor", "null",
        "-semihosting", "-serial", "stdio", "-icount", f"shift={profile.qemu.icount_shift}",
        "-kernel", str(image.path),
    ]


def emulated_mhz(profile: boards.Profile) -> float:
    """The clock -icount stands for, at one instruction per cycle."""
    assert profile.qemu is not None
    return 1000 / (1 << profile.qemu.icount_shift)


# -- the running board -----------------------------------------------------------------------------


class QemuBoard:
    """A QEMU board on a pseudo-terminal: start()/close() or a context manager, like SimBoard.

    port: the tty path the host opens; image: what runs; boots: QEMU launches so far; failure:
    why the board is dead ("" while it lives); fault: the CPU fault the firmware reported, if
    any (it then hangs, as a board without a watchdog does).
    """

    def __init__(self, profile: boards.Profile | str, *, image: Image | None = None,
                 heap: int | None = None, boot_timeout: float = BOOT_S,
                 log: TextIO | None = None) -> None:
        self.profile = boards.load(profile) if isinstance(profile, str) else profile
        if self.profile.qemu is None:
            raise ToolsMissing(f"{self.profile.name} is not a QEMU board")
        self.image = image
        self.heap = heap
        self.boot_timeout = boot_timeout
        self.log = log
        self.port = ""
        self.boots = 0
        self.failure = ""
        self.fault = ""
        self.dropped = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._diag = bytearray()
        self._booted = threading.Event()
        self._stderr = b""

    def __enter__(self) -> QemuBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __str__(self) -> str:
        img = self.image
        return (f"{self.profile.name}: MicroPython ports/qemu on {self.profile.qemu.machine}"
                + (f", image {img.sha256[:12]} ({SOURCE_PACKAGE} {img.source_version})"
                   if img else ""))

    def start(self) -> QemuBoard:
        if self._thread is not None:
            raise QemuError("QemuBoard already started")
        check_tools(build=self.image is None)
        if self.image is None:
            self.image = build(self.profile, self.log, heap=self.heap)
        try:
            hm, hs = os.openpty()
            tty.setraw(hs)
            os.set_blocking(hm, False)
            self._fds.update(host_master=hm, host_slave=hs)
            wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._fds.update(wake_r=wake_r, wake_w=wake_w)
            self.port = os.ttyname(hs)
            self._launch()
            self._thread = threading.Thread(target=self._bridge, name="ucompressd-qemu-bridge",
                                            daemon=True)
            self._thread.start()
            if not self._booted.wait(self.boot_timeout):
                why = self.failure or f"no REPL banner in {self.boot_timeout:.0f} s"
                raise QemuError(f"{self.profile.name} did not boot ({why}): "
                                f"{self.recent_output()[-300:]!r}")
        except BaseException:
            self.close()
            raise
        return self

    @property
    def alive(self) -> bool:
        return not self.failure and self._thread is not None and self._thread.is_alive()

    def recent_output(self) -> bytes:
        """The last few KiB the board printed (whether or not a host read them)."""
        return bytes(self._diag)

    def kill(self) -> None:
        """The board disappears: QEMU is killed (no restart) and the port hangs up."""
        self._shutdown("killed")

    def close(self) -> None:
        self._shutdown("")

    def _shutdown(self, why: str) -> None:
        with self._lock:
            self._stop = True
            if why and not self.failure:
                self.failure = why
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.kill()
        stop_bridge(self._fds, self._thread, proc)
        self._fds.clear()

    def _launch(self) -> None:
        assert self.image is not None
        with self._lock:
            if self._stop:
                return
            self._booted.clear()
            self._proc = subprocess.Popen(
                qemu_argv(self.profile, self.image), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            for f in (self._proc.stdout, self._proc.stdin, self._proc.stderr):
                assert f is not None
                os.set_blocking(f.fileno(), False)
            self.boots += 1

    def _bridge(self) -> None:
        try:
            self._bridge_loop()
        except Exception as e:  # the board is dead without its bridge: make that visible
            self.failure = self.failure or f"bridge failed: {e!r}"
            raise
        finally:
            # A dead board's port hangs up, as an unplugged USB board's does.
            if self.failure and "host_master" in self._fds:
                os.close(self._fds.pop("host_master"))

    def _bridge_loop(self) -> None:
        hm, wake = self._fds["host_master"], self._fds["wake_r"]
        to_host = bytearray()
        to_board = bytearray()
        tail = b""
        while not self._stop:
            proc = self._proc
            assert proc is not None and proc.stdout and proc.stdin and proc.stderr
            out, inp, err = proc.stdout.fileno(), proc.stdin.fileno(), proc.stderr.fileno()
            poller = select.poll()
            poller.register(wake, select.POLLIN)
            poller.register(out, select.POLLIN)
            poller.register(err, select.POLLIN)
            poller.register(hm, select.POLLIN | (select.POLLOUT if to_host else 0))
            if to_board:
                poller.register(inp, select.POLLOUT)
            ready = dict(poller.poll(200))
            if ready.get(wake):
                _read(wake)
            if ready.get(err):
                self._stderr = (self._stderr + _read(err))[-2000:]
            if ready.get(out, 0) & (select.POLLIN | select.POLLHUP):
                data = _read(out)
                if data:
                    self._diag += data
                    del self._diag[:-4096]
                    seen = tail + data
                    tail = seen[-200:]
                    if BANNER in seen:
                        self._booted.set()
                    m = FAULT.search(seen)
                    if m and not self.fault:
                        self.fault = m.group(0).decode(errors="replace")
                    to_host += data
                    if len(to_host) > HOST_BUFFER:
                        self.dropped += len(to_host) - HOST_BUFFER
                        del to_host[: len(to_host) - HOST_BUFFER]
                elif proc.poll() is not None or ready.get(out, 0) & select.POLLHUP:
                    rc = proc.wait()
                    self._stderr += _read(err)
                    if self._stop:
                        return
                    if rc == 0:  # machine.reset(): semihosting exit; power on again
                        to_board.clear()
                        self._launch()
                        continue
                    err_text = self._stderr.decode(errors="replace").strip()[-300:]
                    self.failure = f"qemu-system-arm exited with status {rc}" + (
                        f": {err_text}" if err_text else "")
                    return
            if ready.get(hm, 0) & select.POLLIN:
                to_board += _read(hm)
            if ready.get(hm, 0) & select.POLLOUT and to_host:
                n = _write(hm, to_host)
                del to_host[:n]
            if to_board and ready.get(inp, 0) & select.POLLOUT:
                try:
                    n = _write(inp, to_board)
                except BrokenPipeError:  # QEMU is gone: the next poll sees it exit
                    n = len(to_board)
                del to_board[:n]


# -- CLI: `ucompressd qemu build|run` ------------------------------------------------------------------


def add_arguments(ap: argparse.ArgumentParser) -> None:
    sub = ap.add_subparsers(dest="qemu_command", required=True, metavar="ACTION")
    b = sub.add_parser("build", help="build (or find in the cache) a QEMU board's image")
    b.add_argument("--board", action="append", metavar="NAME",
                   help="qemu-m0 (default) or qemu-m33; give it again for both")
    b.add_argument("--force", action="store_true", help="build again even if cached")
    sub.add_parser("packages", help="print the Debian packages to install (for apt-get install)")


def qemu_profiles(names: list[str] | None) -> list[boards.Profile]:
    out = []
    for name in names or ["qemu-m0"]:
        p = boards.load(name)
        if p.qemu is None:
            raise ToolsMissing(f"--board: {name} is not a QEMU board")
        out.append(p)
    return out


def run(args: argparse.Namespace) -> int:
    """`ucompressd qemu`: errors go up to cli.main (one line, exit 2 or 1)."""
    if args.qemu_command == "packages":
        print(" ".join(packages()))
        return 0
    for p in qemu_profiles(args.board):
        img = build(p, sys.stderr, force=args.force)
        print(json.dumps(img.info))
    return 0


def serve_forever(profile: boards.Profile, out: TextIO | None = None) -> int:
    """`ucompressd sim --board qemu-m0`: one QEMU board until Ctrl-C (cli.main makes SIGTERM
    one, so QEMU, in a session of its own, does not outlive us); the first line is the port."""
    out = out or sys.stdout
    with QemuBoard(profile, log=sys.stderr) as board:
        print(board.port, file=out)
        print(f"ucompressd sim: {board} on {board.port}, "
              f"-icount shift={profile.qemu.icount_shift} ({emulated_mhz(profile):.0f} MHz at one "
              f"instruction per cycle); Ctrl-C to stop", file=out, flush=True)
        try:
            while board.alive:
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
        print(f"ucompressd sim: the board died: {board.failure}", file=out)
        return 1

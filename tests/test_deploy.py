"""Deploy through mpremote to the simulated board, and mpy-cross for every board architecture."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ucompressd import boards, deploy, staging
from ucompressd.cli import main
from ucompressd.deploy import DeployError, DeployInputError
from ucompressd.session import PortError
from ucompressd.session import wait_for_repl as wait_for_board
from ucompressd.staging import CompileError, ToolchainError
from ucompressd.sim import SimBoard

pytestmark = pytest.mark.timeout(120)

FIRMWARE = staging.firmware_dir()
SOURCES = sorted(p.name for p in FIRMWARE.glob("*.py"))
BOARD_ARCHS = sorted({p.mpy_arch for p in boards.all_profiles().values() if p.port != "unix"})


def _have_mpy_cross() -> bool:
    try:
        staging.mpy_cross_binary()
        return True
    except ToolchainError:
        return False


needs_mpy_cross = pytest.mark.skipif(not _have_mpy_cross(), reason="mpy-cross not installed")


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimBoard]:
    with SimBoard(tmp_path_factory.mktemp("flash")) as b:
        yield b


@pytest.fixture
def fresh(board: SimBoard) -> SimBoard:
    """The module's board with an empty /ucz."""
    shutil.rmtree(board.flash_dir / "ucz", ignore_errors=True)
    return board


def _on_board(board: SimBoard) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((board.flash_dir / "ucz").iterdir())}


def _import_on_board(board: SimBoard) -> str:
    """A separate mpremote process imports the package on the board: what a user would see."""
    res = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", board.port, "exec",
         "import ucz, ucz.server, ucz.lz4; print(ucz.VERSION, ucz.lz4.IMPL)"],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_deploy_copies_everything_then_nothing(fresh: SimBoard) -> None:
    r = deploy.deploy(fresh.port)
    assert r.native  # the unix port has the native emitter: the files go as they are
    assert r.copied == SOURCES and r.removed == [] and r.unchanged == []
    assert r.files == SOURCES and r.hash_method == "sha256"
    assert r.version == staging.host_version() and r.lz4_impl == "viper" and not r.viper_errors
    assert _on_board(fresh) == {n: (FIRMWARE / n).read_bytes() for n in SOURCES}
    assert _import_on_board(fresh) == f"{staging.host_version()} viper"

    again = deploy.deploy(fresh.port)
    assert again.copied == [] and again.removed == [] and again.unchanged == SOURCES
    assert again.digest == r.digest


def test_only_the_changed_file_is_copied_and_strays_removed(fresh: SimBoard) -> None:
    deploy.deploy(fresh.port)
    ucz = fresh.flash_dir / "ucz"
    (ucz / "workload.py").write_text("# edited on the board\n")
    (ucz / "old_module.py").write_text("x = 1\n")
    (ucz / ".pool.py.tmp").write_bytes(b"half a file")  # an interrupted earlier deploy
    (ucz / "data").mkdir()  # not ours to delete: directories stay
    r = deploy.deploy(fresh.port)
    assert r.copied == ["workload.py"]
    assert r.removed == [".pool.py.tmp", "old_module.py"]
    assert (ucz / "workload.py").read_bytes() == (FIRMWARE / "workload.py").read_bytes()
    assert (ucz / "data").is_dir()
    assert deploy.deploy(fresh.port, force=True).copied == SOURCES


def test_without_hashlib_files_are_read_back(fresh: SimBoard,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploy, "_LIST", deploy._LIST.replace("import hashlib, binascii",
                                                              "import no_hashlib_here"))
    assert deploy.deploy(fresh.port).hash_method == "readback"
    pool = fresh.flash_dir / "ucz" / "pool.py"
    data = bytearray(pool.read_bytes())
    data[-2] ^= 1  # same size, other content: only reading it back tells
    pool.write_bytes(data)
    r = deploy.deploy(fresh.port)
    assert r.copied == ["pool.py"] and len(r.unchanged) == len(SOURCES) - 1


def test_a_file_where_the_package_goes(fresh: SimBoard) -> None:
    (fresh.flash_dir / "ucz").write_text("not a folder")
    try:
        with pytest.raises(DeployError, match=r"/ucz exists and is not a directory"):
            deploy.deploy(fresh.port)
    finally:
        (fresh.flash_dir / "ucz").unlink()


def test_version_mismatch_is_an_error(fresh: SimBoard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploy, "host_version", lambda: "9.9.9")
    with pytest.raises(DeployError, match=r"the board reports ucz 0\.1\.0 after the deploy, "
                                          r"the host has 9\.9\.9"):
        deploy.deploy(fresh.port)


def test_a_build_without_the_native_emitter_gets_the_hot_paths_as_bytecode(
        fresh: SimBoard, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The board says it has no native emitter (sys.implementation._mpy without an arch): its
    # compiler would refuse @micropython.native, so those lines stay on the host.
    monkeypatch.setattr(deploy, "board_mpy", lambda value: (6, 3, None))
    r = deploy.deploy(fresh.port)
    got = _on_board(fresh)

    def decorators(text: bytes) -> int:
        return sum(line.lstrip().startswith(staging.NATIVE_DECORATOR)
                   for line in text.splitlines())

    marked = [n for n in SOURCES if decorators((FIRMWARE / n).read_bytes())]
    assert {"pool.py", "scanner.py", "compressor.py"} <= set(marked)
    for n in SOURCES:
        src = (FIRMWARE / n).read_bytes()
        assert decorators(got[n]) == 0, n
        # Only the decorator lines went: every other line is there, in order.
        assert got[n] == staging.without_native(src)
        assert len(got[n].splitlines()) == len(src.splitlines()) - decorators(src), n
    assert r.version == staging.host_version()  # and the package imports (the board checks)
    assert r.native is False and deploy.deploy(fresh.port).copied == []  # already as staged
    assert main(["deploy", "--port", fresh.port]) == 0
    assert "(.py, hot paths as bytecode: no native emitter)" in capsys.readouterr().out
    assert _import_on_board(fresh) == f"{staging.host_version()} viper"


@needs_mpy_cross
def test_hot_paths_without_native_compile_as_bytecode(tmp_path: Path) -> None:
    # What a build without the emitter does with pool.py: refuses it as is, takes it stripped.
    src = FIRMWARE / "pool.py"
    with pytest.raises(CompileError, match="bytecode"):
        staging.compile_mpy(src, tmp_path / "pool.mpy", None)
    plain = tmp_path / "pool.py"
    plain.write_bytes(staging.without_native(src.read_bytes()))
    staging.compile_mpy(plain, tmp_path / "pool.mpy", None)


def test_broken_module_fails_the_import_check(fresh: SimBoard,
                                              monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    fake = tmp_path / "ucz"
    shutil.copytree(FIRMWARE, fake, ignore=shutil.ignore_patterns("__pycache__"))
    (fake / "scanner.py").write_text("raise ValueError('scanner is broken')\n")
    monkeypatch.setattr(staging, "firmware_dir", lambda: fake)
    with pytest.raises(DeployError, match=r"importing the deployed package: ValueError: "
                                          r"scanner is broken"):
        deploy.deploy(fresh.port)


@needs_mpy_cross
def test_mpy_deploy_for_the_board_architecture(fresh: SimBoard) -> None:
    deploy.deploy(fresh.port)
    r = deploy.deploy(fresh.port, mpy=True)
    mpys = [n[:-3] + ".mpy" for n in SOURCES]
    assert r.arch == boards.load("sim").mpy_arch == "x64"
    assert r.files == mpys and r.copied == mpys
    assert r.removed == SOURCES  # the .py twins would shadow the .mpy files
    assert sorted(_on_board(fresh)) == mpys
    assert all(data[:2] == b"M\x06" for data in _on_board(fresh).values())
    assert r.lz4_impl == "viper" and not r.viper_errors
    assert _import_on_board(fresh) == f"{staging.host_version()} viper"
    assert deploy.deploy(fresh.port, mpy=True).copied == []
    back = deploy.deploy(fresh.port)
    assert back.copied == SOURCES and back.removed == mpys


@needs_mpy_cross
def test_mpy_arch_must_match_the_board(fresh: SimBoard) -> None:
    with pytest.raises(DeployInputError, match=r"compiling for armv6m .*, but the board at .* runs x64"):
        deploy.deploy(fresh.port, mpy=True, arch="armv6m")
    assert not (fresh.flash_dir / "ucz").exists()  # refused before anything was copied


def test_wait_for_board_polls_until_the_repl_answers(board: SimBoard, tmp_path: Path) -> None:
    board.hard_reset()  # the port stays, the interpreter boots anew
    assert wait_for_board(board.port, timeout=20)
    assert not wait_for_board(str(tmp_path / "ttyACM9"), timeout=0.3)
    master, slave = os.openpty()  # a port with nothing behind it: never answers
    try:
        assert not wait_for_board(os.ttyname(slave), timeout=0.5)
    finally:
        os.close(master)
        os.close(slave)


def test_no_board_on_the_port(tmp_path: Path) -> None:
    with pytest.raises(PortError, match=r"cannot open port .*ttyACM9"):
        deploy.deploy(str(tmp_path / "ttyACM9"), boot_timeout=0.3)
    master, slave = os.openpty()  # a port with nothing behind it: never answers
    try:
        with pytest.raises(DeployError, match=r"no MicroPython REPL answered on /dev/pts/"):
            deploy.deploy(os.ttyname(slave), boot_timeout=0.5)
    finally:
        os.close(master)
        os.close(slave)


def test_cli_deploy(board: SimBoard, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "--port", board.port]) == 0
    out = capsys.readouterr().out
    assert f"deployed ucz {staging.host_version()} (.py) to {board.port}" in out
    assert main(["deploy", "--port", "/nonexistent/tty"]) == 2
    assert main(["deploy", "--port", board.port, "--arch", "x64"]) == 2
    assert "--arch only applies with --mpy" in capsys.readouterr().err
    assert main(["deploy", "--port", board.port, "--board", "nope"]) == 2
    # The pico profile says armv6m; the board says x64: refused before anything is copied.
    assert main(["deploy", "--port", board.port, "--mpy", "--board", "pico"]) == 2
    assert "compiling for armv6m" in capsys.readouterr().err


# -- mpy-cross for the real boards -----------------------------------------------------------------


ARCH_NUMBER = {a: i for i, a in enumerate(boards.MPY_ARCHS) if a}


@needs_mpy_cross
def test_mpy_cross_matches_the_micropython_of_the_sim() -> None:
    assert staging.mpy_cross_version() == (6, 3)  # MicroPython 1.23 .. 1.28+: mpy v6.3


@needs_mpy_cross
@pytest.mark.parametrize("arch", BOARD_ARCHS)
@pytest.mark.parametrize("source", SOURCES)
def test_mpy_cross_compiles_every_module(arch: str, source: str, tmp_path: Path) -> None:
    """Every firmware module compiles for every board architecture; native (viper) code is
    tagged with that architecture in the .mpy header, which the board checks on import."""
    out = tmp_path / (source[:-3] + ".mpy")
    staging.compile_mpy(FIRMWARE / source, out, arch)
    head = out.read_bytes()[:4]
    assert head[:2] == b"M\x06" and head[3] == staging.small_int_bits(arch)
    if source.endswith("_viper.py"):
        assert head[2] >> 2 == ARCH_NUMBER[arch] and head[2] & 3 == 3


@needs_mpy_cross
def test_viper_code_needs_an_architecture(tmp_path: Path) -> None:
    viper = [s for s in SOURCES if s.endswith("_viper.py")]
    assert viper
    with pytest.raises(CompileError, match=rf"mpy-cross bytecode \(no -march\) failed on "
                                          rf"{viper[0]}"):
        staging.compile_mpy(FIRMWARE / viper[0], tmp_path / "x.mpy", None)


def test_board_mpy_decodes_sys_implementation() -> None:
    # Values boards report: unix x64 1.28, Pico W 1.22 (RP2040), Pico Plus 2 1.27 (RP2350).
    assert staging.board_mpy(2822) == (6, 3, "x64")
    assert staging.board_mpy(4614) == (6, 2, "armv6m")
    assert staging.board_mpy(7942) == (6, 3, "armv7emsp")
    assert staging.board_mpy(None) is None


def test_staged_package_hashes_like_the_firmware() -> None:
    from ucz.server import firmware_digest

    with staging.staged() as stage:
        names = sorted(p.name for p in stage.iterdir())
        assert names == SOURCES
        assert firmware_digest(str(stage)) == firmware_digest(str(FIRMWARE))
        for n in names:
            assert hashlib.sha256((stage / n).read_bytes()).digest() == hashlib.sha256(
                (FIRMWARE / n).read_bytes()).digest()

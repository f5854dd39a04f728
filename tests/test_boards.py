"""Board profiles: every shipped profile validates, broken ones name the file and the field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from ucompressd import boards, ports, sim
from ucompressd.cli import main
from ucompressd.boards import ProfileError

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.stem for p in (REPO / "boards").glob("*.json"))


def test_the_six_profiles_ship_and_load() -> None:
    assert SHIPPED == ["esp32-s3-n8r8", "esp32-wrover", "pico", "pico-plus-2", "pico2", "sim"]
    loaded = boards.all_profiles()
    assert sorted(loaded) == SHIPPED
    for name, p in loaded.items():
        assert p.name == name and p.path is not None and p.path.stem == name


def test_loader_finds_the_checkout_folder() -> None:
    assert (REPO / "boards").resolve() in [d.resolve() for d in boards.profile_dirs()]


@pytest.mark.parametrize("name", SHIPPED)
def test_defaults_fit_the_heap_and_pass_the_runner(name: str) -> None:
    p = boards.load(name)
    cfg = p.config()  # ucz.runner.config: the firmware's own rules
    assert cfg["pages"] > cfg["frames"]
    assert p.heap_needed() <= p.memory.heap <= p.memory.sram + p.memory.psram


def test_facts_per_board() -> None:
    ps = boards.all_profiles()
    assert (ps["esp32-wrover"].flash.chip, ps["esp32-wrover"].flash.offset) == ("esp32", 0x1000)
    assert (ps["esp32-s3-n8r8"].flash.chip, ps["esp32-s3-n8r8"].flash.offset) == ("esp32s3", 0)
    assert ps["esp32-wrover"].firmware.file_prefix == "ESP32_GENERIC-SPIRAM"
    assert ps["esp32-s3-n8r8"].firmware.file_prefix == "ESP32_GENERIC_S3-SPIRAM_OCT"
    assert ps["pico"].firmware.name == "RPI_PICO" and ps["pico2"].firmware.name == "RPI_PICO2"
    assert {n: p.mpy_arch for n, p in ps.items()} == {
        "esp32-s3-n8r8": "xtensawin", "esp32-wrover": "xtensawin", "pico": "armv6m",
        "pico-plus-2": "armv7emsp", "pico2": "armv7emsp", "sim": "x64",
    }
    assert ps["pico"].memory.psram == 0 and ps["pico2"].memory.psram == 0
    assert ps["pico-plus-2"].memory.psram == 8 << 20
    assert ps["esp32-wrover"].memory.psram == 4 << 20
    assert ps["pico"].flash.board_id == "RPI-RP2" and ps["pico2"].flash.board_id == "RP2350"
    assert ps["pico"].flash.families == (0xE48BFF56,)
    assert ps["pico2"].flash.families[0] == 0xE48BFF59
    # rp2: one extra thread on core 1 without a GIL; esp32: a GIL, so the compressor is a task.
    for n in ("pico", "pico2", "pico-plus-2"):
        t = ps[n].threads
        assert (t.gil, t.max_threads, t.parallel, ps[n].defaults["compressor"]) == (
            False, 1, True, "thread")
    for n in ("esp32-wrover", "esp32-s3-n8r8"):
        t = ps[n].threads
        assert (t.gil, t.parallel, ps[n].defaults["compressor"]) == (True, False, "task")
    assert ps["sim"].threads.parallel and ps["sim"].usb == ()


def test_sim_profile_describes_the_simulated_board() -> None:
    p = boards.load("sim")
    assert p.memory.heap == sim.default_heap() and p.port == "unix" and p.flash.method == "none"
    assert p.kind == "sim" and boards.load("pico2").kind == "real"
    # Its defaults are the runner's: `--board sim` runs what no --board runs.
    from ucz import runner

    assert p.config() == runner.config({})


def test_match_port_by_vid_pid_and_serial() -> None:
    ps = boards.all_profiles()

    def port(vid: int | None, pid: int | None, serial: str | None = None) -> Any:
        return SimpleNamespace(device="/dev/ttyACM0", vid=vid, pid=pid, serial_number=serial,
                               description="Board in FS mode")

    rp2 = ports.match_port(port(0x2E8A, 0x0005, "E66164084319392A"), ps)
    assert rp2.profiles == ("pico", "pico-plus-2", "pico2") and rp2.usb == "2E8A:0005"
    assert rp2.serial_number == "E66164084319392A"
    # Same VID:PID, but not an RP2 unique-ID serial: some other firmware, no match.
    assert ports.match_port(port(0x2E8A, 0x0005, "123"), ps).profiles == ()
    assert ports.match_port(port(0x303A, 0x1001, "F4:12:FA:00:11:22"), ps).profiles == (
        "esp32-s3-n8r8",)
    assert ports.match_port(port(0x10C4, 0xEA60), ps).profiles == (
        "esp32-s3-n8r8", "esp32-wrover")
    none = ports.match_port(port(None, None), ps)
    assert none.profiles == () and none.usb is None


def test_unknown_board_name_suggests() -> None:
    with pytest.raises(ProfileError, match=r"unknown board 'pico3' \(did you mean pico"):
        boards.load("pico3")


def test_load_by_path(tmp_path: Path) -> None:
    p = tmp_path / "mine.json"
    doc = json.loads((REPO / "boards" / "pico.json").read_text())
    doc["name"] = "mine"
    p.write_text(json.dumps(doc))
    assert boards.load(str(p)).name == "mine"


# -- broken profiles -------------------------------------------------------------------------------


def _broken(tmp_path: Path, base: str, change: Callable[[dict[str, Any]], None]) -> Path:
    doc = json.loads((REPO / "boards" / f"{base}.json").read_text())
    change(doc)
    path = tmp_path / f"{base}.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for k in parents:
            doc = doc[k]
        doc[last] = value

    return change


def _rename(path: str, new: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for k in parents:
            doc = doc[k]
        doc[new] = doc.pop(last)

    return change


BROKEN = [
    ("pico", _rename("defaults.page_size", "page_sise"),
     r"defaults\.page_sise: unknown field \(did you mean 'page_size'\?\)"),
    ("pico", _rename("memory", "memroy"), r"memroy: unknown field \(did you mean 'memory'\?\)"),
    ("pico", lambda d: d.pop("threads"), r"threads: missing"),
    ("pico", _set("memory.heap", 300_000), r"memory\.heap: 300000 bytes is more than sram"),
    ("pico", _set("memory.psram", -1), r"memory\.psram: -1 is out of range"),
    ("pico", _set("memory.sram", "264K"), r"memory\.sram: must be an integer, not a string"),
    ("pico", _set("defaults.frames", 512), r"defaults\.frames: 512 frames hold all 256 pages"),
    ("pico", _set("defaults.page_size", 1000), r"defaults\.page_size: 1000 is not a power of two"),
    ("pico", _set("defaults.zpool", 262144), r"defaults: need \d+ bytes of heap .* memory\.heap"),
    ("pico", _set("defaults.compressor", "fibre"), r"defaults\.compressor: 'fibre' is not one"),
    ("pico", _set("mpy_arch", "armv7emsp"), r"mpy_arch: 'armv7emsp' is wrong for RP2040"),
    ("pico", _set("mpy_arch", "arm64"), r"mpy_arch: 'arm64' is not one of"),
    ("pico", _set("name", "pico1"), r"name: 'pico1' differs from the file name 'pico'"),
    ("pico", _set("flash.method", "esptool"), r"flash\.method: 'esptool' does not flash a rp2"),
    ("pico", _set("flash.families", ["0xE48BFF59"]),
     r"flash\.families\[0\]: 0xe48bff59 is not a UF2 family of the RP2040"),
    ("pico", _set("flash.board_id", "RP2350"), r"flash\.board_id: 'RP2350' is not one of RPI-RP2"),
    ("pico", _set("usb", [{"id": "2E8A-0005", "what": "x"}]),
     r"usb\[0\]\.id: '2E8A-0005' is not a USB VID:PID"),
    ("pico", _set("usb", []), r"usb: a USB board needs at least one VID:PID"),
    ("pico", _set("chip", "ESP32"), r"chip: 'ESP32' is not a chip of the rp2 port"),
    ("pico", _set("firmware.format", "bin"), r"firmware\.format: 'bin' cannot be flashed by 'uf2'"),
    ("esp32-wrover", _set("flash.offset", "0x1001"), r"flash\.offset: 0x1001 is not on a 4 KiB"),
    ("esp32-wrover", _set("flash.offset", "4k"), r"flash\.offset: '4k' is not a number"),
    ("esp32-wrover", _set("flash.chip", "esp32s3"), r"flash\.chip: 'esp32s3' is not ESP32"),
    ("esp32-wrover", _set("defaults.compressor", "thread"),
     r"defaults\.compressor: 'thread' under a GIL"),
    ("esp32-wrover", _set("threads.gil", "yes"), r"threads\.gil: must be true or false"),
    ("esp32-s3-n8r8", _set("flash.board_id", "X"), r"flash\.board_id: unknown field"),
    ("esp32-s3-n8r8", lambda d: d["flash"].pop("method"), r"flash\.method: missing"),
    ("sim", _set("flash", "none"), r"flash: must be an object, not a string"),
]


@pytest.mark.parametrize("base,change,message", BROKEN, ids=[m[:40] for _, _, m in BROKEN])
def test_broken_profile_names_file_and_field(
    tmp_path: Path, base: str, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    path = _broken(tmp_path, base, change)
    with pytest.raises(ProfileError) as err:
        boards.load_file(path)
    text = str(err.value)
    assert text.startswith(f"{path}: "), text
    assert re.search(message, text), text
    assert "\n" not in text


def test_invalid_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "pico.json"
    path.write_text('{\n  "name": "pico",\n  "chip": RP2040\n}\n')
    with pytest.raises(ProfileError, match=rf"^{re.escape(str(path))}: line 3 column 11: "):
        boards.load_file(path)


def test_user_folder_shadows_and_broken_profile_fails_the_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _broken(tmp_path, "pico", _set("memory.heap", 10**9))
    monkeypatch.setenv(boards.ENV_BOARDS, str(tmp_path))
    assert boards.profile_paths()["pico"] == tmp_path / "pico.json"
    assert main(["boards"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ucompressd: error: ") and "pico.json: memory.heap:" in err
    assert "\n" not in err


def test_cli_lists_and_shows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    assert main(["boards", "--show", "esp32-s3-n8r8"]) == 0
    out = capsys.readouterr().out
    assert "esptool --chip esp32s3, write-flash at 0x0" in out and "GIL: yes" in out
    assert main(["boards", "--show", "nope"]) == 2
    assert "unknown board 'nope'" in capsys.readouterr().err


def test_ports_cli_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ports", "--all"]) == 0
    assert capsys.readouterr().out.strip()

"""The firmware's hot paths take no frame from the GC heap (see NATIVE in ucz/pool.py).

MicroPython gives a bytecode function whose locals and stack pass 11 words (exception
handlers count 3 each) a heap frame on every call, under the GC's mutex, which the compressor
thread on the other core wants too. The unix port's `-v -v` prints each bytecode function's
N_STATE and N_EXC_STACK as it compiles; a native function prints none (its frame is on the C
stack). Every function named here must be one or the other: native, or a small frame.
"""
from __future__ import annotations

import re

import pytest

from conftest import FIRMWARE, run_micropython

VM_MAX_STATE_ON_STACK = 11  # words: py/objfun.c
# Per access, per page or per batch, on the app's core or the compressor's.
HOT = {
    "pool": ("touch", "_fault", "get_frame", "compress", "place", "publish", "store_inline",
             "enqueue_batch", "dequeue_batch", "writeback"),
    "scanner": ("pick", "_batch", "direct"),
    "compressor": ("_drain",),
    "zpool": ("alloc", "free"),
    "lz4": ("compress_into", "decompress_into"),
    "auto": ("step",),
}


def heap_frames(module: str) -> dict[str, int]:
    """Bytecode functions of ucz/<module>.py -> frame words, for those whose frame is on the heap."""
    path = FIRMWARE / "ucz" / f"{module}.py"
    proc = run_micropython(["-v", "-v", "-c", f"compile(open({str(path)!r}).read(), 'm', 'exec')"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    blocks = re.findall(r"code block '([^']+)'.*?\(N_STATE (\d+)\)\s*\(N_EXC_STACK (\d+)\)",
                        proc.stdout, re.S)
    assert blocks, "no bytecode dump: " + proc.stdout[-500:]
    out = {}
    for name, n_state, n_exc in blocks:
        words = int(n_state) + 3 * int(n_exc)
        if words > VM_MAX_STATE_ON_STACK:
            out[name] = words
    return out


@pytest.mark.parametrize("module", sorted(HOT))
def test_hot_paths_take_no_heap_frame(module: str) -> None:
    src = (FIRMWARE / "ucz" / f"{module}.py").read_text()
    for name in HOT[module]:
        assert f"def {name}(" in src, f"{module}.{name} is gone: update HOT"
    hot = {n: w for n, w in heap_frames(module).items() if n in HOT[module]}
    assert not hot, f"{module}: hot functions with a heap frame (words): {hot}"


def test_the_check_sees_a_heap_frame() -> None:
    # runner.run, run once per experiment, has dozens of locals: a heap frame, and cold.
    assert heap_frames("runner").get("run", 0) > VM_MAX_STATE_ON_STACK

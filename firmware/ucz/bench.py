# Board-side measurement helpers for benchmarks/: the host runs them through the raw REPL,
#   import ucz.bench, json; print(json.dumps(ucz.bench.codec("mixed", 1024, 32, 1, 5)))
# and gets plain dicts back. Imports on CPython too (tests; the plain-Python codec is slow).
# Nothing here runs on the reclaim path: the server never imports it.
#
# Imports of other ucz modules are inside the functions: memory() measures what importing them
# costs, so this module must not have imported them already.
import gc
import sys

MICROPYTHON = sys.implementation.name == "micropython"

# Every module the server imports, directly or through runner (what "firmware at idle" holds).
SERVER_MODULES = ("compat", "wire", "counters", "pagedata", "lz4", "zpool", "pool", "scanner",
                  "compressor", "workload", "runner", "server")  # dependency order


def _impl():
    i = sys.implementation  # as runner.impl(), without importing runner
    return "%s %s %s" % (i.name, ".".join(str(x) for x in i.version[:3]), sys.platform)


def codec(kind="mixed", page_size=1024, pages=32, seed=1, reps=5):
    """Time lz4.compress_into / decompress_into over `pages` pages of one data kind.

    Pages are pagedata.fill(kind, seed, page=i, ver=0), i = 0..pages-1: the host regenerates
    the same bytes. Each repetition codes every page once; compress_us / decompress_us hold
    one total per repetition (the host takes medians). sizes: compressed bytes per page,
    sums: pagedata.csum of each compressed page (the host checks byte identity with them).
    """
    from .compat import ticks_us, ticks_diff
    from . import lz4
    from .pagedata import KINDS, fill, csum

    k = KINDS.index(kind)
    cap = lz4.bound(page_size)
    src = bytearray(pages * page_size)
    for p in range(pages):
        fill(src, p * page_size, page_size, k, seed, p, 0)
    dst = bytearray(pages * cap)
    page = bytearray(page_size)
    mv = memoryview(dst)
    outs = [mv[p * cap:(p + 1) * cap] for p in range(pages)]  # made once: the timed loop
    sizes = [0] * pages                                         # allocates nothing
    table = lz4.new_table()
    cz = lz4.compress_into
    dz = lz4.decompress_into
    comp_us = []
    dec_us = []
    for _ in range(reps):
        gc.collect()  # no collection inside the timed loops
        t0 = ticks_us()
        for p in range(pages):
            sizes[p] = cz(src, p * page_size, page_size, outs[p], table)
        t1 = ticks_us()
        for p in range(pages):
            dz(dst, p * cap, sizes[p], page, 0, page_size)
        t2 = ticks_us()
        comp_us.append(ticks_diff(t1, t0))
        dec_us.append(ticks_diff(t2, t1))
    # Round trip, outside the timing: every page decodes to its original.
    ok = True
    for p in range(pages):
        n = dz(dst, p * cap, sizes[p], page, 0, page_size)
        same = csum(page, 0, page_size) == csum(src, p * page_size, page_size)
        ok = ok and n == page_size and same
    return {
        "kind": kind,
        "page_size": page_size,
        "pages": pages,
        "seed": seed,
        "reps": reps,
        "impl": lz4.IMPL,
        "platform": _impl(),
        "bytes": pages * page_size,
        "compressed": sum(sizes),
        "sizes": sizes,
        "sums": [csum(dst, p * cap, sizes[p]) for p in range(pages)],
        "compress_us": comp_us,
        "decompress_us": dec_us,
        "roundtrip_ok": ok,
    }


def _alloc():
    gc.collect()
    return gc.mem_alloc() if MICROPYTHON else None


def _pool_heap(pages, frames, page_size, zbytes, arena):
    """Heap bytes a Pool's own structures take (the arena is passed in, so not counted)."""
    from .pool import Pool

    a0 = _alloc()
    p = Pool(pages, frames, page_size, zbytes, arena=arena)
    a1 = _alloc()
    meta = p.meta_bytes()
    p = None
    return (None if a0 is None else a1 - a0), meta


def memory(base=None, pages=1024, frames=64, page_size=256):
    """Heap the firmware holds at idle, and the pool metadata measured on the heap.

    Call it first thing in a fresh interpreter. heap_idle is what importing the server's
    modules and building its Server adds to the heap (ucz/__init__, one string, is already
    in before: left out). base: gc.mem_alloc() taken before `import ucz.bench`, to report
    what this measuring code itself costs (bench_loaded), which heap_idle does not include.
    Metadata: heap growth of a Pool when the logical pages (then the frames) double, with
    the arena allocated beforehand, against Pool.meta_bytes() (the documented formula).
    Heap figures are None on CPython (no gc.mem_alloc).
    """
    # Imported in dependency order, so each step's growth is mostly that module's own code
    # (bytecode, viper machine code, tables): where the idle heap goes.
    by_module = {}
    start = prev = _alloc()
    for name in SERVER_MODULES:
        __import__("ucz." + name)
        a = _alloc()
        if prev is not None and a is not None:
            by_module[name] = a - prev
        prev = a
    from . import server, lz4

    srv = server.Server(inp=sys.stdin, out=sys.stdout)  # its preallocated line buffer counts
    a_idle = _alloc()
    if prev is not None:
        by_module["Server()"] = a_idle - prev
    free_idle = gc.mem_free() if MICROPYTHON else None
    from .pool import arena_bytes

    zbytes = 4 * page_size
    # Frames grow 4x (not 2x): the GC's 16-byte blocks then blur the per-frame figure by
    # a third of a byte at most, not a whole one.
    arena = bytearray(arena_bytes(4 * frames, page_size, zbytes))
    h11, meta = _pool_heap(pages, frames, page_size, zbytes, arena)
    h21, _ = _pool_heap(2 * pages, frames, page_size, zbytes, arena)
    h14, _ = _pool_heap(pages, 4 * frames, page_size, zbytes, arena)
    arena = None
    per_page = per_frame = None
    if h11 is not None:
        per_page = (h21 - h11) / pages
        per_frame = (h14 - h11) / (3 * frames)
    return {
        "platform": _impl(),
        "lz4_impl": lz4.IMPL,
        "modules": list(SERVER_MODULES),
        "heap_idle": None if a_idle is None else a_idle - start,
        "bench_loaded": None if base is None or start is None else start - base,
        "heap_by_module": by_module,
        "server_line_buffer": len(srv.buf),
        "heap_alloc_idle": a_idle,
        "heap_free_idle": free_idle,
        "heap_total": None if a_idle is None else a_idle + free_idle,
        "meta_formula": {"bytes_per_page": meta[0], "bytes_per_frame": meta[1],
                         "fixed_bytes": meta[2]},
        "meta_measured": {"bytes_per_page": per_page, "bytes_per_frame": per_frame,
                          "pool_heap": h11, "pages": pages, "frames": frames,
                          "page_size": page_size},
    }

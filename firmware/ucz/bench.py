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


# -- zram: stores of application records with the same RAM (benchmarks/bench_zram.py) ---------

ZRAM_KINDS = ("text", "sensor", "json", "random")
ZRAM_STORES = ("ring", "ramblockdev", "zramlog", "zramdisk")
_LEVELS = (b"INFO", b"INFO", b"INFO", b"WARN", b"DEBUG")
_MSGS = (b"wifi: rssi=%d dBm, retry %d", b"mqtt: published %d bytes to sensors/%d",
         b"sensor: read ok in %d us (try %d)", b"battery: %d mV, %d%% left")


class Records:
    """Deterministic records of one kind: a log line, a CSV sample, a JSON record, or 48
    random bytes. record(i) must be called with i = 0, 1, 2 ... (a random walk)."""

    def __init__(self, kind, seed=1):
        self.k = ZRAM_KINDS.index(kind)
        self.x = seed
        self.v = [2150, 480, 10132, 4100]

    def _r(self, n):
        self.x = (self.x * 1664525 + 1013904223) & 0xFFFFFFFF
        return (self.x >> 8) % n

    def record(self, i):
        k = self.k
        r = self._r
        t = 8 * 3600 + i
        if k == 0:
            return b"2026-12-01 %02d:%02d:%02d %s %s\n" % (
                t // 3600 % 24, t // 60 % 60, t % 60, _LEVELS[r(5)], _MSGS[r(4)] % (r(90), r(9)))
        v = self.v
        v[0] += r(3) - 1
        v[1] += r(3) - 1
        if r(8) == 0:
            v[2] += r(3) - 1
        if k == 1:
            n = r(5) - 2
            return b"%d,%d.%02d,%d.%d,%d.%d\n" % (1764576000 + i, (v[0] + n) // 100,
                                                  (v[0] + n) % 100, v[1] // 10, v[1] % 10,
                                                  v[2] // 10, v[2] % 10)
        if k == 2:
            return (b'{"seq":%d,"ts":%d,"temp":%d.%02d,"hum":%d,"node":"n%d","ok":%s}\n'
                    % (i, 1764576000 + i, v[0] // 100, v[0] % 100, v[1] // 10, r(4),
                       b"true" if r(16) else b"false"))
        b = bytearray(48)
        for j in range(48):
            b[j] = r(256)
        return bytes(b)


class _Lat:
    """Latencies in 1 us buckets up to 4 ms (the last bucket: longer): exact p99 in 8 KB."""

    def __init__(self):
        from .compat import zeros

        self.h = zeros("H", 4096)
        self.n = 0
        self.total = 0

    def add(self, us):
        if us < 0:
            us = 0
        if us > 4095:
            us = 4095
        if self.h[us] < 0xFFFF:
            self.h[us] += 1
        self.n += 1
        self.total += us

    def q(self, f):
        need = f * self.n
        acc = 0
        for i in range(4096):
            acc += self.h[i]
            if acc >= need and acc:
                return i
        return None


class RAMBlockDev:
    """The RAM disk of MicroPython's documentation (blocks in one bytearray): the baseline
    that benchmarks and examples/datalogger.py compare ZramDisk with."""

    def __init__(self, block_size, num_blocks):
        self.bs = block_size
        self.data = bytearray(block_size * num_blocks)

    def readblocks(self, n, buf, off=0):
        a = n * self.bs + off
        buf[:] = self.data[a:a + len(buf)]

    def writeblocks(self, n, buf, off=0):
        a = n * self.bs + off
        self.data[a:a + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // self.bs
        if op == 5:
            return self.bs
        if op == 6:
            return 0


def _fill(dev, one, most, count, in_asyncio):
    """Call one() until it returns False or count() reaches most; in_asyncio: inside an
    asyncio loop with the device's run() task beside it (yielding every 8 calls)."""
    from .compat import asyncio

    if not in_asyncio:
        while count() < most and one():
            pass
        return

    async def main():
        t = asyncio.create_task(dev.run())
        while count() < most and one():
            if count() & 7 == 0:
                await asyncio.sleep(0)
        dev.stop_task()
        await asyncio.sleep(0)
        t.cancel()

    asyncio.run(main())


def zram(kind="text", store="zramlog", mode="kcompressd", compressor="thread", ram=96 * 1024,
         page=4096, disk_x=2, max_records=200000, block=1024):
    """Fill one store of `ram` bytes with records of one kind until it is full, then read
    every record back (verified against the generator). Returns what it held and the write
    and read latencies (us: p50/p99/max; throughput over the time inside the write calls).

    ring: a bytearray ring (held: the newest records that fit once it wrapped);
    ramblockdev: littlefs on the documented RAM disk; zramlog: ucz.zram.ZramLog;
    zramdisk: littlefs on a ZramDisk of disk_x * ram bytes in `block`-byte blocks (so RAM,
    not blocks, ends it; one growing file leaves littlefs little stale data). page: the
    ZramLog's page.
    Task placement runs the fill inside asyncio with the device's run() task beside it.
    """
    from .compat import ticks_us, ticks_diff
    from .pagedata import copy

    gc.collect()
    gen = Records(kind)
    wl = _Lat()
    rl = _Lat()
    out = {"kind": kind, "store": store, "mode": mode, "compressor": compressor, "ram": ram,
           "page": page, "block": block, "disk_x": disk_x, "platform": _impl()}
    dev = None
    held = 0
    nbytes = 0
    ok = True

    def recorder(put):
        # One record through put() (timed); False when the store refused it (full).
        def one():
            nonlocal held, nbytes
            rec = gen.record(held)
            t0 = ticks_us()
            try:
                put(rec)
            except OSError:
                return False
            wl.add(ticks_diff(ticks_us(), t0))
            held += 1
            nbytes += len(rec)
            return True

        return one

    if store == "ring":
        buf = bytearray(ram)
        pos = 0
        lens = []
        used = 0
        while used < 2 * ram:
            rec = gen.record(len(lens))
            n = len(rec)
            t0 = ticks_us()
            end = pos + n
            if end <= ram:
                copy(buf, pos, rec, 0, n)
            else:
                k = ram - pos
                copy(buf, pos, rec, 0, k)
                copy(buf, 0, rec, k, n - k)
            pos = end % ram
            wl.add(ticks_diff(ticks_us(), t0))
            lens.append(n)
            used += n
        total = 0
        for n in reversed(lens):
            if total + n > ram:
                break
            total += n
            held += 1
        nbytes = total
        # Read the held records back, newest first (the ring's own order), checked.
        chk = Records(kind)
        recs = [chk.record(i) for i in range(len(lens))]
        tmp = bytearray(4096)
        p = pos
        for j in range(held):
            rec = recs[len(lens) - 1 - j]
            n = len(rec)
            t0 = ticks_us()
            a = p - n
            if a >= 0:
                copy(tmp, 0, buf, a, n)
            else:
                copy(tmp, 0, buf, ram + a, -a)
                copy(tmp, -a, buf, 0, n + a)
            rl.add(ticks_diff(ticks_us(), t0))
            p = a % ram
            ok = ok and tmp[:n] == rec
        recs = None
    elif store == "zramlog":
        from .zram import ZramLog

        dev = ZramLog(ram, page_size=page, mode=mode, compressor=compressor)

        _fill(dev, recorder(dev.append), max_records, lambda: held,
              compressor == "task" and mode == "kcompressd")
        chk = Records(kind)
        i = 0
        t0 = ticks_us()
        for rec in dev:
            rl.add(ticks_diff(ticks_us(), t0))
            ok = ok and rec == chk.record(i)
            i += 1
            t0 = ticks_us()
        ok = ok and i == held
    else:
        import vfs

        if store == "ramblockdev":
            dev = RAMBlockDev(512, ram // 512)
        else:
            from .zram import ZramDisk

            dev = ZramDisk(int(disk_x * ram) // block * block, ram, block_size=block,
                           mode=mode, compressor=compressor)
        vfs.VfsLfs2.mkfs(dev)
        fs = vfs.VfsLfs2(dev)
        vfs.mount(fs, "/bench")
        try:
            f = open("/bench/log", "wb")

            def put(rec):
                f.write(rec)
                if held & 63 == 63:
                    f.flush()  # as a logger does: a crash loses little; full shows here

            _fill(dev, recorder(put), max_records, lambda: held,
                  store == "zramdisk" and compressor == "task" and mode == "kcompressd")
            try:
                f.close()
            except OSError:
                pass  # full: what reached the device is what the file holds
            # Read it back record by record, checked: held is what the file really holds
            # (the writes after the last flush of a full device may be lost, not garbled).
            chk = Records(kind)
            got = 0
            nbytes = 0
            with open("/bench/log", "rb") as f:
                while got < held:
                    rec = chk.record(got)
                    t0 = ticks_us()
                    data = f.read(len(rec))
                    rl.add(ticks_diff(ticks_us(), t0))
                    if data != rec:
                        ok = ok and len(data) < len(rec)  # a cut tail, not a wrong byte
                        break
                    got += 1
                    nbytes += len(rec)
            ok = ok and got > 0
            held = got
            if store == "zramdisk":
                out["stats_fs"] = {k: v for k, v in dev.stats(fs).items()
                                   if k in ("stale_share", "blocks_held", "fs_used_bytes")}
        finally:
            vfs.umount("/bench")
    out["records"] = held
    out["bytes"] = nbytes
    out["ok"] = ok
    out["write_us"] = {"p50": wl.q(0.5), "p99": wl.q(0.99), "max": wl.q(1.0), "n": wl.n,
                       "total": wl.total}
    out["read_us"] = {"p50": rl.q(0.5), "p99": rl.q(0.99), "max": rl.q(1.0), "n": rl.n}
    out["write_Bps"] = nbytes * 1000000 // wl.total if wl.total else None
    if store in ("zramlog", "zramdisk"):
        s = dev.stats()
        out["stats"] = {k: s[k] for k in (
            "orig_data_size", "compr_data_size", "mem_used", "same_pages", "huge_pages",
            "pages_stored", "discarded", "free_bytes", "pgsteal_anon", "allocstall",
            "kcompressd_fallback", "kcompressd_queue_max", "pgrescued", "corrupt", "enospc",
            "mode", "compressor")}
        if "compressor_error" in s:
            out["compressor_error"] = s["compressor_error"]
        dev.close()
    dev = None
    gc.collect()
    return out

# One experiment: build the pool, start the scanner, the compressor and the app, sample the
# counters, and return the results. The host validates arguments with config() too (one
# definition of the rules), so this module must stay importable on CPython.
import gc
import sys
from .compat import asyncio, ticks_us, ticks_diff, async_sleep_ms, MICROPYTHON, THREADS, NO_THREADS, sync_ticks
from . import counters as C
from .pagedata import KINDS, lcg
from .pool import Pool, arena_bytes, ZSTORED, STATE
from .scanner import Scanner
from .compressor import Compressor
from .workload import Workload, WORKLOADS, app
from . import VERSION

DEFAULTS = {
    # kswapd: the scanner compresses; kcompressd: a compressor does; auto: per batch, the one
    # that costs the app's core less (starts as kcompressd with a compressor thread; with a
    # task, one core, it is kswapd: see run()). auto is
    # the default because users run one-core boards, busy hosts and idle time, where the split
    # loses (0.50x and 0.71x kswapd measured) and auto does not, at about kcompressd's gain
    # on two free cores.
    "mode": "auto",
    "compressor": "thread",  # kcompressd placement: task (same core) or thread (second core)
    "workload": "uniform",
    # The default experiment: a data logger's text pages (Linux-size 4 KiB pages) at 4 pages
    # per frame. Needs a ~500 KB heap (a PSRAM board); a Pico 2 runs 1 KiB pages (its profile).
    "pages": 128,           # logical pages
    "frames": 32,           # page frames (pages > frames: memory pressure)
    "page_size": 4096,
    "zpool": 0,             # compressed store bytes; 0: sized from pages, frames and data kind
    "ring": 64,             # kcompressd FIFO entries
    "batch": 8,             # pages isolated / drained per lock round (chosen by measurement)
    "assist": 1,            # 1: the scanner stores queued pages itself when free is at low
    "ops": 50000,
    "write_pct": 30,
    "think_us": 0,          # idle time per access (background reclaim runs then)
    "yield_ops": 8,         # with no think time, the app yields to the loop this often
    "duration_ms": 0,       # cap on the run's length; 0: none
    "data": "text",
    "seed": 1,
    "hot_pct": 10,          # hotcold/bursty: size of the hot set
    "burst": 64,            # bursty: accesses per burst
    "gap_ms": 5,            # bursty: idle time between bursts
    # Longest the scanner (or a task compressor) runs before yielding: about what the app
    # runs between its yields, a fair share of the core as kswapd gets from the scheduler.
    "slice_us": 200,
    "wmark_min": 0,         # watermarks in free frames; 0: defaults from frames
    "wmark_low": 0,
    "wmark_high": 0,
    "sample_ms": 100,       # period of sample events
    "check_every": 0,       # check every invariant each N ops (tests); 0: never
    "pressure": 1,          # 1: refuse configs with frames >= pages (no reclaim would happen)
}

CHOICES = {
    "mode": ("kswapd", "kcompressd", "auto"),
    "compressor": ("task", "thread"),
    "workload": WORKLOADS,
    "data": KINDS,
}

# Inclusive ranges of the int knobs.
RANGES = {
    "pages": (1, 65534), "frames": (4, 65534), "page_size": (256, 4096), "zpool": (0, 1 << 30),
    "ring": (1, 65534), "batch": (1, 256), "assist": (0, 1), "ops": (1, 1 << 30), "write_pct": (0, 100), "think_us": (0, 10000000),
    "yield_ops": (1, 1 << 20), "duration_ms": (0, 86400000), "seed": (0, (1 << 30) - 1),
    "hot_pct": (1, 100), "burst": (1, 1 << 20), "gap_ms": (0, 60000), "slice_us": (50, 1000000),
    "wmark_min": (0, 65534), "wmark_low": (0, 65534), "wmark_high": (0, 65534),
    "sample_ms": (10, 600000), "check_every": (0, 1 << 30), "pressure": (0, 1),
}

# Auto zpool: eighths of a page per non-resident page, by data kind (measured LZ4 output plus
# slot rounding; random pages are stored raw, whole).
_ZEIGHTHS = {"zero": 1, "pattern": 2, "text": 5, "sensor": 8, "random": 8, "mixed": 6}


def config(args):
    """Defaults filled in and every value checked; ValueError("<key>: <problem>") otherwise."""
    cfg = dict(DEFAULTS)
    for k in args:
        if k not in DEFAULTS:
            raise ValueError("%s: unknown parameter" % k)
        v = args[k]
        if isinstance(DEFAULTS[k], str):
            if v not in CHOICES[k]:
                raise ValueError("%s: %r is not one of %s" % (k, v, ", ".join(CHOICES[k])))
        else:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError("%s: %r is not an integer" % (k, v))
            lo, hi = RANGES[k]
            if not lo <= v <= hi:
                raise ValueError("%s: %d is out of range %d..%d" % (k, v, lo, hi))
        cfg[k] = v
    if not THREADS and cfg["compressor"] == "thread":
        if "compressor" in args and cfg["mode"] != "kswapd":
            raise ValueError("compressor: thread: " + NO_THREADS)
        cfg["compressor"] = "task"  # the default placement is a second core only where one exists
    ps = cfg["page_size"]
    if ps & (ps - 1):
        raise ValueError("page_size: %d is not a power of two" % ps)
    if cfg["pressure"] and cfg["frames"] >= cfg["pages"]:
        raise ValueError("frames: %d frames hold all %d pages, so nothing is reclaimed "
                         "(use fewer frames, or pressure=0)" % (cfg["frames"], cfg["pages"]))
    if cfg["zpool"] == 0:
        out = max(0, cfg["pages"] - cfg["frames"])
        # +16 pages: the partly filled zspages of the size classes in use.
        cfg["zpool"] = (out * _ZEIGHTHS[cfg["data"]] // 8 + 16) * ps
    elif cfg["zpool"] < ps:
        raise ValueError("zpool: %d bytes hold no page of %d bytes" % (cfg["zpool"], ps))
    if cfg["batch"] > cfg["ring"]:
        if "batch" in args:
            raise ValueError("batch: %d is more than the ring's %d slots"
                             % (cfg["batch"], cfg["ring"]))
        cfg["batch"] = cfg["ring"]  # a small ring takes smaller batches by default
    w = (cfg["wmark_min"], cfg["wmark_low"], cfg["wmark_high"])
    if any(w) and not (0 < w[0] < w[1] < w[2] < cfg["frames"]):
        raise ValueError("wmark_min: watermarks need 0 < min < low < high < frames")
    return cfg


def impl():
    i = sys.implementation
    return "%s %s %s" % (i.name, ".".join(str(x) for x in i.version[:3]), sys.platform)


def _sample(pool, t0):
    pool.gauges()
    d = C.export(pool.c)
    d["t_us"] = ticks_diff(ticks_us(), t0)
    d["free"] = pool.nfree
    d["queued"] = pool.nqueued
    d["ring"] = pool.rcount
    return d


def arena_needed(cfg):
    return arena_bytes(cfg["frames"], cfg["page_size"], cfg["zpool"])


def makes_compressor(cfg):
    """Whether a run of cfg builds a Compressor (and with it a second Scratch)."""
    return cfg["mode"] == "kcompressd" or cfg["mode"] == "auto" and cfg["compressor"] == "thread"


def run(cfg, emit=None, arena=None, audit=0):
    """Run one experiment (cfg from config()); emit(kind, data) streams samples and progress.

    arena: a bytearray of at least arena_needed(cfg) bytes for frames and zpool, allocated
    early by the caller (a board's heap fragments); None allocates one now.
    audit: after the run, emit up to this many compressed pages as "audit" events (see
    audit()) while the pool still exists, so the host can check them with another codec.
    """
    gc.collect()
    sync_ticks()  # the QEMU boards: the same clock phase at every run's start
    pool = Pool(cfg["pages"], cfg["frames"], cfg["page_size"], cfg["zpool"],
                data=KINDS.index(cfg["data"]), seed=cfg["seed"], wmin=cfg["wmark_min"],
                wlow=cfg["wmark_low"], whigh=cfg["wmark_high"], ring=cfg["ring"], arena=arena,
                batch=cfg["batch"])
    comp = None
    if makes_compressor(cfg):
        comp = Compressor(pool, cfg["compressor"], cfg["slice_us"])
    # auto with the compressor on the app's core (a board with one core, or a GIL) is kswapd:
    # a task compressor adds the ring's round trip to the same compression, so auto never
    # tried it, but the idle compressor and auto's bookkeeping were paid (qemu-m0, emulated
    # time, the same events: 3.1% longer than kswapd; none made: 0.5% shorter).
    scanner = Scanner(pool, comp, cfg["slice_us"], auto=cfg["mode"] == "auto",
                      assist=cfg["assist"])
    wl = Workload(WORKLOADS.index(cfg["workload"]), cfg["pages"], cfg["seed"],
                  cfg["write_pct"], cfg["hot_pct"])
    problems = []
    ops = cfg["ops"]
    progress = None
    if emit is not None:
        def progress(i):
            if i & 4095 == 0:
                emit("progress", {"ops": i, "of": ops})

    async def sampler(t0):
        while True:
            await async_sleep_ms(cfg["sample_ms"])
            emit("sample", _sample(pool, t0))

    async def main():
        t0 = ticks_us()
        tasks = [asyncio.create_task(scanner.run())]
        if emit is not None:
            tasks.append(asyncio.create_task(sampler(t0)))
        try:
            if comp is not None:
                t = comp.start()
                if t is not None:
                    tasks.append(t)
            await app(pool, wl, ops, cfg["think_us"], cfg["yield_ops"], cfg["duration_ms"],
                      cfg["burst"], cfg["gap_ms"], cfg["check_every"], problems, progress)
        finally:
            # Stop the compressor first: after this no thread touches the pool.
            if comp is not None:
                comp.stop()
            scanner.stop()
            for t in tasks:
                t.cancel()
            pool.c[C.ELAPSED_US] = ticks_diff(ticks_us(), t0)

    gc.collect()
    try:
        asyncio.run(main())
    finally:
        if MICROPYTHON:
            # MicroPython's asyncio keeps the last loop's tasks, and through them this pool
            # (frames, zpool): a fresh loop lets the next run in this session have the heap.
            asyncio.new_event_loop()
    if cfg["check_every"]:
        problems.extend(pool.check())
    r = result(pool, cfg, comp, problems)
    if audit and emit is not None:
        r["audit"] = send_audit(pool, audit, emit)
    return r


AUDIT_CHUNK = 1024  # compressed bytes per audit event: 1368 base64 chars, well under MAX_LINE


def audit_pages(pool, n):
    """Up to n pages stored LZ4-compressed (ZSTORED, clen < page size), chosen from the seed:
    the same run always audits the same pages. Raw (incompressible) pages are left out: they
    never went through the codec. Returns (pages, how many were eligible)."""
    N = pool.npages
    eligible = 0
    for p in range(N):
        if pool.state[p] & STATE == ZSTORED and pool.clen[p] < pool.P:
            eligible += 1
    # Visit every page once in a seeded order: a start and a stride coprime to N.
    x = lcg(pool.seed ^ 0x5A17)
    start = x % N
    step = 1 + lcg(x) % N
    while _gcd(step, N) != 1:
        step += 1
    pages = []
    p = start
    for _ in range(N):
        if len(pages) >= n:
            break
        if pool.state[p] & STATE == ZSTORED and pool.clen[p] < pool.P:
            pages.append(p)
        p = (p + step) % N
    return pages, eligible


def send_audit(pool, n, emit):
    """Emit the chosen pages' compressed bytes, AUDIT_CHUNK at a time: events
    {"page", "ver", "clen", "off", "b64"}; returns {"sent": pages, "eligible": n}."""
    from binascii import b2a_base64

    pages, eligible = audit_pages(pool, n)
    z = pool.z
    mv = memoryview(z.buf)
    for p in pages:
        clen = pool.clen[p]
        zoff = z.offset(pool.val[p])
        for o in range(0, clen, AUDIT_CHUNK):
            k = min(AUDIT_CHUNK, clen - o)
            b64 = b2a_base64(mv[zoff + o : zoff + o + k]).decode().rstrip()
            emit("audit", {"page": p, "ver": pool.ver[p], "clen": clen, "off": o, "b64": b64})
    return {"sent": len(pages), "eligible": eligible}


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def result(pool, cfg, comp, problems):
    pool.gauges()
    per_page, per_frame, fixed = pool.meta_bytes()
    r = {
        "config": cfg,
        "impl": impl(),
        "version": VERSION,
        "counters": C.export(pool.c),
        "stall_hist": list(pool.hist),
        "zpool": pool.z.stats(),
        "states": pool.state_counts(),
        "meta": {"bytes_per_page": per_page, "bytes_per_frame": per_frame,
                 "fixed_bytes": fixed,
                 "total_bytes": per_page * pool.npages + per_frame * pool.nframes + fixed},
        "watermarks": [pool.wmin, pool.wlow, pool.whigh],
        "problems": problems,
    }
    if comp is not None and comp.error:
        r["compressor_error"] = comp.error
    if MICROPYTHON:
        gc.collect()
        r["heap_free"] = gc.mem_free()
        r["heap_alloc"] = gc.mem_alloc()
    return r

# Seeded access patterns and the app task that drives them. Page contents come from
# pagedata (seed, page, version); every read is verified by Pool.touch.
from .compat import const, asyncio, ticks_ms, ticks_diff, zeros, async_sleep_ms
from . import counters as C
from .pagedata import rand, mix

SEQ = const(0)
UNIFORM = const(1)
HOTCOLD = const(2)
ZIPF = const(3)
BURSTY = const(4)
WORKLOADS = ("seq", "uniform", "hotcold", "zipf", "bursty")


class Workload:
    """Which page each op touches and whether it writes: one 32-bit generator, no objects."""

    def __init__(self, kind, npages, seed, write_pct, hot_pct=10):
        self.kind = kind
        self.npages = npages
        self.write_pct = write_pct
        self.nhot = max(1, npages * hot_pct // 100)
        self.rng = zeros("I", 1)
        self.rng[0] = mix(seed, 0xFFFF, 0x5EED) >> 2  # a small int on every port
        self.cursor = 0

    def next_page(self):
        r = rand(self.rng)  # 24 random bits
        k = self.kind
        n = self.npages
        if k == SEQ:
            # Ring-buffer logging: the writer sweeps the pages in order, forever.
            p = self.cursor
            self.cursor = p + 1 if p + 1 < n else 0
            return p
        if k == UNIFORM:
            return r % n
        if k == ZIPF:
            # Cubic skew of a uniform 16-bit u: page ~ n*u^3, a Zipf-like head and long tail.
            u = r >> 8
            x = (((u * u) >> 16) * u) >> 16
            return (x * n) >> 16
        # HOTCOLD and BURSTY: 90% of accesses to the first hot_pct% of the pages.
        if (r & 0xFF) < 230:
            return (r >> 8) % self.nhot
        return (r >> 8) % n

    def is_write(self):
        return (rand(self.rng) & 0xFFFF) % 100 < self.write_pct


async def app(pool, wl, ops, think_us=0, yield_ops=8, duration_ms=0, burst=64, gap_ms=5,
              check_every=0, problems=None, progress=None):
    """The application: `ops` accesses, idling `think_us` per access (where the scanner and a
    task compressor get the core), else yielding every `yield_ops` accesses. `bursty`
    does bursts of `burst` accesses separated by `gap_ms` of idle time (an IoT duty cycle)."""
    c = pool.c
    t0 = ticks_ms()
    debt = 0
    bursty = wl.kind == BURSTY
    for i in range(1, ops + 1):
        pool.touch(wl.next_page(), wl.is_write())
        c[C.OPS] += 1
        if check_every and i % check_every == 0:
            bad = pool.check()
            if bad and problems is not None and len(problems) < 20:
                problems.extend(bad[:20 - len(problems)])
        if bursty and i % burst == 0:
            await async_sleep_ms(gap_ms)
        elif think_us:
            debt += think_us
            if debt >= 1000:
                await async_sleep_ms(debt // 1000)
                debt %= 1000
            elif i % yield_ops == 0:
                await asyncio.sleep(0)
        elif i % yield_ops == 0:
            await asyncio.sleep(0)
        if (i & 255) == 0:
            if progress is not None:
                progress(i)
            if duration_ms and ticks_diff(ticks_ms(), t0) >= duration_ms:
                break

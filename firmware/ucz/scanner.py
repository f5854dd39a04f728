# kswapd analog: a cooperative asyncio task woken at the low watermark. It ages resident pages
# with CLOCK (second chance on the REF bit, which every access sets) and reclaims victims until
# free (+ queued) >= high, yielding to the loop after each slice.
#   kswapd mode:     it compresses each victim itself (Linux without kcompressd);
#   kcompressd mode: it isolates the victim into the ring and moves on; a full ring makes it
#                    compress inline (kcompressd_fallback), as swap_writepage() does.
# Direct reclaim (an allocation that found free <= min) uses the same CLOCK hand, synchronously.
from .compat import asyncio, ticks_us, ticks_diff, Wakeup
from . import counters as C
from .pool import RESIDENT, STATE, REF, NONE


class Scanner:
    def __init__(self, pool, compressor=None, slice_us=200):
        self.pool = pool
        pool.scanner = self
        self.comp = compressor  # None: kswapd mode
        self.slice_us = slice_us
        self.hand = 0
        self.awake = False
        self.running = True
        self.event = None  # made inside the loop (CPython binds events to their loop)
        # SWAP_CLUSTER_MAX analog: how many pages one direct reclaim tries to free.
        self.nr_direct = max(4, min(32, pool.nframes // 32))

    def wake(self):
        if not self.awake:
            self.awake = True
            self.pool.c[C.KSWAPD_WAKE] += 1
            if self.event is not None:
                self.event.set()

    def pick(self, scan):
        """Next victim under the CLOCK hand, or -1 when no page is resident. Main thread only."""
        pool = self.pool
        owner = pool.owner
        state = pool.state
        c = pool.c
        n = pool.nframes
        h = self.hand
        for _ in range(n + n):  # two sweeps: the first may only clear REF bits
            f = h
            h += 1
            if h == n:
                h = 0
            p = owner[f]
            if p == NONE:
                continue
            s = state[p]
            if s & STATE != RESIDENT:
                continue
            c[scan] += 1
            if s & REF:
                state[p] = s & ~REF
                c[C.PGREFILL] += 1
                continue
            self.hand = h
            return p
        self.hand = h
        return -1

    def direct(self):
        """Direct reclaim for a stalled allocation: compress victims inline, synchronously."""
        pool = self.pool
        c = pool.c
        sc = pool.scratch
        t0 = ticks_us()
        busy0 = sc.busy
        nr = 0
        while nr < self.nr_direct:
            p = self.pick(C.PGSCAN_DIRECT)
            if p < 0 or not pool.store_inline(p, C.PGSTEAL_DIRECT):
                break
            nr += 1
        # Nothing resident to take (all queued, or the zpool refused): do the ring's work here.
        while nr < self.nr_direct:
            p = pool.dequeue(sc)
            if p < 0:
                break
            pool.writeback(p, sc, C.PGSTEAL_DIRECT)
            nr += 1
        c[C.SCAN_US] += ticks_diff(ticks_us(), t0) - (sc.busy - busy0)

    async def run(self):
        pool = self.pool
        c = pool.c
        comp = self.comp
        sc = pool.scratch
        self.event = Wakeup()
        while self.running:
            if not self.awake:
                await self.event.wait()
                continue
            t0 = ticks_us()
            busy0 = sc.busy
            done = False
            while True:
                if pool.nfree + pool.nqueued >= pool.whigh:
                    done = True
                    break
                p = self.pick(C.PGSCAN_KSWAPD)
                if p < 0:
                    done = True  # nothing resident left to age: wait for the next wake-up
                    break
                if comp is None:
                    ok = pool.store_inline(p, C.PGSTEAL_KSWAPD)
                elif pool.enqueue(p):
                    comp.kick()
                    ok = True
                else:
                    c[C.KCOMPRESSD_FALLBACK] += 1
                    ok = pool.store_inline(p, C.PGSTEAL_KSWAPD)
                if not ok:
                    done = True  # zpool full: retrying now would only spin
                    break
                if ticks_diff(ticks_us(), t0) >= self.slice_us:
                    break
            c[C.SCAN_US] += ticks_diff(ticks_us(), t0) - (sc.busy - busy0)
            if done:
                self.awake = False
            await asyncio.sleep(0)

    def stop(self):
        self.running = False
        if self.event is not None:
            self.event.set()

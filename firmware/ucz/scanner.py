# kswapd analog: a cooperative asyncio task woken at the low watermark. It ages resident pages
# with CLOCK (second chance on the REF bit, which every access sets) and reclaims victims in
# batches until free (+ queued) >= high, yielding to the loop after each slice.
#   kswapd mode:     it compresses each victim itself (Linux without kcompressd);
#   kcompressd mode: it isolates a batch of victims into the ring in one lock round and moves
#                    on; a full ring makes it compress the *oldest* queued page inline and then
#                    queue the new one (LRU order kept: kcompressd_fallback). Cheap pages
#                    (same-filled, known incompressible) never cross cores: stored inline;
#   auto mode:       per batch, one or the other, chosen by measurement (ucz.auto).
# Direct reclaim (an allocation that found free <= min) uses the same CLOCK hand, synchronously.
from .compat import asyncio, ticks_us, ticks_diff, Wakeup, micropython
from . import counters as C
from .pool import RESIDENT, STATE, REF, NONE, PICKED, CHEAP_SAME

class Scanner:
    def __init__(self, pool, compressor=None, slice_us=200, auto=False, assist=True):
        self.pool = pool
        pool.scanner = self
        self.comp = compressor  # None: kswapd mode
        self.slice_us = slice_us
        # Store the ring's oldest pages here when the compressor is behind (see run()): fewer
        # stalls, for scanner time on the app's core (a trade: the knob lets it be measured).
        self.assist = assist
        self.hand = 0
        self.awake = False
        self.running = True
        self.event = None  # made inside the loop (CPython binds events to their loop)
        # SWAP_CLUSTER_MAX analog: how many pages one direct reclaim tries to free, inline.
        self.nr_direct = max(4, min(32, pool.nframes // 32))
        self.auto = None
        if auto and compressor is not None:
            # Start from what the board is: a compressor thread (a second core, no GIL, as
            # the host chose from the board's hello) hands off; a task on this core does not.
            from .auto import Auto  # only auto runs pay its code's heap (zram devices do not)

            thread = compressor.placement == "thread"
            self.auto = Auto(pool, thread, not thread)
            compressor.doze = not thread

    def _offloading(self):
        """True while victims go to the compressor (kcompressd, or auto handing off)."""
        return self.comp is not None and (self.auto is None or self.auto.offload)

    def wake(self):
        if not self.awake:
            self.awake = True
            self.pool.c[C.KSWAPD_WAKE] += 1
            if self.event is not None:
                self.event.set()

    @micropython.native  # see NATIVE in pool.py
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
            if s & STATE != RESIDENT or s & PICKED:
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

    @micropython.native  # see NATIVE in pool.py
    def direct(self):
        """Direct reclaim for a stalled allocation: compress victims inline, synchronously.

        Pages already in the ring go first, oldest first: they are victims chosen already,
        so storing them evicts nothing more (it used to compress nr_direct more resident
        pages while the ring held a dozen), and each one the stall stores is one the
        compressor no longer has to.

        While handing off, a stall frees one page, the one its allocation needs: the compressor
        (and the scanner's assist) deliver the rest. Freeing nr_direct made each stall as long
        as kswapd's (4 stores, 300-570 us measured), and with a few dozen stalls per run the
        p99 is the slowest of them: 1,024 us against kswapd's 512. Freeing one: p99 128-256
        us, no more stalls, a quarter of the stall time (interleaved runs, 3 and then 4).
        """
        pool = self.pool
        c = pool.c
        sc = pool.scratch
        t0 = ticks_us()
        busy0 = sc.busy
        nr_direct = self.nr_direct
        if self._offloading():
            nr_direct = 1
        nr = 0
        while nr < nr_direct and pool.nqueued:
            r = pool.writeback_oldest(C.PGSTEAL_DIRECT)
            if r <= 0:
                break  # the ring is empty (the rest are being written back) or the zpool full
            nr += 1
        while nr < nr_direct:
            p = self.pick(C.PGSCAN_DIRECT)
            if p < 0 or not pool.store_inline(p, C.PGSTEAL_DIRECT):
                break
            nr += 1
        c[C.SCAN_US] += ticks_diff(ticks_us(), t0) - (sc.busy - busy0)

    @micropython.native  # see NATIVE in pool.py
    def _batch(self, want, offload, t0):
        """Reclaim up to `want` victims (at most one batch); returns pages taken (-1: zpool
        full, retrying now would only spin; 0: nothing resident to take).

        Inline, a batch saves no lock round, so the slice is checked after every page (as
        kswapd's scanner always did): a batch does not buy it a longer turn than the app's.
        """
        pool = self.pool
        c = pool.c
        if want > pool.batch:
            want = pool.batch
        if not offload:
            got = 0
            while got < want:
                p = self.pick(C.PGSCAN_KSWAPD)
                if p < 0:
                    break
                got += 1
                if not pool.store_inline(p, C.PGSTEAL_KSWAPD):
                    return -1
                if ticks_diff(ticks_us(), t0) >= self.slice_us:
                    break
            return got
        victims = pool.scratch.pages
        state = pool.state
        n = 0
        got = 0
        full = False
        while got < want:
            p = self.pick(C.PGSCAN_KSWAPD)
            if p < 0:
                break
            got += 1
            k = pool.cheap(p)
            if k:
                # Same-filled or incompressible: a word or a copy here costs less than the
                # ring round trip. Cheap pages never cross cores.
                c[C.KCOMPRESSD_CHEAP] += 1
                if not pool.store_inline(p, C.PGSTEAL_KSWAPD, k == CHEAP_SAME):
                    full = True
                    break
            else:
                state[p] |= PICKED  # until it is queued (enqueue clears it)
                victims[n] = p
                n += 1
        if n:
            k = pool.enqueue_batch(victims, n)
            while k < n:
                p = victims[k]
                k += 1
                # Ring full: the compressor is behind. Compress its oldest page here and queue
                # the new one behind the rest (LRU order), as the kcompressd port does.
                r = -1 if full else pool.writeback_oldest(C.PGSTEAL_KSWAPD)
                if r > 0:
                    c[C.KCOMPRESSD_FALLBACK] += 1
                elif r == 0:
                    full = True
                if full or not pool.enqueue(p):
                    state[p] &= ~PICKED  # (-1 above: only stale entries, gone now)
                    if full or not pool.store_inline(p, C.PGSTEAL_KSWAPD):
                        full = True
            if self.comp is not None:
                self.comp.kick()
        return -1 if full else got

    async def run(self):
        pool = self.pool
        c = pool.c
        comp = self.comp
        auto = self.auto
        offload = self._offloading()
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
                want = pool.whigh - pool.nfree - pool.nqueued
                if want <= 0:
                    if not self.assist or pool.nfree > pool.wlow or not pool.nqueued:
                        done = True
                        break
                    # Enough is queued, but free is still at low: the compressor is behind.
                    # Store its oldest page here, in the background, before the app runs into
                    # min and does it in a stall.
                    r = pool.writeback_oldest(C.PGSTEAL_KSWAPD)
                    if r <= 0:
                        done = True  # zpool full, or the rest are being written back already
                        break
                    c[C.KCOMPRESSD_ASSIST] += 1
                    if ticks_diff(ticks_us(), t0) >= self.slice_us:
                        break
                    continue
                n = self._batch(want, offload, t0)
                if auto is not None:
                    offload = auto.step(comp)
                if n <= 0:
                    done = True  # nothing resident to age, or the zpool is full: wait
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

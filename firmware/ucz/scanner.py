# kswapd analog: a cooperative asyncio task woken at the low watermark. It ages resident pages
# with CLOCK (second chance on the REF bit, which every access sets) and reclaims victims in
# batches until free (+ queued) >= high, yielding to the loop after each slice.
#   kswapd mode:     it compresses each victim itself (Linux without kcompressd);
#   kcompressd mode: it isolates a batch of victims into the ring in one lock round and moves
#                    on; a full ring makes it compress the *oldest* queued page inline and then
#                    queue the new one (LRU order kept: kcompressd_fallback). Cheap pages
#                    (same-filled, known incompressible) never cross cores: stored inline;
#   auto mode:       per batch, one or the other, chosen by measurement (see Auto).
# Direct reclaim (an allocation that found free <= min) uses the same CLOCK hand, synchronously.
from .compat import const, asyncio, ticks_us, ticks_diff, Wakeup
from . import counters as C
from .pool import RESIDENT, STATE, REF, NONE, PICKED

# Auto's measurement: a window is this many reclaimed pages (about 25 ms of a busy default
# run: long enough that one host preemption of a few ms does not decide it).
WINDOW_PAGES = const(256)
# A trial of the other design must beat the current one's recent cost by 1/8 (12.5%) to win:
# the hysteresis that keeps two near-equal designs from flapping.
MARGIN_8THS = const(7)
# Windows between trials: starts short (both designs measured early), doubles after every
# trial lost (a trial of the worse design costs up to one window), resets after a switch.
PROBE_MIN = const(1)
PROBE_MAX = const(32)


class Auto:
    """Chooses, per batch, between handing victims off (kcompressd) and compressing them
    inline (kswapd), by what a reclaimed page costs the app's core: the wall time of a window
    of WINDOW_PAGES reclaimed pages, which holds every cost the split adds or saves there
    (lock rounds, ring backlog, fallbacks, stalls while pages sit queued, inline compression,
    and a compressor thread that turns out to share the app's core).

    It runs the current design and, every `probe` windows, one window of the other (a trial,
    kcompressd_auto_probe); the trial wins when it beats the current design's running cost
    (mean of its recent windows) by the margin, and that switch is counted
    (kcompressd_auto_inline / kcompressd_auto_offload). Main thread only; allocates nothing.
    """

    def __init__(self, pool, offload, same_core):
        self.pool = pool
        self.offload = offload
        # A task compressor runs on this core: the hand-off adds the ring round trip to the
        # same compression, so it can never pay; no trials.
        self.same_core = same_core
        self.cost = 0    # running cost of the current design, us per page x 16 (0: none yet)
        self.trial = False
        self.probe = PROBE_MIN
        self.windows = 0  # windows of the current design since the last trial or switch
        self.t0 = ticks_us()
        self.s0 = 0
        pool.c[C.KCOMPRESSD_OFFLOADING] = 1 if offload else 0

    def _steal(self):
        c = self.pool.c
        return c[C.PGSTEAL_KSWAPD] + c[C.PGSTEAL_DIRECT]

    def _set(self, offload):
        self.offload = offload
        self.pool.c[C.KCOMPRESSD_OFFLOADING] = 1 if offload else 0
        self.t0 = ticks_us()
        self.s0 = self._steal()

    def step(self, comp):
        """After a batch: close the window if it is full and decide; True to hand off next."""
        if not self.offload and self.pool.nqueued:
            # Inline, while the compressor still drains what was handed off before: those
            # pages are not inline's doing. Its window starts when they are gone.
            self.t0 = ticks_us()
            self.s0 = self._steal()
            return False
        pages = self._steal() - self.s0
        if pages < WINDOW_PAGES:
            return self.offload
        cost = (ticks_diff(ticks_us(), self.t0) << 4) // pages
        c = self.pool.c
        if self.trial:
            self.trial = False
            if cost * 8 < self.cost * MARGIN_8THS:
                # The other design won: it is now the current one, counted as a switch.
                c[C.KCOMPRESSD_AUTO_OFFLOAD if self.offload else C.KCOMPRESSD_AUTO_INLINE] += 1
                self.cost = cost
                self.probe = PROBE_MIN
                self._set(self.offload)
            else:
                self.probe = min(self.probe * 2, PROBE_MAX)
                self._set(not self.offload)  # back to the current design
        else:
            self.cost = cost if self.cost == 0 else (3 * self.cost + cost) >> 2
            self.windows += 1
            if self.windows >= self.probe and not self.same_core:
                self.windows = 0
                self.trial = True
                c[C.KCOMPRESSD_AUTO_PROBE] += 1
                self._set(not self.offload)
            else:
                self._set(self.offload)
        if comp is not None:
            comp.doze = not self.offload
        return self.offload


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
        # SWAP_CLUSTER_MAX analog: how many pages one direct reclaim tries to free.
        self.nr_direct = max(4, min(32, pool.nframes // 32))
        self.auto = None
        if auto and compressor is not None:
            # Start from what the board is: a compressor thread (a second core, no GIL, as
            # the host chose from the board's hello) hands off; a task on this core does not.
            thread = compressor.placement == "thread"
            self.auto = Auto(pool, thread, not thread)
            compressor.doze = not thread

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

    def direct(self):
        """Direct reclaim for a stalled allocation: compress victims inline, synchronously.

        Pages already in the ring go first, oldest first: they are victims chosen already,
        so storing them evicts nothing more (it used to compress nr_direct more resident
        pages while the ring held a dozen), and each one the stall stores is one the
        compressor no longer has to. (Ending the stall at the first page instead gave 3x the
        stalls for the same stall time, measured.)
        """
        pool = self.pool
        c = pool.c
        sc = pool.scratch
        t0 = ticks_us()
        busy0 = sc.busy
        nr = 0
        while nr < self.nr_direct and pool.nqueued:
            r = pool.writeback_oldest(C.PGSTEAL_DIRECT)
            if r <= 0:
                break  # the ring is empty (the rest are being written back) or the zpool full
            nr += 1
        while nr < self.nr_direct:
            p = self.pick(C.PGSCAN_DIRECT)
            if p < 0 or not pool.store_inline(p, C.PGSTEAL_DIRECT):
                break
            nr += 1
        c[C.SCAN_US] += ticks_diff(ticks_us(), t0) - (sc.busy - busy0)

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
            if pool.cheap(p):
                # Same-filled or incompressible: a word or a copy here costs less than the
                # ring round trip. Cheap pages never cross cores.
                c[C.KCOMPRESSD_CHEAP] += 1
                if not pool.store_inline(p, C.PGSTEAL_KSWAPD):
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
        offload = comp is not None and (auto is None or auto.offload)
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

# auto: per batch, hand victims off to the compressor (kcompressd) or compress them inline
# (kswapd), whichever costs the app's core less, measured as the run goes. Scanner imports it
# only in auto mode.
from .compat import const, ticks_us, ticks_diff, micropython
from . import counters as C

# Auto's measurement: a window is at least this many reclaimed pages and at least this long,
# long enough that one host preemption of a few ms does not decide it. 256 pages are about
# 20 ms of a busy default run (4 KiB text pages, a PC's core) but 10 ms of 1 KiB or random
# pages, hence the time floor too; on an MCU's core 256 pages always take longer than it.
WINDOW_PAGES = const(256)
WINDOW_US = const(20000)
# A trial of the other design must beat the current one's recent cost by 1/8 (12.5%) to win:
# the hysteresis that keeps two near-equal designs from flapping.
MARGIN_8THS = const(7)
# Windows between trials: starts short (both designs measured early), doubles after every
# trial lost (a trial of the worse design costs up to one window), resets after a switch.
PROBE_MIN = const(1)
PROBE_MAX = const(32)
# A trial of inline is skipped while the hand-off plainly pays: the compressor was busy for
# more than 1/2 of the recent windows (inline, the app's core would have to do that work besides
# its own) and the app's core spent under 1/2 of a store's time per page on reclaim (scan,
# stores it did itself, stalls). A trial is one window of inline compression, and under that
# pressure it stalls the app as kswapd does: trials cost auto more stall time than
# kcompressd's whole run (measured: stall share 2.5% against 0.4%). When the compressor is
# starved (a busy host) the app's core ends up storing pages itself and trials resume.
BUSY_HALVES = const(1)
# A trial also loses, at once, when the app has spent more of its time stalled in it than under
# the current design by over 1/32 (PSI "some", in 256ths), after TRIAL_STALLS stalls (one may be
# the last design's doing). Under pressure a trial of inline stalls the app as kswapd does (7-25%
# of its time, measured) and used to run its whole window, >= WINDOW_US: runs with a trial
# stalled 2.8x as long as kcompressd's. Where inline wins (idle time, cheap or 1 KiB pages),
# kswapd stalled the app for at most 1.6% of its time: twice below the slack.
STALL_256THS = const(8)
TRIAL_STALLS = const(4)
# ... and a trial wins when it stalls the app for 1/32 less of its time at a pace at most 1/32
# slower (within the 5% of rate auto may give up to the faster design): the way back
# from inline taken on a trial's first 20 ms, whose free frames kswapd had not yet run down
# (mixed data: a trial won on pace, then inline stalled the app for 6-12% of its time against
# 0.3% handing off, and no trial of the hand-off was 12.5% faster to undo it).
SLOWER_32NDS = const(33)
# A trial's win is confirmed by one more window of the current design, run right after it:
# the switch needs the trial to beat that window as well as the running cost, so a core whose
# speed moved at the trial's start does not decide. On a shared host it does move: the
# project's 2-core VMs run each core at one of two speeds 1.7x apart, flipping every 0.5-3 s,
# independently (benchmarks/host_speed.py; steal time does not show it), far above MARGIN_8THS.


class Auto:
    """Chooses, per batch, between handing victims off (kcompressd) and compressing them
    inline (kswapd), by what a reclaimed page costs the app's core: the wall time of a window
    of WINDOW_PAGES reclaimed pages, which holds every cost the split adds or saves there
    (lock rounds, ring backlog, fallbacks, stalls while pages sit queued, inline compression,
    and a compressor thread that turns out to share the app's core).

    It runs the current design and, every `probe` windows, one window of the other (a trial,
    kcompressd_auto_probe); the trial wins when it beats the current design's running cost
    (mean of its recent windows) by the margin, or at about its pace stalls the app far less
    (SLOWER_32NDS), and then beats one more window of the current design as well (the
    confirmation: see the note above Auto); a trial that stalls the app more loses at once
    (STALL_256THS). A switch is counted (kcompressd_auto_inline / kcompressd_auto_offload).
    While handing off plainly pays (see BUSY_HALVES) the trial of inline is skipped. Main
    thread only; allocates nothing.
    """

    def __init__(self, pool, offload, same_core):
        self.pool = pool
        self.offload = offload
        # A task compressor runs on this core: the hand-off adds the ring round trip to the
        # same compression, so it can never pay; no trials.
        self.same_core = same_core
        self.cost = 0    # running cost of the current design, us per page x 16 (0: none yet)
        self.trial = False
        self.confirm = False  # a trial won: this window of the current design must agree
        self.tcost = 0  # the winning trial's cost and stall share, while confirming
        self.tshare = 0
        self.probe = PROBE_MIN
        self.windows = 0  # windows of the current design since the last trial or switch
        self.t0 = ticks_us()
        self.s0 = 0
        self.m0 = 0  # app-core reclaim time (scan + own stores + stalls) at the window's start
        self.k0 = 0  # compressor time at the window's start
        self.c0 = 0  # store time (anyone's) and stores at the window's start
        self.o0 = 0
        self.busy = -1  # running averages of _pays (x 256; -1: none yet)
        self.main = -1
        self.stall = 0  # running stall share of the current design (x 256)
        self.a0 = 0  # stall time and stalls at the window's start
        self.n0 = 0
        pool.c[C.KCOMPRESSD_OFFLOADING] = 1 if offload else 0

    def _steal(self):
        c = self.pool.c
        return c[C.PGSTEAL_KSWAPD] + c[C.PGSTEAL_DIRECT]

    def _main_us(self):
        c = self.pool.c
        return c[C.SCAN_US] + c[C.ALLOCSTALL_US] + self.pool.scratch.busy

    def _mark(self):
        c = self.pool.c
        self.t0 = ticks_us()
        self.s0 = self._steal()
        self.a0 = c[C.ALLOCSTALL_US]
        self.n0 = c[C.ALLOCSTALL]

    def _set(self, offload):
        self.offload = offload
        c = self.pool.c
        c[C.KCOMPRESSD_OFFLOADING] = 1 if offload else 0
        self._mark()
        self.m0 = self._main_us()
        self.k0 = c[C.COMPRESSOR_US]
        self.c0 = c[C.COMPRESS_US]
        self.o0 = c[C.PSWPOUT]

    def _pays(self, wall, pages):
        """True when the hand-off plainly beats what inline could do (see BUSY_HALVES), by
        running averages over the windows handed off: one odd window does not call a trial."""
        c = self.pool.c
        stores = c[C.PSWPOUT] - self.o0
        store = (c[C.COMPRESS_US] - self.c0) // stores if stores else 0  # us per store, anyone's
        if not store or not wall:
            return False
        # Both as fractions x 256: the compressor's busy time of the window, and the app
        # core's reclaim time against what storing every page inline would take.
        busy = ((c[C.COMPRESSOR_US] - self.k0) << 8) // wall
        main = ((self._main_us() - self.m0) << 8) // (store * pages)
        if self.busy < 0:
            self.busy = busy
            self.main = main
        else:
            self.busy = (3 * self.busy + busy) >> 2
            self.main = (3 * self.main + main) >> 2
        return self.busy > 256 >> BUSY_HALVES and self.main < 256 >> BUSY_HALVES

    @micropython.native  # see NATIVE in pool.py
    def step(self, comp):
        """After a batch: close the window if it is full and decide; True to hand off next."""
        if not self.offload and self.pool.nqueued:
            # Inline, while the compressor still drains what was handed off before: those
            # pages are not inline's doing. Its window starts when they are gone.
            self._mark()
            return False
        pages = self._steal() - self.s0
        if pages < WINDOW_PAGES and not self.trial:
            return self.offload
        wall = ticks_diff(ticks_us(), self.t0)
        c = self.pool.c
        stalled = c[C.ALLOCSTALL_US] - self.a0
        if (self.trial and c[C.ALLOCSTALL] - self.n0 >= TRIAL_STALLS
                and (stalled << 8) > (self.stall + STALL_256THS) * wall):
            self._lose()  # the trial stalls the app (see STALL_256THS), whatever its pace
            return self._chosen(comp)
        if pages < WINDOW_PAGES or wall < WINDOW_US:
            # (wall x 16 / WINDOW_PAGES) x 8 >= cost x MARGIN_8THS, kept in small ints
            if not (self.trial and wall >= WINDOW_US
                    and wall >= (self.cost * MARGIN_8THS * WINDOW_PAGES) >> 7):
                return self.offload
            # The trial has lost already: its window closes at WINDOW_PAGES pages, and the
            # time so far is more than a winning window could take. End it now (a trial of
            # the worse design costs the app the rest of a window: stalls, under pressure).
            pages = WINDOW_PAGES
        cost = (wall << 4) // pages
        share = (stalled << 8) // wall
        if self.trial:
            if _beats(cost, share, self.cost, self.stall):
                # The other design won; back to the current one for a window that confirms it.
                self.trial = False
                self.confirm = True
                self.tcost = cost
                self.tshare = share
                self._set(not self.offload)
            else:
                self._lose()
        elif self.confirm:
            self.confirm = False
            if _beats(self.tcost, self.tshare, cost, share):
                # Confirmed: the other design is now the current one, counted as a switch.
                offload = not self.offload
                c[C.KCOMPRESSD_AUTO_OFFLOAD if offload else C.KCOMPRESSD_AUTO_INLINE] += 1
                self.cost = self.tcost
                self.stall = self.tshare
                self.probe = PROBE_MIN
                self.windows = 0
                self._set(offload)
            else:
                # The current design caught up (the host's speed moved): the trial lost.
                self.cost = (3 * self.cost + cost) >> 2
                self.stall = (3 * self.stall + share) >> 2
                self.windows = 0
                self.probe = min(self.probe * 2, PROBE_MAX)
                self._set(self.offload)
        else:
            first = self.cost == 0
            self.cost = cost if first else (3 * self.cost + cost) >> 2
            self.stall = share if first else (3 * self.stall + share) >> 2
            self.windows += 1
            if self.offload and self._pays(wall, pages):
                self.windows = 0  # the hand-off plainly pays: no trial (see BUSY_HALVES)
                self._set(True)
            elif self.windows >= self.probe and not self.same_core:
                self.windows = 0
                self.trial = True
                c[C.KCOMPRESSD_AUTO_PROBE] += 1
                self._set(not self.offload)
            else:
                self._set(self.offload)
        return self._chosen(comp)

    def _lose(self):
        """The trial lost: back to the current design, the next trial twice as far off."""
        self.trial = False
        self.probe = min(self.probe * 2, PROBE_MAX)
        self._set(not self.offload)

    def _chosen(self, comp):
        # A compressor thread polls slowly while auto compresses inline (see compressor._DOZE_MS).
        if comp is not None:
            comp.doze = not self.offload
        return self.offload


def _beats(cost, share, ref_cost, ref_share):
    """A trial at (cost, share) beats the design at (ref_cost, ref_share): faster by the margin,
    or at about its pace stalling the app far less (see MARGIN_8THS, SLOWER_32NDS)."""
    if cost * 8 < ref_cost * MARGIN_8THS:
        return True
    return share + STALL_256THS < ref_share and cost * 32 <= ref_cost * SLOWER_32NDS

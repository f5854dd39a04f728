# Page frames, the page table, the free list, watermarks, the fault path, and the steps of
# storing a page that every reclaimer shares: compress (no lock), place (allocate a zpool slot
# under the lock, fill it outside), publish (under the lock).
#
# A "frame" is a page_size slice of one preallocated bytearray (not a physical page); a
# "page" is a logical page the workload addresses, npages of them, more than there are frames.
# Per page: state byte + val word + length + version + checksum + claim = 14 bytes; per frame: owner
# and a free-list slot = 4 bytes. No object per page anywhere.
#
# Page states (low nibble of state[p]); a page is in exactly one:
#   UNMAPPED  never touched                      val: -
#   RESIDENT  in frame val[p]                     (REF bit = referenced since the hand passed)
#   QUEUED    in the kcompressd ring, frame val[p] still holds the data
#   WRITEBACK taken by the compressor, being compressed from frame val[p] (PG_writeback)
#   ZSTORED   in the zpool, handle val[p], clen[p] bytes (clen == page_size: stored raw)
#   SAME      one repeated 32-bit word, kept in val[p] (zram same_pages)
# and flags in the high bits: REF, PICKED, HUGE and INCOMP (below).
#
# Concurrency (rp2 and the unix port have no GIL): `lock` guards the free list, the ring, the
# zpool allocator, the QUEUED/WRITEBACK transitions and the counters the compressor thread
# also writes. Only the main thread (app + scanner) moves pages into or out of a frame, so it
# may read RESIDENT state without the lock; the compressor only ever touches QUEUED and
# WRITEBACK pages.
# LOCKING: every critical section is a few dozen bytecodes, so a contended acquire spins
# (acquire(0)) instead of sleeping: on the unix port a blocked acquire is a futex round trip
# that cost more than the section (measured), and rp2's core 1 has nothing else to run. Each
# section is a try/finally, so a Ctrl-C inside one cannot leave the lock held.
# NATIVE: what runs per access, per page or per batch (here, in the scanner, the compressor,
# the zpool, auto and the codec's entry points) is @micropython.native. A bytecode function
# whose locals and stack pass 11 words takes its frame from the GC heap on every call
# (py/objfun.c, VM_MAX_STATE_ON_STACK), under the GC's mutex; with the compressor thread doing
# the same on the other core, both queue on it. Measured on the unix port: such calls ran
# 2-4x slower while a second thread made them too (not while it spun on locals), and in
# kcompressd mode at 1 KiB pages the app's core was 1.5-2x slower at everything. Native code
# keeps its frame on the C stack, and runs faster. Its price is code: armv6m .mpy of the
# package 64 -> 79 KB, in RAM unless frozen. tests/test_frames.py checks these frames.
from .compat import const, allocate_lock, ticks_us, ticks_diff, zeros, itemsize, micropython
from . import counters as C
from . import lz4
from .pagedata import fill, csum, same_word, memset32, copy, set_word
from .zpool import ZPool, zspage_pages, meta_bytes_for as zpool_meta_bytes_for

UNMAPPED = const(0)
RESIDENT = const(1)
QUEUED = const(2)
WRITEBACK = const(3)
ZSTORED = const(4)
SAME = const(5)
STATE = const(0x0F)
PICKED = const(0x20)  # a victim in the scanner's batch, not yet queued: the hand skips it
# INCOMP: its last store found it incompressible, kept when the page is written: data that was
# incompressible mostly stays so (a page holds one kind of data: samples, text, ciphertext),
# and LZ4 gives up on such a page quickly, so the scanner tries it itself rather than hand it
# off (random data, kcompressd/thread over kswapd in the reclaim benchmark: 0.67x while every
# rewritten page crossed, 0.94-1.09x since, in three runs).
INCOMP = const(0x10)
HUGE = const(0x40)  # last store found it incompressible and it was not written since
KEEP = const(0x50)  # HUGE | INCOMP: what a page's state keeps through the ring and a fault
CHEAP_INCOMP = const(1)  # Pool.cheap()'s answers
CHEAP_SAME = const(2)
REF = const(0x80)   # referenced (PG_referenced): the CLOCK hand gives it a second chance
NONE = const(0xFFFF)
STATE_NAMES = ("unmapped", "resident", "queued", "writeback", "zstored", "same")


class Scratch:
    """Per-thread buffers for storing a page: no allocation per page."""

    def __init__(self, page_size, batch=1):
        self.buf = bytearray(lz4.bound(page_size))
        self.table = lz4.new_table()
        self.word = zeros("I", 1)
        self.us = 0     # time the last page's store took (compress() + place())
        self.busy = 0   # total store time through this scratch (scan_us excludes it)
        self.frame = 0  # frame of the page the last ring pop returned
        self.gen = 0    # ... and the claim it was taken with (Pool.wbgen)
        # A batch of pages (and, from dequeue_batch, their frames and claims) in one lock round.
        self.pages = zeros("H", batch)
        self.frames = zeros("H", batch)
        self.gens = bytearray(batch)


def scratch_peak(page_size, batch):
    """Heap bytes building one Scratch takes at its peak: its page buffer, its LZ4 table
    and the zeroed buffer the table is copied from (MicroPython makes a zeroed array only
    from a buffer: lz4.new_table, compat.zeros), and its three batch arrays, each counted
    twice (the bytearray of claims has no such copy: a few bytes over)."""
    return lz4.bound(page_size) + 2 * lz4.TABLE_BYTES + 2 * batch * (2 * itemsize("H") + 1)


def watermarks(nframes):
    """Default (min, low, high) in free frames. The gaps must cover what the app allocates
    between two turns of the scanner (about yield_ops frames), so they have a floor, and grow
    with the pool like min_free_kbytes with RAM; tiny pools get proportional ones."""
    wmin = max(2, nframes // 32)
    wlow = wmin + max(6, nframes // 16)
    whigh = wlow + max(8, nframes // 8)
    if whigh >= nframes:
        wmin = max(1, nframes // 8)
        wlow = max(wmin + 1, nframes // 4)
        whigh = max(wlow + 1, nframes // 2)
    return wmin, wlow, whigh


# Metadata arrays (see __init__): per page state + val + clen + ver + sum + wbgen; per frame
# owner + flist; per ring slot one page number.
META_PER_PAGE = 1 + itemsize("I") + itemsize("H") + itemsize("H") + itemsize("I") + 1
META_PER_FRAME = 2 * itemsize("H")
META_PER_RING = itemsize("H")


def meta_bytes_for(npages, nframes, page_size, zpool_bytes, ring):
    """Bytes of metadata a Pool of these sizes allocates beside its arena (the total of
    meta_bytes()), without building one: the host checks that a run fits before it starts."""
    return (META_PER_PAGE * npages + META_PER_FRAME * nframes + META_PER_RING * ring
            + zpool_meta_bytes_for(zpool_bytes, page_size))


def arena_bytes(nframes, page_size, zpool_bytes):
    """Bytes of the arena a pool needs: its frames, then its zpool cut to whole zspages."""
    z = page_size * zspage_pages(zpool_bytes, page_size)
    return nframes * page_size + zpool_bytes // z * z


class Pool:
    def __init__(self, npages, nframes, page_size, zpool_bytes, data=0, seed=1,
                 wmin=0, wlow=0, whigh=0, ring=64, arena=None, zclasses=0, batch=8):
        if page_size & (page_size - 1) or not 256 <= page_size <= 4096:
            raise ValueError("page_size: must be a power of two in 256..4096")
        if not 1 <= npages < NONE:
            raise ValueError("pages: must be 1..%d" % (NONE - 1))
        if not 4 <= nframes < NONE:
            raise ValueError("frames: must be 4..%d" % (NONE - 1))
        if not 1 <= ring < NONE:
            raise ValueError("ring: must be 1..%d" % (NONE - 1))
        if not 1 <= batch <= ring:
            raise ValueError("batch: must be 1..ring (%d)" % ring)
        if not (wmin or wlow or whigh):
            wmin, wlow, whigh = watermarks(nframes)
        if not 0 < wmin < wlow < whigh < nframes:
            raise ValueError("watermarks: need 0 < min < low < high < frames (got %d %d %d)"
                             % (wmin, wlow, whigh))
        self.P = page_size
        self.npages = npages
        self.nframes = nframes
        self.wmin = wmin
        self.wlow = wlow
        self.whigh = whigh
        self.data = data
        self.seed = seed
        # Frames and the zpool share one arena: frames first, the store after them. A board
        # allocates the arena once, early (server start), before the heap fragments.
        need = arena_bytes(nframes, page_size, zpool_bytes)
        if arena is None:
            arena = bytearray(need)
        elif len(arena) < need:
            raise ValueError("zpool: frames + zpool need %d bytes, the arena has %d"
                             % (need, len(arena)))
        self.frames = arena
        self.state = bytearray(npages)
        self.val = zeros("I", npages)
        self.clen = zeros("H", npages)
        self.ver = zeros("H", npages)
        self.sum = zeros("I", npages)
        # Claim number of each page's latest QUEUED -> WRITEBACK: a storer publishes only its
        # own claim. Without it a page the compressor holds in its batch could be rescued,
        # queued again and claimed by the main thread, and the compressor's stale copy (of a
        # frame the app wrote meanwhile) would pass for the new claim (ABA). 8 bits: 256
        # claims of one page while a storer holds one are not possible.
        self.wbgen = bytearray(npages)
        self.owner = zeros("H", nframes)
        self.flist = zeros("H", nframes)
        for f in range(nframes):
            self.owner[f] = NONE
            self.flist[f] = nframes - 1 - f  # pop order 0, 1, 2 ...
        self.nfree = nframes
        self.nqueued = 0  # pages QUEUED or WRITEBACK: their frames are not free yet
        self.nsame = 0
        self.nplaced = 0  # zpool slots being filled by a storer (between place and publish)
        self.placed_bytes = 0
        # zclasses: at most that many size classes (ZPool.thin_classes); 0: all of them.
        self.z = ZPool(zpool_bytes, page_size, buf=arena, base=nframes * page_size,
                       max_classes=zclasses)
        # The kcompressd FIFO: page numbers, fixed size. Entries may go stale (a rescued page
        # stays in the ring); the compressor skips any entry whose page is no longer QUEUED.
        self.ring = zeros("H", ring)
        self.rsize = ring
        self.rhead = 0
        self.rcount = 0
        self._one = zeros("H", 1)  # enqueue's batch of one
        self.batch = batch  # pages isolated (and drained) per lock round
        self.c = C.new()
        self.hist = C.new_hist()
        self.lock = allocate_lock()
        self.scratch = Scratch(page_size, batch)  # the main thread's (scanner, direct reclaim)
        self.scanner = None  # set by Scanner: direct reclaim and wake-ups go through it
        self._zero = zeros("I", 1)  # the fill word of a never-written page (peek)

    # -- accounting --------------------------------------------------------------------------

    def meta_bytes(self):
        """Metadata bytes: (per logical page, per frame, fixed: ring + zpool bookkeeping)."""
        return META_PER_PAGE, META_PER_FRAME, META_PER_RING * self.rsize + self.z.meta_bytes()

    def gauges(self):
        """Fill the mm_stat-like gauges in the counter array (not counters: current values)."""
        c = self.c
        c[C.ORIG_DATA_SIZE] = (self.z.nobj + self.nsame) * self.P
        c[C.COMPR_DATA_SIZE] = self.z.used_bytes
        c[C.MEM_USED] = self.z.mem_used()

    # -- frames and faults (main thread) -------------------------------------------------------

    @micropython.native  # see NATIVE
    def get_frame(self):
        """A free frame for a fault, reclaiming directly when free <= min; -1 when none at all."""
        f = -1
        lk = self.lock
        while not lk.acquire(0):  # spin (see LOCKING)
            pass
        try:
            if self.nfree > self.wmin:
                self.nfree -= 1
                f = self.flist[self.nfree]
                low = self.nfree <= self.wlow
        finally:
            lk.release()
        if f >= 0:
            self.c[C.PGALLOC] += 1
            if low:
                self.scanner.wake()
            return f
        # Allocation stall: this allocation reclaims by itself before it gets a frame.
        t0 = ticks_us()
        c = self.c
        c[C.ALLOCSTALL] += 1
        queued = self.nqueued  # pages in the ring while the app stalls: the hand-off's latency
        self.scanner.wake()
        self.scanner.direct()
        lk = self.lock
        while not lk.acquire(0):  # spin (see LOCKING)
            pass
        try:
            if self.nfree > 0:  # below min is allowed once we have reclaimed (like __GFP_HIGH)
                self.nfree -= 1
                f = self.flist[self.nfree]
        finally:
            lk.release()
        dt = ticks_diff(ticks_us(), t0)
        c[C.ALLOCSTALL_US] += dt
        if queued:
            c[C.ALLOCSTALL_QUEUED] += 1
            c[C.ALLOCSTALL_QUEUED_US] += dt
        C.hist_add(self.hist, dt)
        if f >= 0:
            c[C.PGALLOC] += 1
        return f

    @micropython.native  # see NATIVE
    def touch(self, p, write):
        """One access of page p by the app: map it, verify what is read, write a new version.

        Returns the frame, or -1 when no frame could be had (counted as oom).
        """
        s = self.state[p]
        st = s & STATE
        check = not write
        if st == RESIDENT:
            f = self.val[p]
            self.state[p] = s | REF
        else:
            f = -1
            if st == QUEUED or st == WRITEBACK:
                f = self._rescue(p)
            if f < 0:
                f = self._fault(p)
                if f < 0:
                    self.c[C.OOM] += 1
                    return -1
                # Every page brought back is verified, even when about to be written; a
                # first touch was just generated and summed by _fault: nothing to verify.
                check = st != UNMAPPED
        P = self.P
        off = f * P
        if check and csum(self.frames, off, P) != self.sum[p]:
            self.c[C.CORRUPT] += 1
        if write:
            v = (self.ver[p] + 1) & 0xFFFF
            self.ver[p] = v
            fill(self.frames, off, P, self.data, self.seed, p, v)
            self.sum[p] = csum(self.frames, off, P)
            self.state[p] = RESIDENT | REF | (self.state[p] & INCOMP)  # new content: not HUGE
        return f

    def _rescue(self, p):
        # A queued page touched before the compressor got to it comes back without
        # decompression. Seen without the lock it was QUEUED/WRITEBACK; by now the compressor
        # may have stored it (-> fault it in) or handed it back on a full zpool (RESIDENT).
        f = -1
        lk = self.lock
        while not lk.acquire(0):  # spin (see LOCKING)
            pass
        try:
            s = self.state[p]
            st = s & STATE
            if st == QUEUED or st == WRITEBACK or st == RESIDENT:
                if st != RESIDENT:
                    self.nqueued -= 1
                    self.c[C.PGRESCUED] += 1
                self.state[p] = RESIDENT | REF | (s & KEEP)
                f = self.val[p]
        finally:
            lk.release()
        return f

    @micropython.native  # see NATIVE
    def _fault(self, p):
        f = self.get_frame()
        if f < 0:
            return -1
        c = self.c
        c[C.PGFAULT] += 1
        P = self.P
        off = f * P
        s = self.state[p]
        st = s & STATE
        if st == ZSTORED:
            h = self.val[p]
            n = self.clen[p]
            zoff = self.z.offset(h)  # our object's zpage cannot change class while we hold it
            t0 = ticks_us()
            if n == P:
                copy(self.frames, off, self.z.buf, zoff, P)
            else:
                try:
                    lz4.decompress_into(self.frames, zoff, n, self.frames, off, P)
                except ValueError:
                    pass  # the checksum the caller runs counts it as corrupt
            c[C.DECOMPRESS_US] += ticks_diff(ticks_us(), t0)
            lk = self.lock
            while not lk.acquire(0):  # spin (see LOCKING)
                pass
            try:
                self.z.free(h, n)
            finally:
                lk.release()
            self._swapin()
        elif st == SAME:
            memset32(self.frames, off, P, self.val, p)
            lk = self.lock
            while not lk.acquire(0):  # spin (see LOCKING)
                pass
            try:
                self.nsame -= 1
            finally:
                lk.release()
            self._swapin()
        elif st == UNMAPPED:
            fill(self.frames, off, P, self.data, self.seed, p, 0)
            self.sum[p] = csum(self.frames, off, P)
        self.val[p] = f
        self.owner[f] = p
        self.state[p] = RESIDENT | REF | (s & KEEP)
        return f

    def _swapin(self):
        c = self.c
        c[C.PGMAJFAULT] += 1
        c[C.PSWPIN] += 1
        c[C.WORKINGSET_REFAULT] += 1

    # -- storing a page: compress (no lock), place (slot under the lock), publish (lock) ----------

    @micropython.native  # see NATIVE
    def compress(self, p, f, sc, same=False):
        """Encode page p from frame f into sc; return -1 (same-filled), P (store raw) or LZ4 bytes.
        same: the caller found it same-filled already, its word in sc.word (cheap()).

        Runs without the lock: the frame is the caller's (RESIDENT in the main thread, or
        WRITEBACK in the compressor, whose result is dropped if the page was rescued).
        """
        P = self.P
        off = f * P
        t0 = ticks_us()
        if same or same_word(self.frames, off, P, sc.word, 0):
            n = -1
        elif self.state[p] & HUGE:
            n = P  # known incompressible and unchanged: do not try again
        else:
            n = lz4.compress_into(self.frames, off, P, sc.buf, sc.table)
            if n > (P * 3) >> 2:
                n = P
        t = ticks_diff(ticks_us(), t0)
        sc.us = t
        sc.busy += t
        return n

    @micropython.native  # see NATIVE
    def place(self, f, n, sc):
        """Allocate a zpool slot for an encoded page and fill it; -1 when the zpool is full.

        Only the allocation holds the lock: the slot is ours until publish() names it, so
        the copy runs beside the other thread. n < 0 (same-filled) needs no slot (returns 0).
        """
        if n < 0:
            return 0
        t0 = ticks_us()
        lk = self.lock
        while not lk.acquire(0):  # spin (see LOCKING)
            pass
        try:
            h = self.z.alloc(n)
            if h < 0:
                self.c[C.ZPOOL_FULL] += 1
            else:
                self.nplaced += 1  # allocated, not yet published: invariants allow for these
                self.placed_bytes += n
        finally:
            lk.release()
        if h >= 0:
            if n == self.P:
                copy(self.frames, self.z.offset(h), self.frames, f * n, n)  # stored raw
            else:
                copy(self.frames, self.z.offset(h), sc.buf, 0, n)
        # compress_us is the whole zram write (encode + zs_malloc + copy), not LZ4 alone.
        t = ticks_diff(ticks_us(), t0)
        sc.us += t
        sc.busy += t
        return h

    @micropython.native  # see NATIVE
    def publish(self, p, f, n, h, sc, steal):
        """Make page p stored (slot h, or same-filled) and free frame f; caller holds the lock."""
        c = self.c
        if n < 0:
            set_word(self.val, p, sc.word, 0)  # the fill word, without making a Python int
            self.state[p] = SAME
            self.nsame += 1
            c[C.SAME_PAGES] += 1
        else:
            # Handle and length before the state: the main thread reads a stored page's state
            # without the lock (touch, peek) and must then find the slot that goes with it.
            self.val[p] = h
            self.clen[p] = n
            if n == self.P:
                # Incompressible: stored raw, a whole page of the exact-fit class (no slot
                # waste, a memcpy to read), and not compressed again until written (HUGE).
                self.state[p] = ZSTORED | HUGE | INCOMP
                c[C.INCOMPRESSIBLE] += 1
            else:
                self.state[p] = ZSTORED  # compressible (again): INCOMP goes
            self.nplaced -= 1
            self.placed_bytes -= n
        self.owner[f] = NONE
        self.flist[self.nfree] = f
        self.nfree += 1
        c[C.PSWPOUT] += 1
        c[steal] += 1
        c[C.COMPRESS_US] += sc.us

    @micropython.native  # see NATIVE
    def store_inline(self, p, steal, same=False):
        """Reclaim resident page p synchronously (scanner in kswapd mode, fallback, direct).

        The main thread owns a resident page, so nothing can change it between the steps.
        same: cheap(p) returned CHEAP_SAME just before (the page is not scanned twice).
        """
        f = self.val[p]
        sc = self.scratch
        n = self.compress(p, f, sc, same)
        h = self.place(f, n, sc)
        if h < 0:
            self.state[p] = RESIDENT | (self.state[p] & KEEP)  # stays, unreferenced
            return False
        lk = self.lock
        while not lk.acquire(0):  # spin (see LOCKING)
            pass
        try:
            self.publish(p, f, n, h, sc, steal)
        finally:
            lk.release()
        return True

    def cheap(self, p):
        """Nonzero when storing resident page p costs less than handing it off: CHEAP_SAME when
        same-filled (one word kept, no slot; the word is left in the scratch for store_inline),
        CHEAP_INCOMP when known incompressible (HUGE: a copy, no LZ4) or incompressible at its
        last store (INCOMP: LZ4 gives up quickly on it). Main thread only."""
        if self.state[p] & KEEP:
            return CHEAP_INCOMP
        if same_word(self.frames, self.val[p] * self.P, self.P, self.scratch.word, 0):
            return CHEAP_SAME
        return 0

    # -- the kcompressd ring -----------------------------------------------------------------------

    @micropython.native  # see NATIVE
    def enqueue_batch(self, pages, n):
        """Isolate resident pages pages[0:n] into the ring in one lock round; returns how many
        went in (the first k of them: a full ring takes no more)."""
        lk = self.lock
        while not lk.acquire(0):  # spin (see LOCKING)
            pass
        try:
            room = self.rsize - self.rcount
            if n > room:
                n = room
            if n <= 0:
                return 0
            i = self.rhead + self.rcount
            state = self.state
            ring = self.ring
            k = 0
            while k < n:
                if i >= self.rsize:
                    i -= self.rsize
                p = pages[k]
                ring[i] = p
                state[p] = QUEUED | (state[p] & KEEP)
                i += 1
                k += 1
            self.rcount += n
            self.nqueued += n
            c = self.c
            c[C.KCOMPRESSD_ENQUEUE] += n
            c[C.KCOMPRESSD_BATCH] += 1
            if self.rcount > c[C.KCOMPRESSD_QUEUE_MAX]:
                c[C.KCOMPRESSD_QUEUE_MAX] = self.rcount
        finally:
            lk.release()
        return n

    @micropython.native  # see NATIVE
    def dequeue_batch(self, sc, nmax):
        """Take up to nmax still-queued pages, oldest first (-> WRITEBACK), in one lock round.

        The pages go to sc.pages[0:k], their frames to sc.frames[0:k], their claims to
        sc.gens[0:k]; returns k.
        """
        if not self.rcount:
            # Read without the lock, as a hint: an idle compressor polls the ring every 50 us
            # (and spins on it after a page), and each poll took the lock the app's faults
            # take, for nothing. A page queued just now is seen at the next poll.
            return 0
        k = 0
        lk = self.lock
        while not lk.acquire(0):  # spin (see LOCKING)
            pass
        try:
            while self.rcount and k < nmax:
                p = self._pop()
                if self.state[p] & STATE == QUEUED:
                    sc.pages[k] = p
                    sc.frames[k] = self.val[p]
                    sc.gens[k] = self._claim(p)
                    k += 1
        finally:
            lk.release()
        return k

    def enqueue(self, p):
        """Isolate resident page p into the ring; False when the ring is full (a batch of one:
        main thread only, as every isolation)."""
        self._one[0] = p
        return self.enqueue_batch(self._one, 1) == 1

    def dequeue(self, sc):
        """Take the next still-queued page for compression (-> WRITEBACK); -1 when none.

        Its frame is left in sc.frame, its claim in sc.gen (no tuple allocation).
        """
        lk = self.lock
        while not lk.acquire(0):  # spin (see LOCKING)
            pass
        try:
            while self.rcount:
                p = self._pop()
                if self.state[p] & STATE == QUEUED:
                    sc.frame = self.val[p]
                    sc.gen = self._claim(p)
                    return p
        finally:
            lk.release()
        return -1

    def _pop(self):
        """The ring's oldest entry (maybe stale: skip it unless QUEUED). Lock held, rcount > 0."""
        p = self.ring[self.rhead]
        self.rhead += 1
        if self.rhead == self.rsize:
            self.rhead = 0
        self.rcount -= 1
        return p

    def _claim(self, p):
        """QUEUED -> WRITEBACK for one storer; returns its claim number. Lock held."""
        self.state[p] = WRITEBACK | (self.state[p] & KEEP)
        g = (self.wbgen[p] + 1) & 0xFF
        self.wbgen[p] = g
        return g

    @micropython.native  # see NATIVE
    def writeback(self, p, sc, steal):
        """Compress a dequeued page (frame sc.frame, claim sc.gen) and publish it unless the app
        rescued it meanwhile (or it was claimed again since); True when its frame was freed."""
        f = sc.frame
        n = self.compress(p, f, sc)
        h = self.place(f, n, sc)
        done = False
        lk = self.lock
        while not lk.acquire(0):  # spin (see LOCKING)
            pass
        try:
            if self.state[p] & STATE == WRITEBACK and self.wbgen[p] == sc.gen:
                self.nqueued -= 1
                if h < 0:
                    self.state[p] = RESIDENT | (self.state[p] & KEEP)  # zpool full: keep it
                else:
                    self.publish(p, f, n, h, sc, steal)
                    done = True
            elif n >= 0 and h >= 0:
                self.z.free(h, n)  # rescued while we worked: drop our copy
                self.nplaced -= 1
                self.placed_bytes -= n
        finally:
            lk.release()
        return done

    def writeback_oldest(self, steal):
        """Compress the oldest queued page inline (main thread): a full ring or a stall does
        the compressor's next job rather than evicting yet another page, so pages still leave
        in LRU order. -1 when nothing is queued, 0 when the store failed (zpool full), else 1."""
        sc = self.scratch
        p = self.dequeue(sc)
        if p < 0:
            return -1
        return 1 if self.writeback(p, sc, steal) else 0

    # -- pages whose content the application provides (ucz.zram) -----------------------------------
    # A zram device or log writes its own bytes into a frame instead of the workload's
    # generator, and reads stored pages back without mapping them. Main thread only, like
    # touch(). The checksum kept in sum[p] is the reference every read back is verified with.

    def map_overwrite(self, p):
        """A frame for page p whose whole content the caller writes next (then written(p)).

        The page's old copy (slot, same-filled word or frame) is dropped only once a frame is
        had, so a failure changes nothing: -1 when no frame can be had (counted as oom).
        """
        s = self.state[p]
        st = s & STATE
        if st == RESIDENT:
            self.state[p] = s | REF
            return self.val[p]
        if st == QUEUED or st == WRITEBACK:
            f = self._rescue(p)
            if f >= 0:
                return f
            st = self.state[p] & STATE  # the compressor published it meanwhile
        f = self.get_frame()
        if f < 0:
            self.c[C.OOM] += 1
            return -1
        self.c[C.PGFAULT] += 1
        if st != UNMAPPED:
            self.discard(p)
        self.val[p] = f
        self.owner[f] = p
        self.state[p] = RESIDENT | REF
        return f

    def written(self, p):
        """The caller changed resident page p's frame: a new version and its checksum."""
        P = self.P
        self.ver[p] = (self.ver[p] + 1) & 0xFFFF
        self.sum[p] = csum(self.frames, self.val[p] * P, P)
        self.state[p] = RESIDENT | REF | (self.state[p] & INCOMP)  # new content: not HUGE

    def discard(self, p):
        """Forget page p (zram discard): its frame, slot or word is freed; it reads as zeros
        again. Returns False when it held nothing."""
        lk = self.lock
        while True:
            while not lk.acquire(0):  # spin (see LOCKING)
                pass
            try:
                st = self.state[p] & STATE
                if st != WRITEBACK:
                    if st == UNMAPPED:
                        return False
                    if st == QUEUED:  # not taken yet: its ring entry goes stale
                        self.nqueued -= 1
                        st = RESIDENT
                    if st == RESIDENT:
                        f = self.val[p]
                        self.owner[f] = NONE
                        self.flist[self.nfree] = f
                        self.nfree += 1
                    elif st == ZSTORED:
                        self.z.free(self.val[p], self.clen[p])
                    elif st == SAME:
                        self.nsame -= 1
                    self.state[p] = UNMAPPED
                    return True
            finally:
                lk.release()
            # WRITEBACK: the compressor reads the frame until it publishes (the rest of its
            # batch at most): its frame cannot go back to the free list before that.

    def peek(self, p, dst, doff):
        """Page p's content into dst[doff:doff+P] without mapping it: from its frame, the
        store (decompressed), its same-filled word, or zeros. True when it matches the
        checksum kept for it; a mismatch counts corrupt (the store is left as it was)."""
        P = self.P
        st = self.state[p] & STATE
        if st == UNMAPPED:
            memset32(dst, doff, P, self._zero, 0)
            return True
        if st == QUEUED or st == WRITEBACK:
            # Under the lock: the compressor may publish it (val becomes a handle) meanwhile.
            # Its frame is only reused by this thread, so the copy may follow the release.
            lk = self.lock
            while not lk.acquire(0):  # spin (see LOCKING)
                pass
            try:
                st = self.state[p] & STATE
                v = self.val[p]
            finally:
                lk.release()
            if st <= WRITEBACK:
                copy(dst, doff, self.frames, v * P, P)
                st = -1
        if st == RESIDENT:
            copy(dst, doff, self.frames, self.val[p] * P, P)
        elif st == ZSTORED:
            n = self.clen[p]
            zoff = self.z.offset(self.val[p])
            t0 = ticks_us()
            if n == P:
                copy(dst, doff, self.z.buf, zoff, P)
            else:
                try:
                    lz4.decompress_into(self.frames, zoff, n, dst, doff, P)
                except ValueError:
                    pass  # the checksum below fails it
            self.c[C.DECOMPRESS_US] += ticks_diff(ticks_us(), t0)
        elif st == SAME:
            memset32(dst, doff, P, self.val, p)
        if csum(dst, doff, P) != self.sum[p]:
            self.c[C.CORRUPT] += 1
            return False
        return True

    # -- invariants (tests and --check runs) ---------------------------------------------------------

    def check(self):
        """Check every invariant; returns a list of problems (empty when sound). Allocates."""
        bad = []
        self.lock.acquire()
        try:
            counts = [0] * 6
            zbytes = 0
            seen = bytearray(self.nframes)
            for p in range(self.npages):
                st = self.state[p] & STATE
                if st > SAME:
                    bad.append("page %d: bad state %d" % (p, st))
                    continue
                counts[st] += 1
                if RESIDENT <= st <= WRITEBACK:
                    f = self.val[p]
                    if f >= self.nframes or seen[f]:
                        bad.append("page %d: frame %d bad or shared" % (p, f))
                        continue
                    seen[f] = 1
                    if self.owner[f] != p:
                        bad.append("frame %d: owner %d, page %d" % (f, self.owner[f], p))
                elif st == ZSTORED:
                    zbytes += self.clen[p]
            framed = counts[RESIDENT] + counts[QUEUED] + counts[WRITEBACK]
            if self.nfree + framed != self.nframes:
                bad.append("frames: free %d + framed %d != %d" % (self.nfree, framed, self.nframes))
            if counts[QUEUED] + counts[WRITEBACK] != self.nqueued:
                bad.append("queued: %d pages, counter %d" % (counts[QUEUED] + counts[WRITEBACK], self.nqueued))
            if counts[SAME] != self.nsame:
                bad.append("same: %d pages, counter %d" % (counts[SAME], self.nsame))
            if (counts[ZSTORED] + self.nplaced != self.z.nobj
                    or zbytes + self.placed_bytes != self.z.used_bytes):
                bad.append("zpool: %d pages / %d bytes (+%d / %d in flight), allocator %d / %d"
                           % (counts[ZSTORED], zbytes, self.nplaced, self.placed_bytes,
                              self.z.nobj, self.z.used_bytes))
            for i in range(self.nfree):
                f = self.flist[i]
                if seen[f] or self.owner[f] != NONE:
                    bad.append("free frame %d is in use" % f)
                seen[f] = 1
            try:
                self.z.check()
            except AssertionError as e:
                bad.append(str(e))
        finally:
            self.lock.release()
        return bad

    def state_counts(self):
        counts = [0] * 6
        for p in range(self.npages):
            counts[self.state[p] & STATE] += 1
        return dict(zip(STATE_NAMES, counts))

# zram for applications: the pool, zpool, scanner and compressor as things a MicroPython
# program uses, with no runner around them.
#   ZramDisk  a compressed RAM block device for vfs (VfsLfs2, VfsFat): a block is a pool page.
#   ZramLog   an append-only record log (data logger, offline queue) with explicit drop().
#
# Which code runs where (the same page life as the runner's, no new engine):
#   the caller (the app's own thread, no asyncio loop needed):
#       writes into frames; at the low watermark it does kswapd's work itself, one bounded
#       batch per call: in kcompressd mode it only isolates victims into the ring, in kswapd
#       mode it compresses them inline; at the min watermark an allocation reclaims directly
#       (allocstall). A ZramLog hands each sealed page over the same way.
#   the compressor thread (mode "kcompressd", placement "thread"; core 1 on rp2): drains
#       the ring and stores pages in the zpool; it needs no loop.
#   asyncio (optional): `asyncio.create_task(dev.run())` runs the scanner task (and a "task"
#       compressor) as the runner does; the caller then leaves kswapd's work to it.
# mode=None picks "kcompressd" + thread where a thread runs truly in parallel (compat.PARALLEL)
# and "kswapd" elsewhere (ESP32's GIL, ports without threads).
#
# Errors reach the filesystem as a *returned* negative errno, never as an exception: an
# exception raised inside readblocks/writeblocks unwinds through littlefs' C code with a
# longjmp, skipping its clean-up (lfs_remove links a stack object into lfs->mlist and unlinks
# it after the commit; unwound, the list points into a dead stack frame). littlefs passes the
# errno on (-28 is LFS_ERR_NOSPC: a file write fails with OSError 28; a create whose metadata
# commit fails becomes ENAMETOOLONG, littlefs' own mapping); FatFs turns any error into EIO.
# `last_error` and the counters tell the application which it was.
#
# Thread contract: every public method is for the application's thread (one at a time);
# only the compressor thread runs beside it.
from .compat import const, ticks_us, ticks_diff, zeros, PARALLEL, THREADS
from . import counters as C
from .pagedata import ZERO, copy, memset32
from .pool import Pool, UNMAPPED, RESIDENT, ZSTORED, STATE, REF, HUGE, arena_bytes
from .scanner import Scanner
from .zpool import classes_for
from .compressor import Compressor

ENOSPC = const(28)
EIO = const(5)
EINVAL = const(22)

# One definition of how `ram` is split: an eighth in frames (the write-back cache of a disk,
# the hand-off buffer of a log: a burst of writes while core 1 catches up), at least
# MIN_FRAMES (the pool's smallest watermarks, 1/2/3); the rest is the zpool. Frames hold
# pages uncompressed: more of them costs capacity (8 instead of 4 frames of 4 KiB in 96 KB:
# 2.15x instead of 2.47x the samples of a bytearray ring, examples/datalogger.py).
MIN_FRAMES = const(4)
FRAME_SHARE = const(8)
# Default ZramDisk size: the zpool x a ratio in eighths per block size (512, 1024, 2048,
# 4096 bytes: 1.0, 1.0, 1.125, 1.25). littlefs' allocator walks the whole device and erases
# a block (our discard) only right before reusing it, and FAT tells the device nothing, so
# over time every block holds data, live or stale (stats(fs)["stale_share"]: 0.86 for
# littlefs, 0.91 for FAT after 3000 random file operations, measured), and the zpool must
# hold the *whole device* compressed. (With fat_discard a FAT volume's stale share stays
# near 0: see "FAT-aware discard"; the rule is kept for littlefs' sake.) LZ4 makes 1.6x (512 B) to 1.9x (4 KiB)
# of text and sensor CSV; slot rounding and partly filled zspages leave about 1.3x of it in
# a small store (measured at full on the unix port), less the reserve below: at these ratios
# the device runs out of blocks before it runs out of RAM.
DEFAULT_EIGHTHS = b"\x08\x08\x09\x0a"
# Free zspages kept for overwrites of blocks the device already holds: a write of a block
# never written (the filesystem growing) is refused below this, so that rewriting its
# metadata in place (FAT's table and directories) can always reclaim a frame. Without it a
# full FAT fails every later sector write, reads included (its dirty window cannot be
# flushed: measured). A share of the zpool, at least MIN_RESERVE.
RESERVE_SHARE = const(16)
MIN_RESERVE = const(2)
# A log holds at most MAX_RATIO x its RAM in pages (page-table metadata is per page).
MAX_RATIO = const(8)
# kswapd's work done by the caller: at most this many victims per call (a write's bounded
# share of reclaim, like the scanner task's slice).
CALLER_BATCH = const(4)

# zram's own counters (the pool's vmstat ones are beside them)
Z_READS = const(0)        # readblocks calls / records read
Z_WRITES = const(1)       # writeblocks calls / records appended
Z_DISCARDED = const(2)    # blocks discarded (erase) / pages dropped
Z_ENOSPC = const(3)       # writes refused for lack of space
Z_EIO = const(4)          # reads failed by a checksum mismatch
Z_BYTES_IN = const(5)     # application bytes written (wraps at 2**32)
Z_OVERWRITTEN = const(6)  # log records dropped by overwrite=True
Z_DROPPED = const(7)      # log records dropped by drop()
Z_FAT_FREED = const(8)    # clusters FAT freed that the device discarded (fat_discard)
NZ = const(9)
Z_NAMES = ("reads", "writes", "discarded", "enospc", "eio", "bytes_written", "overwritten",
           "dropped", "fat_freed")


def layout(ram, page_size):
    """(frames, zpool bytes) for `ram` bytes of frames + zpool; ValueError if too small."""
    if page_size & (page_size - 1) or not 256 <= page_size <= 4096:
        raise ValueError("page_size: must be a power of two in 256..4096")
    nframes = max(MIN_FRAMES, ram // page_size // FRAME_SHARE)
    zbytes = ram - nframes * page_size
    if zbytes < 4 * page_size:
        raise ValueError("ram: %d bytes is too small for %d-byte pages (need %d)"
                         % (ram, page_size, (nframes + 4) * page_size))
    return nframes, zbytes


def default_size(zpool_bytes, block_size):
    """The default ZramDisk size for a zpool (see DEFAULT_EIGHTHS), in whole blocks."""
    i = 0
    while (512 << i) < block_size:
        i += 1
    return zpool_bytes * DEFAULT_EIGHTHS[i] // 8 // block_size * block_size


def choose_mode(mode, compressor):
    """(mode, placement) with None resolved for this port (see the module comment)."""
    if mode is None:
        mode = "kcompressd" if PARALLEL else "kswapd"
    if mode not in ("kswapd", "kcompressd"):
        raise ValueError("mode: must be kswapd or kcompressd")
    if compressor not in ("task", "thread"):
        raise ValueError("compressor: must be task or thread")
    if mode == "kcompressd" and compressor == "thread" and not THREADS:
        raise ValueError("compressor: this port has no threads (use task or mode kswapd)")
    return mode, compressor


class _Device:
    """What ZramDisk and ZramLog share: the engine, reclaim in the caller, stats."""

    def __init__(self, npages, ram, page_size, mode, compressor, arena, zclasses):
        mode, placement = choose_mode(mode, compressor)
        nframes, zbytes = layout(ram, page_size)
        self.ram = arena_bytes(nframes, page_size, zbytes)
        self.pool = pool = Pool(npages, nframes, page_size, zbytes, data=ZERO, arena=arena,
                                zclasses=zclasses)
        self.mode = mode
        self.placement = placement
        self.comp = None
        if mode == "kcompressd":
            self.comp = Compressor(pool, placement)
        self.scanner = Scanner(pool, self.comp)
        self.zc = zeros("I", NZ)
        self.whist = C.new_hist()
        self.rhist = C.new_hist()
        self.last_error = 0
        self.looping = False  # a scanner task runs (run()): the caller leaves kswapd's work to it
        self.closed = False
        if self.comp is not None and placement == "thread":
            self.comp.start()

    # -- reclaim ------------------------------------------------------------------------------

    def _kswapd(self):
        """kswapd's work for a caller with no scanner task: one bounded batch once woken."""
        sc = self.scanner
        if not sc.awake or self.looping:
            return
        pool = self.pool
        c = pool.c
        handoff = self.comp is not None and self.placement == "thread"
        n = CALLER_BATCH
        while n:
            if pool.nfree + pool.nqueued >= pool.whigh:
                sc.awake = False
                return
            p = sc.pick(C.PGSCAN_KSWAPD)
            if p < 0:
                sc.awake = False
                return
            if not (handoff and pool.enqueue(p)):
                if handoff:
                    c[C.KCOMPRESSD_FALLBACK] += 1
                if not pool.store_inline(p, C.PGSTEAL_KSWAPD):
                    return  # zpool full: retrying now would only spin
            n -= 1

    def _hand_off(self, p):
        """Page p is complete (a sealed log page): store it now, or queue it for core 1."""
        pool = self.pool
        if self.comp is not None and (self.placement == "thread" or self.looping):
            pool.state[p] &= ~REF
            if pool.enqueue(p):
                self.comp.kick()
                return
            pool.c[C.KCOMPRESSD_FALLBACK] += 1
        pool.store_inline(p, C.PGSTEAL_KSWAPD)  # zpool full: it stays resident, nothing lost

    async def run(self):
        """The scanner task (and a task-placed compressor) for an app that runs asyncio."""
        self.looping = True
        t = None
        if self.comp is not None and self.placement == "task":
            t = self.comp.start()
        try:
            await self.scanner.run()
        finally:
            self.looping = False
            if t is not None:
                self.comp.stop()
                t.cancel()
            self.scanner.running = True  # the caller takes kswapd's work back
            self.scanner.event = None

    def stop_task(self):
        """End run() (the task returns at its next wake-up)."""
        self.scanner.stop()

    def close(self):
        """Stop the compressor thread; the device's memory is garbage once unreferenced."""
        if not self.closed:
            self.closed = True
            if self.comp is not None and self.placement == "thread":
                self.comp.stop()
            self.scanner.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- stats ---------------------------------------------------------------------------------

    def free_bytes(self):
        """Headroom: free zspages plus free frames (bytes that can still take new data)."""
        pool = self.pool
        return pool.z.nfreez * pool.z.zspage + pool.nfree * pool.P

    def stats(self):
        """zram's names (mm_stat, io_stat), the pool's vmstat counters and the latency
        histograms (log2 us: bucket i counts 2**i <= us < 2**(i+1)). Allocates."""
        pool = self.pool
        pool.gauges()
        d = C.export(pool.c)
        for i in range(NZ):
            d[Z_NAMES[i]] = self.zc[i]
        d["same_pages"] = pool.nsame  # now (zram's gauge), not stores over time
        d["huge_pages"] = _count_huge(pool)
        d["pages_stored"] = pool.z.nobj + pool.nsame
        d["pages_resident"] = pool.nframes - pool.nfree
        d["free_bytes"] = self.free_bytes()
        d["ram"] = self.ram
        d["mode"] = self.mode
        d["compressor"] = self.placement if self.comp is not None else None
        d["page_size"] = pool.P
        d["write_us_hist"] = list(self.whist)
        d["read_us_hist"] = list(self.rhist)
        if self.comp is not None and self.comp.error:
            d["compressor_error"] = self.comp.error
        return d


def _count_huge(pool):
    n = 0
    st = pool.state
    for p in range(pool.npages):
        if st[p] & (STATE | HUGE) == HUGE | ZSTORED:  # stored raw
            n += 1
    return n


def hist_p(hist, q):
    """The q-quantile (0..1) of a log2 histogram, as the upper edge of its bucket in us."""
    total = 0
    for v in hist:
        total += v
    if not total:
        return 0
    need = q * total
    acc = 0
    for i in range(len(hist)):
        acc += hist[i]
        if acc >= need:
            return 1 << (i + 1)
    return 1 << len(hist)


class ZramDisk(_Device):
    """A compressed RAM block device: MicroPython's extended block protocol over the pool.

    size: bytes the device offers (None: default_size(), 1-1.25 x its zpool); ram: bytes
    of frames + zpool (one arena: pass arena=bytearray(ram) allocated early, before the heap
    fragments, or let it be allocated now); block_size: 512..4096, a power of two (512 for VfsFat).
        disk = ZramDisk(256 * 1024, 96 * 1024)
        vfs.VfsLfs2.mkfs(disk); vfs.mount(vfs.VfsLfs2(disk), "/zram")
    Written blocks stay in frames (a write-back cache) until reclaim stores them; a block
    never written (or erased: discard) reads as zeros. fat_discard: watch a FAT volume's
    allocation table and discard the clusters it frees (see "FAT-aware discard"). Reads of stored blocks decompress into
    a one-block read buffer, verified against the page table's checksum (EIO on mismatch),
    and leave the store as it was.
    """

    def __init__(self, size=None, ram=64 * 1024, block_size=4096, mode=None,
                 compressor="thread", arena=None, fat_discard=True):
        if block_size & (block_size - 1) or not 512 <= block_size <= 4096:
            raise ValueError("block_size: must be a power of two in 512..4096")
        nframes, zbytes = layout(ram, block_size)
        if size is None:
            z = arena_bytes(nframes, block_size, zbytes) - nframes * block_size
            size = default_size(z, block_size)
        nblocks = size // block_size
        if nblocks < 2:
            raise ValueError("size: %d bytes is less than two %d-byte blocks" % (size, block_size))
        # Coarse size classes: a filesystem's blocks compress to anything from a few bytes
        # (metadata) to raw, and every class in use holds a partly filled zspage.
        _Device.__init__(self, nblocks, ram, block_size, mode, compressor, arena,
                         classes_for(zbytes, block_size))
        self.nblocks = nblocks
        self.bs = block_size
        self.rbuf = bytearray(block_size)  # the read buffer: the last stored block read
        self.rblock = -1
        self.reserve = max(MIN_RESERVE, self.pool.z.nz // RESERVE_SHARE)
        # FAT-aware discard: the geometry of the FAT volume found in block 0, if any
        # (fat_lo, fat_hi: the first FAT's blocks; data start; sectors per cluster;
        # clusters; 12/16/32), and the old content of a FAT block being rewritten.
        self.fat_discard = fat_discard
        self.fat = None
        self.fatbuf = None

    # -- the block protocol (the application's thread) -------------------------------------------

    def _piece(self, n, off, left):
        """Bytes of a transfer that fall in block n from off (0: n is past the end)."""
        if n >= self.nblocks:
            return 0
        k = self.bs - off
        return left if k > left else k

    def _load(self, n):
        """Block n (not in a frame) into the read buffer, verified; False: EIO (counted)."""
        if self.rblock != n:
            self.rblock = -1
            if not self.pool.peek(n, self.rbuf, 0):
                self.zc[Z_EIO] += 1
                return False
            self.rblock = n
        return True

    def readblocks(self, n, buf, off=0):
        t0 = ticks_us()
        pool = self.pool
        P = self.bs
        state = pool.state
        left = len(buf)
        pos = 0
        self.zc[Z_READS] += 1
        err = 0
        while left:
            k = self._piece(n, off, left)
            if not k:
                err = -EINVAL
                break
            s = state[n]
            if s & STATE == RESIDENT:
                state[n] = s | REF
                copy(buf, pos, pool.frames, pool.val[n] * P + off, k)
            else:
                if not self._load(n):
                    err = -EIO
                    break
                copy(buf, pos, self.rbuf, off, k)
            pos += k
            left -= k
            off = 0
            n += 1
        C.hist_add(self.rhist, ticks_diff(ticks_us(), t0))
        if err:
            self.last_error = -err
        return err

    def writeblocks(self, n, buf, off=0):
        t0 = ticks_us()
        pool = self.pool
        P = self.bs
        left = len(buf)
        pos = 0
        self.zc[Z_WRITES] += 1
        err = 0
        while left:
            k = self._piece(n, off, left)
            if not k:
                err = -EINVAL
                break
            st = pool.state[n] & STATE
            if st == UNMAPPED and pool.z.nfreez < self.reserve:
                err = -ENOSPC  # growing into new blocks stops here (see RESERVE_SHARE)
                break
            fat = self.fat
            # A block of the first FAT: its old entries, before anything changes.
            watch = (fat is not None and fat[0] <= n < fat[1]
                     and self._old_into_fatbuf(n, st))
            if k < P and st != RESIDENT:
                # A partial write of a block not in a frame: its old content, verified,
                # goes first (peek also covers one the compressor holds: its frame's copy).
                if not self._load(n):
                    err = -EIO
                    break
                f = pool.map_overwrite(n)
                if f < 0:
                    err = -ENOSPC  # the read buffer still holds the block's content
                    break
                copy(pool.frames, f * P, self.rbuf, 0, P)
            else:
                f = pool.map_overwrite(n)
                if f < 0:
                    err = -ENOSPC
                    break
            if self.rblock == n:
                self.rblock = -1
            copy(pool.frames, f * P + off, buf, pos, k)
            pool.written(n)
            if watch:
                self._fat_freed(n, f * P)
            if n == 0 and self.fat_discard:
                self._fat_parse(f * P)
            pos += k
            left -= k
            off = 0
            n += 1
        self.zc[Z_BYTES_IN] += pos
        if err:
            self.last_error = -err
            if err == -ENOSPC:
                self.zc[Z_ENOSPC] += 1
        self._kswapd()
        C.hist_add(self.whist, ticks_diff(ticks_us(), t0))
        return err

    # -- FAT-aware discard ----------------------------------------------------------------------------
    # FAT never tells a device what it freed (MicroPython builds FatFs without TRIM), but it
    # writes the allocation table through the device: an entry of the first FAT that goes from
    # non-zero to zero in a write is a cluster the volume no longer uses, so its blocks are
    # discarded. Sound because FatFs only changes entries in its one-sector window and writes
    # that sector whole: a cluster reallocated before the flush is non-zero in it, and data
    # written to a free cluster afterwards simply maps its block again. FAT12 entries that
    # straddle two sectors are skipped (their halves are written separately): their clusters
    # stay until reused.

    def _old_into_fatbuf(self, n, st):
        if st == UNMAPPED:
            memset32(self.fatbuf, 0, self.bs, self.pool._zero, 0)
            return True
        return self.pool.peek(n, self.fatbuf, 0)

    def _fat_parse(self, off):
        b = self.pool.frames
        P = self.bs
        self.fat = None
        if b[off + 510] != 0x55 or b[off + 511] != 0xAA:
            return
        bps = b[off + 11] | b[off + 12] << 8
        spc = b[off + 13]
        rsvd = b[off + 14] | b[off + 15] << 8
        nfats = b[off + 16]
        roots = b[off + 17] | b[off + 18] << 8
        tot = b[off + 19] | b[off + 20] << 8
        fsz = b[off + 22] | b[off + 23] << 8
        if tot == 0:
            tot = b[off + 32] | b[off + 33] << 8 | b[off + 34] << 16 | b[off + 35] << 24
        if fsz == 0:
            fsz = b[off + 36] | b[off + 37] << 8 | b[off + 38] << 16 | b[off + 39] << 24
        if bps != P or not spc or spc & (spc - 1) or not rsvd or not nfats or not fsz:
            return
        data = rsvd + nfats * fsz + (roots * 32 + P - 1) // P
        if tot > self.nblocks or data >= tot:
            return
        nclus = (tot - data) // spc
        kind = 12 if nclus < 4085 else 16 if nclus < 65525 else 32
        self.fat = (rsvd, rsvd + fsz, data, spc, nclus, kind)
        if self.fatbuf is None:
            self.fatbuf = bytearray(P)

    def _fat_freed(self, n, off):
        lo, hi, data, spc, nclus, kind = self.fat
        new = self.pool.frames
        old = self.fatbuf
        P = self.bs
        r = (n - lo) * P  # byte offset of this block in the FAT
        if kind == 12:
            e = (2 * r + 2) // 3
            while True:
                o = e * 3 // 2 - r
                if o + 1 >= P:
                    break
                if o >= 0:
                    a = old[o] | old[o + 1] << 8
                    b = new[off + o] | new[off + o + 1] << 8
                    if e & 1:
                        a >>= 4
                        b >>= 4
                    if a & 0xFFF and not b & 0xFFF:
                        self._free_cluster(e, data, spc, nclus)
                e += 1
            return
        w = 2 if kind == 16 else 4
        e = r // w
        for o in range(0, P, w):
            a = old[o] | old[o + 1] << 8
            b = new[off + o] | new[off + o + 1] << 8
            if w == 4:
                a |= (old[o + 2] | (old[o + 3] & 0x0F) << 8) << 16
                b |= (new[off + o + 2] | (new[off + o + 3] & 0x0F) << 8) << 16
            if a and not b:
                self._free_cluster(e, data, spc, nclus)
            e += 1

    def _free_cluster(self, c, data, spc, nclus):
        if not 2 <= c < nclus + 2:
            return
        p = data + (c - 2) * spc
        for _ in range(spc):
            if p < self.nblocks:
                if self.rblock == p:
                    self.rblock = -1
                if self.pool.discard(p):
                    self.zc[Z_DISCARDED] += 1
            p += 1
        self.zc[Z_FAT_FREED] += 1

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.nblocks
        if op == 5:  # block size
            return self.bs
        if op == 6:  # erase: littlefs erases right before reuse, so this is zram's discard
            if 0 <= arg < self.nblocks:
                if self.rblock == arg:
                    self.rblock = -1
                if self.pool.discard(arg):
                    self.zc[Z_DISCARDED] += 1
                return 0
            return -EINVAL
        if op == 1 or op == 2 or op == 3:  # init, deinit, sync (RAM: nothing to flush)
            return 0
        return -EINVAL

    # -- stats -------------------------------------------------------------------------------------

    def stats(self, fs=None):
        """See _Device.stats; with fs (the mounted VfsLfs2/VfsFat object), also what the
        filesystem uses and the stale share: blocks holding data the filesystem has freed."""
        d = _Device.stats(self)
        pool = self.pool
        # FAT's statvfs counts data clusters only: its boot sector, FATs and root directory
        # are left out of the stale share's blocks too.
        first = self.fat[2] if self.fat is not None else 0
        held = held_data = 0
        for p in range(self.nblocks):
            if pool.state[p] & STATE:
                held += 1
                if p >= first:
                    held_data += 1
        d["blocks"] = self.nblocks
        d["blocks_held"] = held
        d["disksize"] = self.nblocks * self.bs
        d["fat_discard"] = self.fat is not None
        if fs is not None:
            st = fs.statvfs("/")
            used = (st[2] - st[3]) * st[1]  # (f_blocks - f_bfree) * f_frsize
            d["fs_used_bytes"] = used
            hb = held_data * self.bs
            d["stale_share"] = 0.0 if hb <= used else (hb - used) / hb
        return d


class ZramLog(_Device):
    """An append-only log of records (bytes, up to page_size - 2 each) in compressed RAM.

        log = ZramLog(96 * 1024)
        log.append(b"12:00:01,21.5,48\\n")
        for rec in log: ...         # oldest first, each page verified
        log.drop(100)               # the 100 oldest records; their pages' memory comes back
    A page holds records as (length + 1: 2 bytes little-endian, bytes). The open page is a
    buffer of its own; a full page is sealed into a pool page and handed to the compressor.
    Full (zpool, frames or page table): append raises OSError(ENOSPC), or with
    overwrite=True drops the oldest page and goes on (a ring keeping the newest records).
    """

    def __init__(self, ram=64 * 1024, page_size=4096, mode=None, compressor="thread",
                 overwrite=False, arena=None):
        nframes, zbytes = layout(ram - page_size, page_size)  # the open page is RAM too
        npages = min(0xFFFE, max(nframes + 4, MAX_RATIO * ram // page_size))
        # Every size class: a log's pages are alike and compress to similar sizes (coarse
        # classes held 39% fewer sensor records in 96 KB, measured).
        _Device.__init__(self, npages, ram - page_size, page_size, mode, compressor, arena, 0)
        self.ram += page_size
        self.P = page_size
        self.overwrite = overwrite
        self.open = bytearray(page_size)
        self.fill = 0       # bytes used in the open page
        self.nrec = zeros("H", npages)  # records in each page of the log
        self.head = 0       # sequence number of the oldest page (page = seq % npages)
        self.tail = 0       # sequence number of the open page
        self.head_skip = 0  # records of the head page already dropped ...
        self.head_off = 0   # ... and the offset of its first live record
        self.count = 0
        self.epoch = 0      # bumped by drop: an iterator notices it

    def __len__(self):
        return self.count

    def append(self, rec):
        """Add one record (bytes-like). Allocates nothing unless it raises."""
        t0 = ticks_us()
        n = len(rec)
        P = self.P
        if n > P - 2:
            raise ValueError("record: %d bytes is more than a page holds (%d)" % (n, P - 2))
        if self.fill + 2 + n > P:
            self._seal()
        o = self.fill
        b = self.open
        b[o] = (n + 1) & 0xFF
        b[o + 1] = (n + 1) >> 8
        copy(b, o + 2, rec, 0, n)
        self.fill = o + 2 + n
        self.nrec[self.tail % self.pool.npages] += 1
        self.count += 1
        self.zc[Z_WRITES] += 1
        self.zc[Z_BYTES_IN] += n
        self._kswapd()
        C.hist_add(self.whist, ticks_diff(ticks_us(), t0))

    def _seal(self):
        pool = self.pool
        N = pool.npages
        while True:
            f = -1
            if self.tail - self.head + 1 < N:  # a free page-table slot for the next page
                f = pool.map_overwrite(self.tail % N)
            if f >= 0:
                break
            if not self.overwrite or self.head == self.tail:
                self.zc[Z_ENOSPC] += 1
                self.last_error = ENOSPC
                raise OSError(ENOSPC)
            self._drop_head_page(Z_OVERWRITTEN)
        p = self.tail % N
        copy(pool.frames, f * self.P, self.open, 0, self.P)
        pool.written(p)
        self._hand_off(p)
        self.tail += 1
        self.nrec[self.tail % N] = 0
        memset32(self.open, 0, self.P, pool._zero, 0)  # a clean page compresses better
        self.fill = 0

    def _drop_head_page(self, counter):
        """Drop the whole oldest sealed page (its remaining records)."""
        N = self.pool.npages
        p = self.head % N
        k = self.nrec[p] - self.head_skip
        self.pool.discard(p)
        self.nrec[p] = 0
        self.count -= k
        self.zc[counter] += k
        self.zc[Z_DISCARDED] += 1
        self.head += 1
        self.head_skip = 0
        self.head_off = 0
        self.epoch += 1

    def drop(self, n):
        """Drop the n oldest records (all if n >= len); whole pages go back to the pool."""
        N = self.pool.npages
        while n > 0 and self.count:
            p = self.head % N
            k = self.nrec[p] - self.head_skip
            if self.head != self.tail and n >= k:
                n -= k
                self._drop_head_page(Z_DROPPED)
                continue
            # Part of the head page: step over n record headers.
            buf = self.open if self.head == self.tail else self._page(self.head)
            k = n if n < k else k
            o = self.head_off
            for _ in range(k):
                o += 1 + (buf[o] | (buf[o + 1] << 8))  # header (length + 1) + 2 - 1
            self.head_off = o
            self.head_skip += k
            self.count -= k
            self.zc[Z_DROPPED] += k
            n -= k
            self.epoch += 1
        if self.count == 0 and self.head == self.tail:
            self.head_skip = self.head_off = 0
            self.nrec[self.tail % N] = 0
            memset32(self.open, 0, self.P, self.pool._zero, 0)
            self.fill = 0

    def _page(self, seq, buf=None):
        """A sealed page's bytes (verified) in buf (default: a new one); OSError(EIO) if not."""
        if buf is None:
            buf = bytearray(self.P)
        if not self.pool.peek(seq % self.pool.npages, buf, 0):
            self.zc[Z_EIO] += 1
            self.last_error = EIO
            raise OSError(EIO)
        return buf

    def __iter__(self):
        """Records oldest first, as bytes; every sealed page is verified as it is read.
        The log must not be dropped from while an iterator runs (RuntimeError)."""
        epoch = self.epoch
        buf = bytearray(self.P)
        N = self.pool.npages
        seq = self.head
        skip = self.head_off
        while seq <= self.tail:
            t0 = ticks_us()
            if seq == self.tail:
                copy(buf, 0, self.open, 0, self.P)  # a snapshot: appends may seal the page
                src = buf
            else:
                src = self._page(seq, buf)
            k = self.nrec[seq % N] - (self.head_skip if seq == self.head else 0)
            self.zc[Z_READS] += 1
            C.hist_add(self.rhist, ticks_diff(ticks_us(), t0))
            o = skip
            for _ in range(k):
                m = (src[o] | (src[o + 1] << 8)) - 1
                rec = bytes(src[o + 2:o + 2 + m])
                o += 2 + m
                yield rec
                if self.epoch != epoch:
                    raise RuntimeError("ZramLog: dropped from during iteration")
            skip = 0
            seq += 1

    def stats(self):
        d = _Device.stats(self)
        d["records"] = self.count
        d["log_pages"] = self.tail - self.head + 1
        d["overwrite"] = self.overwrite
        return d

# Event counters named after /proc/vmstat (and zram's mm_stat), kept in one compact array.
#
# Writers: the app/scanner side (main thread) updates most of them without a lock; counters
# that the compressor thread also updates are only ever touched under Pool.lock. A counter
# is a slot index, so an increment is `c[PGFAULT] += 1`: no allocation, no attribute lookup.
from .compat import const, zeros

PGALLOC = const(0)          # frames handed out to faults
PGFAULT = const(1)          # faults: a touch of a page with no frame
PGMAJFAULT = const(2)       # faults that brought data back from the compressed store
PGSCAN_KSWAPD = const(3)    # resident pages the scanner looked at
PGSCAN_DIRECT = const(4)    # ... that direct reclaim looked at
PGSTEAL_KSWAPD = const(5)   # frames freed by background reclaim (scanner inline or compressor)
PGSTEAL_DIRECT = const(6)   # frames freed by direct reclaim
ALLOCSTALL = const(7)       # allocations that found free <= min and reclaimed by themselves
ALLOCSTALL_US = const(8)    # time spent in those stalls
PSWPIN = const(9)           # pages read back from the store (decompressed or same-filled)
PSWPOUT = const(10)         # pages written to the store (compressed, raw or same-filled)
WORKINGSET_REFAULT = const(11)  # an evicted page was needed again
PGRESCUED = const(12)       # queued pages touched before the compressor got them
KCOMPRESSD_FALLBACK = const(13)  # ring full: the scanner compressed the oldest queued page inline
KCOMPRESSD_QUEUE_MAX = const(14)  # deepest the ring has been
SAME_PAGES = const(15)      # pages stored as one repeated word (zram same_pages)
INCOMPRESSIBLE = const(16)  # pages stored raw: LZ4 output > 3/4 page (zram huge_pages)
COMPRESS_US = const(17)     # storing pages: LZ4 + zpool slot + copy (a zram write)
DECOMPRESS_US = const(18)
SCAN_US = const(19)         # time the scanner (and direct reclaim) spent picking victims
CORRUPT = const(20)         # a page read back did not match its checksum: must stay 0
OOM = const(21)             # an access that could not get a frame at all
ELAPSED_US = const(22)
OPS = const(23)
ORIG_DATA_SIZE = const(24)  # bytes of pages now in the store (zram mm_stat)
COMPR_DATA_SIZE = const(25)  # their compressed bytes
MEM_USED = const(26)        # bytes of zpool pages in use (mm_stat mem_used_total)
ZPOOL_FULL = const(27)      # stores refused by a full zpool (the page stayed resident)
PGREFILL = const(28)        # referenced pages given a second chance by the CLOCK hand
KSWAPD_WAKE = const(29)     # times the scanner was woken at the low watermark
COMPRESSOR_US = const(30)   # time the compressor spent per page in total (incl. bookkeeping)
KCOMPRESSD_ENQUEUE = const(31)  # pages handed to the ring (isolated for the compressor)
KCOMPRESSD_BATCH = const(32)  # hand-off lock rounds: one per batch of isolated pages
KCOMPRESSD_CHEAP = const(33)  # same-filled or known-incompressible pages the scanner kept inline
KCOMPRESSD_AUTO_INLINE = const(34)  # auto: switches to compressing inline (kswapd)
KCOMPRESSD_AUTO_OFFLOAD = const(35)  # auto: switches to handing off (kcompressd)
KCOMPRESSD_AUTO_PROBE = const(36)  # auto: windows handed off on trial while inline
ALLOCSTALL_QUEUED = const(37)  # allocation stalls that began while pages sat in the ring
ALLOCSTALL_QUEUED_US = const(38)  # ... and their time
KCOMPRESSD_OFFLOADING = const(39)  # gauge: 1 while the scanner hands off, 0 while inline
KCOMPRESSD_ASSIST = const(40)  # compressor behind (free at low, pages queued): the scanner
                               # stored the oldest queued page itself
NCOUNTERS = const(41)

# Export names, index-aligned with the slots above; pgsteal_anon is derived (kswapd + direct).
NAMES = (
    "pgalloc", "pgfault", "pgmajfault", "pgscan_kswapd", "pgscan_direct",
    "pgsteal_kswapd", "pgsteal_direct", "allocstall", "allocstall_us", "pswpin",
    "pswpout", "workingset_refault", "pgrescued", "kcompressd_fallback",
    "kcompressd_queue_max", "same_pages", "incompressible", "compress_us",
    "decompress_us", "scan_us", "corrupt", "oom", "elapsed_us", "ops",
    "orig_data_size", "compr_data_size", "mem_used", "zpool_full", "pgrefill",
    "kswapd_wake", "compressor_us", "kcompressd_enqueue", "kcompressd_batch",
    "kcompressd_cheap", "kcompressd_auto_inline", "kcompressd_auto_offload",
    "kcompressd_auto_probe", "allocstall_queued", "allocstall_queued_us",
    "kcompressd_offloading", "kcompressd_assist",
)

HIST_BUCKETS = const(24)  # log2 buckets of stall time: bucket i holds 2**i <= us < 2**(i+1)


def new():
    # Unsigned 32-bit, like vmstat's unsigned long on a 32-bit kernel: an element read back
    # is a small int (no allocation) below 2**30 on 32-bit ports, always on 64-bit ones. The
    # microsecond totals wrap after 71 minutes; 'q' would allocate a long int on every read.
    return zeros("I", NCOUNTERS)


def new_hist():
    return zeros("I", HIST_BUCKETS)


def hist_add(hist, us):
    b = 0
    while us > 1 and b < HIST_BUCKETS - 1:
        us >>= 1
        b += 1
    hist[b] += 1


def export(c):
    """Counters as a dict (allocates: for samples and results, not the hot path)."""
    d = {}
    for i in range(NCOUNTERS):
        d[NAMES[i]] = c[i]
    d["pgsteal_anon"] = c[PGSTEAL_KSWAPD] + c[PGSTEAL_DIRECT]
    return d

# The paged memory end to end: every workload x mode x placement with the invariants checked
# every batch of accesses, and the edge cases of reclaim. CPython (pytest) and MicroPython
# (tests/mprun.py, where the runs are ten times longer): plain asserts.
import gc
from ucz import runner
from ucz.compat import MICROPYTHON, THREADS
from ucz import counters as C
from ucz.pool import Pool, RESIDENT, QUEUED, ZSTORED, STATE
from ucz.scanner import Scanner
from ucz.compressor import Compressor
from ucz.workload import Workload, UNIFORM

# Runs are ten times longer under MicroPython; a runner may set SCALE first (the QEMU boards run
# at CPython's length: emulated ARMv6-M has no viper compressor and is ~100x slower).
try:
    from unittest import SkipTest
except ImportError:  # MicroPython: tests/mprun.py reports it by name

    class SkipTest(Exception):
        pass


def _needs_viper_codec():
    # "Allocates nothing" is the viper codec's promise: the plain core allocates (where viper
    # cannot be used: ARMv6-M, see firmware/manifest.py).
    from ucz import lz4

    if lz4.IMPL != "viper":
        raise SkipTest("the plain LZ4 core allocates (viper: %s)" % lz4.VIPER_ERROR)


SCALE = globals().get("SCALE") or (10 if MICROPYTHON else 1)
# A port without _thread (the QEMU boards) has one placement; the thread is refused there.
PLACEMENT = "thread" if THREADS else "task"
MODES = (("kswapd", "task"), ("kcompressd", "task")) + (
    (("kcompressd", "thread"),) if THREADS else ()) + (("auto", "task"),) + (
    (("auto", "thread"),) if THREADS else ())


def _run(**kw):
    # The zpool holds every page even stored raw: only test_full_zpool_fails_cleanly fills it.
    args = {"pages": 96, "frames": 24, "page_size": 256, "ops": 400 * SCALE, "check_every": 40,
            "sample_ms": 10, "zpool": 96 * 256}
    args.update(kw)
    samples = []
    r = runner.run(runner.config(args), lambda kind, d: samples.append(kind))
    assert r["problems"] == [], r["problems"]
    c = r["counters"]
    assert c["corrupt"] == 0
    assert "compressor_error" not in r, r.get("compressor_error")
    return r, c


def test_every_workload_mode_and_placement_keeps_invariants():
    for wl in ("seq", "uniform", "hotcold", "zipf", "bursty"):
        for mode, comp in MODES:
            r, c = _run(workload=wl, mode=mode, compressor=comp, data="mixed", seed=3,
                        burst=32, gap_ms=1)
            assert c["ops"] == 400 * SCALE, (wl, mode, comp)
            assert c["pgsteal_anon"] > 0, (wl, mode, comp)  # pages > frames: it reclaims
            assert c["oom"] == 0
            # Each page in exactly one state.
            assert sum(r["states"].values()) == 96
            if mode == "kswapd" or (mode, comp) == ("auto", "task"):
                # auto on one core never hands off: the ring round trip adds to the same work
                assert c["kcompressd_fallback"] == 0 and c["kcompressd_queue_max"] == 0
                assert c["kcompressd_enqueue"] == 0 and c["kcompressd_auto_probe"] == 0


def test_every_data_kind_round_trips():
    for data in ("zero", "pattern", "text", "sensor", "random"):
        r, c = _run(data=data, mode="kcompressd", compressor=PLACEMENT, seed=8)
        assert c["pswpin"] > 0, data  # pages came back from the store and verified
        if data == "zero":
            assert c["same_pages"] > 0 and c["compr_data_size"] == 0
        if data == "random":
            assert c["incompressible"] > 0


def test_seeds_are_reproducible_in_kswapd_task_mode():
    # One core, cooperative, and slices too long to end by the clock: the whole run is a
    # function of its config.
    a = _run(mode="kswapd", compressor="task", seed=21, check_every=0, slice_us=1000000)[1]
    b = _run(mode="kswapd", compressor="task", seed=21, check_every=0, slice_us=1000000)[1]
    for k in ("pgfault", "pgmajfault", "pswpout", "pgsteal_anon", "same_pages"):
        assert a[k] == b[k], k


def test_full_zpool_fails_cleanly():
    # A store of 2 pages for 96 pages of random data: reclaim fails, accesses go oom,
    # nothing is corrupted or dropped.
    for mode, comp in MODES:
        r, c = _run(data="random", zpool=2 * 256, mode=mode, compressor=comp)
        assert c["zpool_full"] > 0 and c["oom"] > 0, (mode, comp)
        assert c["ops"] == 400 * SCALE


def test_nearly_full_zpool_under_the_compressor_thread():
    # Stores that sometimes fail while the app rescues pages: the thread's give-back path.
    for seed in (1, 2, 3):
        r, c = _run(data="mixed", zpool=24 * 256, mode="kcompressd", compressor=PLACEMENT,
                    workload="hotcold", seed=seed, ring=8)
        assert c["pswpout"] > 0


def test_watermarks_are_configurable_and_checked():
    r = _run(wmark_min=2, wmark_low=6, wmark_high=12)[0]
    assert r["watermarks"] == [2, 6, 12]
    try:
        runner.config({"frames": 24, "pages": 96, "wmark_min": 6, "wmark_low": 4, "wmark_high": 12})
        raise AssertionError("min > low accepted")
    except ValueError as e:
        assert str(e).startswith("wmark_min:")


def test_config_rejects_bad_input_by_name():
    for args, key in (({"pages": -1}, "pages"), ({"workload": "nope"}, "workload"),
                      ({"data": "nope"}, "data"), ({"frames": 200, "pages": 100}, "frames"),
                      ({"page_size": 1000}, "page_size"), ({"bogus": 1}, "bogus"),
                      ({"ops": "10"}, "ops"), ({"zpool": 100}, "zpool")):
        try:
            runner.config(args)
            raise AssertionError("accepted %r" % (args,))
        except ValueError as e:
            assert str(e).startswith(key + ":"), str(e)
    assert runner.config({"frames": 200, "pages": 100, "pressure": 0})["frames"] == 200


def test_metadata_budget():
    r = _run(ops=50)[0]
    m = r["meta"]
    assert m["bytes_per_page"] <= 16 and m["bytes_per_frame"] <= 4


def _pool(npages=64, nframes=16, ps=256):
    pool = Pool(npages, nframes, ps, 64 * ps, data=5, seed=9)
    comp = Compressor(pool, "task")
    sc = Scanner(pool, comp)
    return pool, sc, comp


def test_rescue_from_the_ring_skips_decompression():
    pool, sc, comp = _pool()
    for p in range(10):
        pool.touch(p, True)
    assert pool.enqueue(3) and pool.state[3] & STATE == QUEUED
    major = pool.c[C.PGMAJFAULT]
    pool.touch(3, False)  # read while queued: back to resident, verified, no decompression
    assert pool.state[3] & STATE == RESIDENT
    assert pool.c[C.PGRESCUED] == 1 and pool.c[C.PGMAJFAULT] == major
    assert pool.dequeue(comp.sc) == -1  # the stale ring entry is skipped
    assert pool.check() == []


def test_rescue_during_writeback_discards_the_compressed_copy():
    pool, sc, comp = _pool()
    for p in range(10):
        pool.touch(p, True)
    pool.enqueue(4)
    assert pool.dequeue(comp.sc) == 4  # the compressor took it (WRITEBACK)
    pool.touch(4, True)  # the app writes it meanwhile
    pool.writeback(4, comp.sc, C.PGSTEAL_KSWAPD)  # must not publish the stale copy
    assert pool.state[4] & STATE == RESIDENT
    assert pool.c[C.PSWPOUT] == 0
    pool.touch(4, False)
    assert pool.c[C.CORRUPT] == 0 and pool.check() == []


def test_a_stale_claim_never_publishes():
    # The compressor holds page 4 in its batch; before it stores it, the app rescues and
    # rewrites the page, the scanner queues it again and the main thread claims it (a stall
    # or a full ring). The compressor's copy is of the old contents: it must be dropped, and
    # only the main thread's store counts.
    pool, sc, comp = _pool()
    for p in range(10):
        pool.touch(p, True)
    pool.enqueue(4)
    assert pool.dequeue_batch(comp.sc, 4) == 1 and comp.sc.pages[0] == 4
    real = pool.place

    def meanwhile(f, n, s):
        if s is comp.sc:  # after the compressor encoded the old contents
            pool.touch(4, True)
            assert pool.enqueue(4)
            assert pool.dequeue(pool.scratch) == 4  # claimed again, by the main thread
        return real(f, n, s)

    pool.place = meanwhile
    comp.sc.frame, comp.sc.gen = comp.sc.frames[0], comp.sc.gens[0]
    assert not pool.writeback(4, comp.sc, C.PGSTEAL_KSWAPD)  # the stale claim: dropped
    pool.place = real
    assert pool.state[4] & STATE == 3 and pool.c[C.PSWPOUT] == 0  # still the main's WRITEBACK
    assert pool.writeback(4, pool.scratch, C.PGSTEAL_KSWAPD)
    pool.touch(4, False)  # back from the store: the new contents
    assert pool.c[C.CORRUPT] == 0 and pool.check() == []


def test_direct_reclaim_is_a_counted_stall():
    pool, sc, comp = _pool()
    for p in range(64):  # no scanner running: every fault past min reclaims directly
        pool.touch(p, True)
    c = pool.c
    assert c[C.ALLOCSTALL] > 0 and c[C.PGSTEAL_DIRECT] > 0 and c[C.PGSCAN_DIRECT] > 0
    assert sum(pool.hist) == c[C.ALLOCSTALL]
    assert pool.state[0] & STATE == ZSTORED or pool.state[0] & STATE == 5
    for p in range(64):
        pool.touch(p, False)
    assert c[C.CORRUPT] == 0 and pool.check() == []


def test_a_stall_frees_one_page_while_handing_off_and_nr_direct_inline():
    # kswapd (and auto while inline): a stall reclaims nr_direct pages, as Linux's direct
    # reclaim does. Handing off: one, the ring's oldest first; the compressor does the rest.
    for offload in (False, True):
        pool = Pool(64, 16, 256, 64 * 256, data=5, seed=9)
        comp = Compressor(pool, "task")
        sc = Scanner(pool, comp if offload else None)
        for p in range(12):  # free stays above min: no stall yet
            pool.touch(p, True)
        if offload:
            assert pool.enqueue(0) and pool.enqueue(1)
        c = pool.c
        assert c[C.ALLOCSTALL] == 0
        f0 = pool.nfree
        sc.direct()
        freed = pool.nfree - f0
        assert freed == c[C.PGSTEAL_DIRECT] == (1 if offload else sc.nr_direct)
        if offload:
            assert pool.state[0] & STATE == ZSTORED and pool.state[1] & STATE == QUEUED
        assert pool.check() == []


def test_batches_hand_off_in_one_lock_round_each():
    for batch in (1, 4, 16):
        r, c = _run(mode="kcompressd", compressor=PLACEMENT, batch=batch, ring=16, data="text")
        assert c["kcompressd_enqueue"] > 0
        # Every page handed off went through a batch; a batch holds at most `batch` pages.
        assert c["kcompressd_batch"] * batch >= c["kcompressd_enqueue"] >= c["kcompressd_batch"]
    try:
        runner.config({"batch": 65, "ring": 64})
        raise AssertionError("batch > ring accepted")
    except ValueError as e:
        assert str(e).startswith("batch:")


def test_assist_is_a_knob():
    # With the assist off the scanner never stores queued pages itself (the trade it makes,
    # scanner time for stalls, can then be measured either way).
    for comp in sorted({"task", PLACEMENT}):
        r, c = _run(mode="kcompressd", compressor=comp, assist=0, data="text")
        assert c["kcompressd_assist"] == 0 and c["pgsteal_anon"] > 0


def test_full_ring_compresses_the_oldest_page_inline():
    # No compressor draining: the scanner fills the ring, then each new victim first stores
    # the ring's oldest page inline (kcompressd_fallback) and is queued behind the rest.
    pool = Pool(64, 32, 256, 64 * 256, data=2, seed=9, ring=4, batch=4)  # text: not cheap
    sc = Scanner(pool, Compressor(pool, "task"))
    for p in range(20):
        pool.touch(p, True)
    for p in range(20):
        pool.state[p] &= ~0x80  # clear REF: the hand takes them in frame order
    sc.hand = 0
    offload = True
    assert sc._batch(4, offload, 0) == 4  # the ring is now full: pages 0..3
    assert [pool.ring[(pool.rhead + i) % 4] for i in range(4)] == [0, 1, 2, 3]
    assert sc._batch(2, offload, 0) == 2
    c = pool.c
    assert c[C.KCOMPRESSD_FALLBACK] == 2
    # The two oldest (0 and 1) were stored; 4 and 5 queued behind 2 and 3: LRU order kept.
    assert pool.state[0] & STATE in (ZSTORED, 5) and pool.state[1] & STATE in (ZSTORED, 5)
    assert [pool.ring[(pool.rhead + i) % 4] for i in range(4)] == [2, 3, 4, 5]
    assert pool.check() == []


def test_cheap_pages_never_cross_cores():
    # Same-filled pages (zero data) and pages known incompressible (random, once stored raw)
    # are stored by the scanner itself, never queued.
    r, c = _run(mode="kcompressd", compressor=PLACEMENT, data="zero", write_pct=0)
    assert c["kcompressd_cheap"] > 0 and c["kcompressd_enqueue"] == 0
    assert c["same_pages"] > 0
    r, c = _run(mode="kcompressd", compressor=PLACEMENT, data="random", write_pct=0,
                workload="seq")
    assert c["kcompressd_cheap"] > 0  # second time round, every page is HUGE
    assert c["incompressible"] > 0


def test_a_same_filled_page_is_scanned_once_and_kept_by_its_word():
    # cheap() leaves the word it found for store_inline(same=True): each page keeps its own.
    from ucz.pool import CHEAP_SAME, SAME

    pool = Pool(16, 8, 256, 16 * 256, data=5, seed=9)
    for p, byte in ((1, 0x11), (2, 0x22)):
        f = pool.map_overwrite(p)
        for i in range(256):
            pool.frames[f * 256 + i] = byte
        pool.written(p)
        assert pool.cheap(p) == CHEAP_SAME
        assert pool.store_inline(p, C.PGSTEAL_KSWAPD, True) and pool.state[p] == SAME
    for p, byte in ((1, 0x11), (2, 0x22)):
        f = pool.touch(p, False)  # verified against its checksum
        assert pool.frames[f * 256 + 100] == byte
    assert pool.c[C.CORRUPT] == 0 and pool.c[C.SAME_PAGES] == 2 and pool.check() == []


def test_a_page_found_incompressible_is_tried_inline_after_a_write():
    # INCOMP survives a write (HUGE does not): the scanner stores the new version itself,
    # with LZ4 tried again, and a page that became compressible loses the flag.
    from ucz.pool import HUGE, INCOMP

    pool = Pool(16, 8, 256, 16 * 256, data=4, seed=9)  # random data: incompressible
    comp = Compressor(pool, "task")
    sc = Scanner(pool, comp)
    pool.touch(3, True)
    assert pool.store_inline(3, C.PGSTEAL_KSWAPD)
    assert pool.state[3] == ZSTORED | HUGE | INCOMP
    pool.touch(3, True)  # faulted in, verified, rewritten: new content
    assert pool.state[3] & (HUGE | INCOMP) == INCOMP and pool.cheap(3)
    pool.state[3] &= ~0x80  # REF clear: the hand takes it
    sc.hand = pool.val[3]
    assert sc._batch(1, True, 0) == 1  # kcompressd mode: stored here, not queued
    c = pool.c
    assert c[C.KCOMPRESSD_CHEAP] == 1 and c[C.KCOMPRESSD_ENQUEUE] == 0
    assert pool.state[3] == ZSTORED | HUGE | INCOMP and c[C.INCOMPRESSIBLE] == 2
    # Now compressible content (zeros but one word, as an app writes): LZ4 is tried, it
    # compresses, the flag goes and the next store is handed off.
    f = pool._fault(3)
    for i in range(4, 256):
        pool.frames[f * 256 + i] = 0
    pool.written(3)
    assert pool.cheap(3)
    assert pool.store_inline(3, C.PGSTEAL_KSWAPD) and pool.state[3] == ZSTORED
    pool.touch(3, False)
    assert not pool.cheap(3) and pool.c[C.CORRUPT] == 0
    assert pool.check() == []


def test_mp_hot_paths_do_not_allocate():
    # The GC must not be what the counters measure: faults, direct reclaim, the ring and
    # the compressor's writeback allocate nothing once warm. That is the viper codec's promise:
    # the plain core allocates (where viper cannot be used: ARMv6-M before MicroPython 1.26).
    _needs_viper_codec()
    pool, sc, comp = _pool(npages=128, nframes=32, ps=1024)
    wl = Workload(UNIFORM, 128, 5, 30)
    for _ in range(600):  # warm up: every page touched, every path taken once
        pool.touch(wl.next_page(), wl.is_write())
    gc.collect()
    gc.disable()
    try:
        a0 = gc.mem_alloc()
        for i in range(2000):
            pool.touch(wl.next_page(), wl.is_write())
            if i & 7 == 0:
                p = sc.pick(C.PGSCAN_KSWAPD)
                if p >= 0 and pool.enqueue(p):
                    q = pool.dequeue(comp.sc)
                    if q >= 0:
                        pool.writeback(q, comp.sc, C.PGSTEAL_KSWAPD)
        a1 = gc.mem_alloc()
    finally:
        gc.enable()
    assert pool.c[C.ALLOCSTALL] > 0 and pool.c[C.PSWPIN] > 0 and pool.c[C.PSWPOUT] > 0
    assert a1 - a0 == 0, "hot paths allocated %d bytes" % (a1 - a0)
    assert pool.c[C.CORRUPT] == 0


def test_mp_batched_and_auto_paths_do_not_allocate():
    # The batched hand-off (scanner batch, ring-full fallback, cheap pages inline, the
    # compressor's batch drain, the assist) and auto's per-batch decision allocate nothing.
    _needs_viper_codec()
    # zpool: the 96 pages out of frames, all raw at worst (an arena of 128 KB: one of 160 KB
    # did not always find a free block in a Pico 2's heap after the tests before it)
    pool = Pool(128, 32, 1024, 96 * 1024, data=5, seed=9, ring=8, batch=4)
    comp = Compressor(pool, "task")
    sc = Scanner(pool, comp, auto=True)
    sc.auto.same_core = False  # let it try both designs
    sc.auto.offload = True
    wl = Workload(UNIFORM, 128, 5, 30)

    def turn(i):
        pool.touch(wl.next_page(), wl.is_write())
        if i & 7 == 0:
            n = sc._batch(4, sc.auto.offload, 0)
            sc.auto.step(comp)
            if i & 15 == 0:
                comp._drain()
            if n == 0:
                pool.writeback_oldest(C.PGSTEAL_KSWAPD)

    for i in range(1500):  # warm up: every path once
        turn(i)
    gc.collect()
    gc.disable()
    try:
        a0 = gc.mem_alloc()
        for i in range(3000):
            turn(i)
        a1 = gc.mem_alloc()
    finally:
        gc.enable()
    c = pool.c
    assert c[C.KCOMPRESSD_BATCH] > 0 and c[C.KCOMPRESSD_FALLBACK] > 0 and c[C.KCOMPRESSD_CHEAP] > 0
    assert c[C.KCOMPRESSD_AUTO_PROBE] > 0 and c[C.ZPOOL_FULL] == 0
    assert a1 - a0 == 0, "batched/auto paths allocated %d bytes" % (a1 - a0)
    assert c[C.CORRUPT] == 0 and pool.check() == []

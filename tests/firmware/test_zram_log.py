# ZramLog: randomized append/iterate/drop against a model in every mode, the memory drop()
# gives back, ENOSPC without a loss, the ring mode, verification, and (MicroPython) an
# append path that allocates nothing. CPython (pytest) and MicroPython (tests/mprun.py).
import gc
from ucz.compat import MICROPYTHON, sleep_ms, zeros, THREADS
from ucz.pagedata import fill, rand, RANDOM
from ucz.pool import ZSTORED, STATE
from ucz.zram import ZramLog, ENOSPC, EIO

try:
    from unittest import SkipTest
except ImportError:  # MicroPython: tests/mprun.py reports it by name

    class SkipTest(Exception):
        pass


# A port without _thread (the QEMU boards) has one placement; the thread is refused there.
MODES = (("kswapd", "task"), ("kcompressd", "task")) + ((("kcompressd", "thread"),) if THREADS else ())
SCALE = globals().get("SCALE") or (4 if MICROPYTHON else 1)  # a runner may set it (QEMU: 1)
PS = 1024


def Rng(seed):
    """n -> a seeded draw in 0..n-1 (pagedata.rand's generator)."""
    st = zeros("I", 1)
    st[0] = seed * 7919 + 1
    return lambda n: rand(st) % n


def _record(i, rng):
    # A sensor line, sometimes a longer or binary one, sometimes empty.
    k = rng(20)
    if k == 0:
        return b""
    if k == 1:
        b = bytearray(1 + rng(PS - 2))
        fill(b, 0, len(b), RANDOM, i, 0, 0)
        return bytes(b)
    return b"%d,%d.%d,%d\n" % (1700000000 + i, 20 + rng(3), rng(10), 40 + rng(5))


def _sound(log):
    assert log.pool.check() == [], log.pool.check()
    s = log.stats()
    assert s["corrupt"] == 0
    assert "compressor_error" not in s, s["compressor_error"]
    return s


def _drained(dev):
    # The compressor thread works on its own time: wait until the ring is empty.
    for _ in range(1000):
        if dev.pool.nqueued == 0:
            return
        sleep_ms(2)
    raise AssertionError("the compressor thread did not drain the ring")


def test_append_iterate_drop_against_a_model_in_every_mode():
    arena = bytearray(24 * PS)
    for mode, comp in MODES:
        rng = Rng(4)
        log = ZramLog(24 * PS, page_size=PS, mode=mode, compressor=comp, arena=arena)
        try:
            model = []
            first = 0  # index of model[0] in the sequence of all records
            n = 0
            for step in range(600 * SCALE):
                op = rng(20)
                if op < 16:
                    rec = _record(n, rng)
                    log.append(rec)
                    model.append(rec)
                    n += 1
                elif op < 18:
                    k = rng(40)
                    log.drop(k)
                    del model[:k]
                else:
                    got = list(log)
                    assert got == model, (mode, comp, step, len(got), len(model))
                assert len(log) == len(model)
                if step % 100 == 0:
                    _sound(log)
            assert list(log) == model
            _drained(log)
            s = _sound(log)
            # Pages were sealed and stored or handed over. Whether the thread stored any before
            # drop() discarded them is its own timing (under CPython's GIL it may never run in
            # time), so a hand-off is counted where it happens: kcompressd_enqueue.
            assert s["pgalloc"] > 0 and s["pswpout"] + s["kcompressd_enqueue"] > 0, (mode, comp)
        finally:
            log.close()


def test_drop_gives_memory_back():
    for mode, comp in MODES:
        log = ZramLog(24 * PS, page_size=PS, mode=mode, compressor=comp)
        try:
            free0 = log.free_bytes()
            rng = Rng(2)
            i = 0
            while log.stats()["pages_stored"] < 10:
                log.append(_record(i, rng))
                i += 1
            if comp == "thread":
                sleep_ms(20)
            used = log.free_bytes()
            assert used < free0
            log.drop(len(log) // 2)
            half = log.free_bytes()
            assert half > used, (mode, comp, used, half)
            log.drop(len(log))
            assert len(log) == 0 and list(log) == []
            assert log.free_bytes() == free0, (mode, comp, log.free_bytes(), free0)
            assert log.stats()["mem_used"] == 0
            log.append(b"again")
            assert list(log) == [b"again"]
            _sound(log)
        finally:
            log.close()


def test_full_log_raises_enospc_and_keeps_every_record():
    for mode, comp in MODES:
        log = ZramLog(16 * PS, page_size=PS, mode=mode, compressor=comp)
        try:
            b = bytearray(PS // 2)
            i = 0
            while True:
                fill(b, 0, len(b), RANDOM, 3, i, 0)  # incompressible: pages stored raw
                try:
                    log.append(b)
                except OSError as e:
                    assert e.args[0] == ENOSPC
                    break
                i += 1
            assert len(log) == i and log.stats()["enospc"] == 1
            j = 0
            for rec in log:
                fill(b, 0, len(b), RANDOM, 3, j, 0)
                assert rec == b, (mode, comp, j)
                j += 1
            assert j == i
            log.drop(4)  # room again
            fill(b, 0, len(b), RANDOM, 3, i, 0)
            log.append(b)
            assert len(log) == i - 3
            _sound(log)
        finally:
            log.close()


def test_ring_mode_keeps_the_newest_records():
    for mode, comp in MODES:
        log = ZramLog(16 * PS, page_size=PS, mode=mode, compressor=comp, overwrite=True)
        try:
            rng = Rng(6)
            b = bytearray(300)
            n = 400 * SCALE
            for i in range(n):
                if rng(2):
                    fill(b, 0, 300, RANDOM, 9, i, 0)
                    log.append(b)
                else:
                    log.append(b"%d,line\n" % i)
            got = list(log)
            assert 0 < len(got) == len(log) < n
            s = log.stats()
            assert s["overwritten"] == n - len(got) and s["enospc"] == 0
            first = n - len(got)  # the newest records, consecutive, up to the last one
            for k, rec in enumerate(got):
                i = first + k
                if rec[:1] != b"%d" % (i % 10) and len(rec) == 300:
                    fill(b, 0, 300, RANDOM, 9, i, 0)
                    assert rec == b, (mode, comp, i)
                elif len(rec) != 300:
                    assert rec == b"%d,line\n" % i, (mode, comp, i, rec)
            _sound(log)
        finally:
            log.close()


def test_records_are_checked():
    log = ZramLog(16 * PS, page_size=PS, mode="kswapd")
    try:
        try:
            log.append(bytes(PS - 1))
            raise AssertionError("a record longer than a page was accepted")
        except ValueError:
            pass
        log.append(bytes(PS - 2))  # the longest one
        i = 0
        while log.stats()["pages_stored"] < 3:
            log.append(b"%d,some sensor line with a value\n" % i)
            i += 1
        pool = log.pool
        p = 1
        while pool.state[p] & STATE != ZSTORED:
            p += 1
        zoff = pool.z.offset(pool.val[p])
        pool.z.buf[zoff + pool.clen[p] - 1] ^= 0x5A
        try:
            list(log)
            raise AssertionError("a corrupted page was read")
        except OSError as e:
            assert e.args[0] == EIO
        assert log.stats()["eio"] == 1 and log.stats()["corrupt"] == 1
    finally:
        log.close()


def test_mp_append_does_not_allocate():
    # Task placement with no loop running: sealed pages are stored inline, so what is
    # measured is the caller's path alone (a thread's own allocations would count too:
    # gc.mem_alloc is the whole heap's). The viper codec's promise: the plain core allocates
    # (where viper cannot be used: ARMv6-M, see firmware/manifest.py).
    from ucz import lz4

    if lz4.IMPL != "viper":
        raise SkipTest("the plain LZ4 core allocates (viper: %s)" % lz4.VIPER_ERROR)
    log = ZramLog(32 * 1024, page_size=1024, mode="kcompressd", compressor="task")
    try:
        rec = bytearray(b"1700000000,21.5,48\n")
        for i in range(2000):  # warm: pages sealed, handed off, stored
            log.append(rec)
        gc.collect()
        gc.disable()
        try:
            a0 = gc.mem_alloc()
            for i in range(3000):  # about 55 pages sealed on the way
                rec[9] = 48 + i % 10
                log.append(rec)
            a1 = gc.mem_alloc()
        finally:
            gc.enable()
        assert a1 - a0 == 0, "append allocated %d bytes" % (a1 - a0)
        assert log.stats()["pswpout"] > 0 and log.stats()["corrupt"] == 0
    finally:
        log.close()

# The compressed store's allocator: CPython and MicroPython (plain asserts).
import gc

from ucz.zpool import ZPool, zspage_pages
from ucz.pagedata import rand
from ucz.compat import zeros


def _rng(seed):
    st = zeros("I", 1)
    st[0] = seed
    return st


def _stamp(z, h, n, tag):
    o = z.offset(h)
    for i in range(n):
        z.buf[o + i] = (tag + i) & 0xFF


def _stamped(z, h, n, tag):
    o = z.offset(h)
    return all(z.buf[o + i] == (tag + i) & 0xFF for i in range(n))


def test_classes_cover_every_size_up_to_a_page():
    for ps in (256, 1024, 4096):
        z = ZPool(64 * ps, ps)
        assert z.group == 4
        for n in range(1, ps + 1, 7):
            c = z.cls_of[(n + 7) >> 3]
            assert z.slot[c] >= n
            assert c == 0 or z.slot[c - 1] < n  # the tightest class
        # A raw page has a class of exactly one page: no waste.
        assert z.slot[z.cls_of[ps >> 3]] == ps
        z = None  # the next store is 4x bigger: on a 400 KB heap both would not fit
        gc.collect()


def test_small_stores_use_smaller_zspages():
    assert zspage_pages(64 * 1024, 1024) == 4
    assert zspage_pages(20 * 1024, 1024) == 1
    z = ZPool(8 * 1024, 1024)
    assert z.group == 1 and z.nz == 8


def test_random_alloc_free_keeps_objects_and_accounting():
    ps = 1024
    z = ZPool(48 * ps, ps)
    st = _rng(5)
    live = {}  # handle -> (n, tag)
    used = 0
    for step in range(3000):
        r = rand(st)
        if live and (r & 3) == 0 or len(live) > 120:
            h = list(live)[r % len(live)]
            n, tag = live.pop(h)
            assert _stamped(z, h, n, tag), "object %d overwritten" % h
            z.free(h, n)
            used -= n
        else:
            n = 1 + (r >> 4) % ps
            h = z.alloc(n)
            if h < 0:
                assert z.nfreez == 0  # only a store with no free zspage refuses
                continue
            assert h not in live
            _stamp(z, h, n, step)
            live[h] = (n, step & 0xFF)
            used += n
        assert z.used_bytes == used and z.nobj == len(live)
        if step % 250 == 0:
            z.check()
    for h in list(live):
        n, tag = live.pop(h)
        assert _stamped(z, h, n, tag)
        z.free(h, n)
    z.check()
    assert z.nfreez == z.nz and z.used_bytes == 0 and z.mem_used() == 0


def test_full_store_refuses_then_recovers():
    ps = 512
    z = ZPool(4 * ps, ps)  # group 1: four zspages of one page
    hs = [z.alloc(ps) for _ in range(4)]
    assert all(h >= 0 for h in hs)
    assert z.alloc(ps) == -1 and z.alloc(10) == -1
    z.free(hs[0], ps)
    h = z.alloc(10)
    assert h >= 0
    z.check()


def test_fragmentation_figure():
    ps = 1024
    z = ZPool(64 * ps, ps)
    assert z.stats()["fragmentation"] == 0.0
    h = z.alloc(100)
    s = z.stats()
    assert s["mem_used"] == 4 * ps and s["compr_data_size"] == 100
    assert abs(s["fragmentation"] - (1 - 100 / (4 * ps))) < 1e-9
    z.free(h, 100)
    assert z.stats()["mem_used"] == 0


def test_arena_base_offsets():
    ps = 256
    arena = bytearray(1000 + 16 * ps)
    z = ZPool(16 * ps, ps, buf=arena, base=1000)
    h = z.alloc(200)
    assert z.offset(h) >= 1000
    _stamp(z, h, 200, 3)
    assert arena[:1000] == bytearray(1000)
    try:
        ZPool(16 * ps, ps, buf=bytearray(100), base=0)
        raise AssertionError("a too small arena was accepted")
    except ValueError:
        pass

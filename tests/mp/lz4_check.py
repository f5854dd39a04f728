# ucz.lz4 checks that run under MicroPython (unix port); driven by tests/test_lz4.py.
#
#   micropython -X heapsize=400K tests/mp/lz4_check.py <firmware dir> <records in> <blocks out>
#
# <records in>, written by the CPython side: per record u32 n, n page bytes, u8 count, then
# count times (u8 tag length, tag, u32 block length, block) with blocks from the C library
# ("default" = LZ4_compress_default). <blocks out>: per record u32 n, u32 length, the block
# this port's lz4.compress made, for the C library to decode. Plain asserts; prints "OK n impl".
import gc
import struct
import sys

# Ports without sys.argv (MicroPython's qemu port, ucz frozen in) exec this with ARGV set.
FW, INP, OUT = globals().get("ARGV") or sys.argv[1:4]
if FW:
    sys.path.insert(0, FW)

from array import array

from ucz import lz4
from ucz.compat import has_viper

V = lz4._vc  # the viper compressor
VD = lz4._vd  # the viper decompressor, loaded on its own
# ARMv6-M (RP2040, qemu-m0): a MicroPython before 1.26 refuses the viper compressor (a jump over
# 2 KiB: "native method too big"); the decompressor must load natively all the same.
ARMV6M = (getattr(sys.implementation, "_mpy", 0) >> 10) & 0xF == 4
assert (VD is not None) == has_viper(), "lz4dec_viper did not import: %s" % lz4.VIPER_ERROR
assert lz4.IMPL_DECOMPRESS == ("viper" if has_viper() else "python")
if ARMV6M and V is None:
    assert "native method too big" in str(lz4.VIPER_ERROR), lz4.VIPER_ERROR
    assert lz4.IMPL == "viper-decompress", lz4.IMPL
else:
    assert (V is not None) == has_viper(), "lz4_viper did not import on a native-emitter port"
    assert lz4.IMPL == ("viper" if has_viper() else "python"), lz4.VIPER_ERROR
checks = 0
SENT = 0xA5
TABLE = lz4.new_table()


def u32(f):
    return struct.unpack("<I", f.read(4))[0]


def guarded(size, pad=7):
    # A writable view of `size` bytes inside a buffer of sentinels, to catch stray writes.
    buf = bytearray(b"\xa5" * (size + 2 * pad))  # SENT
    return buf, memoryview(buf)[pad : pad + size]


def sentinels_ok(buf, size, pad=7):
    for i in range(pad):
        if buf[i] != SENT or buf[pad + size + i] != SENT:
            return False
    return True


def expect_value_error(fn, words):
    try:
        fn()
    except ValueError as e:
        msg = str(e)
        assert msg.startswith("lz4: ") and words in msg, msg
        return msg
    raise AssertionError("no ValueError (%s)" % words)


# --- conformance against the C library, both directions -------------------------------------
records = []  # (page, our block) of the small ones, reused below
fin = open(INP, "rb")
fout = open(OUT, "wb")
nrec = 0
while True:
    gc.collect()  # the first record is > 64 KiB and the heap only 400K
    head = fin.read(4)
    if not head:
        break
    n = struct.unpack("<I", head)[0]
    page = fin.read(n)
    blocks = {}
    for _ in range(fin.read(1)[0]):
        tag = fin.read(fin.read(1)[0]).decode()
        blocks[tag] = fin.read(u32(fin))
    nrec += 1

    # Decode every C block (fast and high-compression levels) with both cores.
    for tag, blk in blocks.items():
        out = bytearray(n)
        assert lz4.decompress(blk, out) == n and out == page, (n, tag)
        if n <= 4096:
            out2 = bytearray(n)
            assert lz4._decompress_py(blk, out2) == n and out2 == page, (n, tag)
        checks += 1

    # Compress: viper, viper with the 32-bit hash arithmetic and the portable core agree,
    # and match LZ4_compress_default byte for byte up to 64 KiB. One dst, reused: the heap
    # is small and the first page large.
    bnd = lz4.bound(n)
    dst = bytearray(bnd)
    k = lz4.compress(page, dst)
    mine = bytes(memoryview(dst)[:k])
    if n <= 65536:
        assert mine == blocks["default"], ("differs from the C library", n)
    blocks = None
    if V is not None:
        dst[:] = b"\x00" * bnd
        assert V.compress(page, dst, TABLE, n, bnd, 1) == k and dst[:k] == mine, ("w32", n)
    dst[:] = b"\x00" * bnd
    r = lz4._compress_py(page, dst, TABLE)
    assert r == k and dst[:k] == mine, ("plain != viper", n)
    fout.write(struct.pack("<II", n, k))
    fout.write(mine)
    checks += 3

    if n > 4096:
        continue
    records.append((page, mine))

    # memoryview slices at odd offsets for src and dst; sentinels around dst.
    pool = bytearray(n + 11)
    pool[3 : 3 + n] = page
    src = memoryview(pool)[3 : 3 + n]
    buf, view = guarded(bnd)
    assert lz4.compress(src, view, TABLE) == k and view[:k] == mine and sentinels_ok(buf, bnd)
    assert bytes(view[k:]) == b"\xa5" * (bnd - k), "compress wrote past its output"
    buf, view = guarded(n)
    assert lz4.decompress(memoryview(dst)[:k], view) == n and view == page and sentinels_ok(buf, n)
    checks += 2

    # dst too small: ValueError naming the size, no byte written past len(dst), both cores.
    for size in sorted(set((0, 1, k // 2, k - 1))):
        if size < 0 or size >= k:
            continue
        buf, view = guarded(size)
        msg = expect_value_error(lambda: lz4.compress(page, view), "dst too small (need >= ")
        assert sentinels_ok(buf, size), ("compress wrote past dst", n, size)
        need = int(msg.split("need >= ")[1].split(",")[0])
        assert size < need <= k, (size, need, k)
        buf2, view2 = guarded(size)
        if V is not None:
            assert lz4._compress_py(page, view2, TABLE) == V.compress(page, view2, TABLE, n, size, 0)
        assert sentinels_ok(buf2, size)
        checks += 1
    buf, view = guarded(k)  # exactly enough
    assert lz4.compress(page, view) == k and view == mine and sentinels_ok(buf, k)
    if n:  # and one byte short of the decoded size
        buf, view = guarded(n - 1)
        expect_value_error(lambda: lz4.decompress(mine, view), "output does not fit dst")
        assert sentinels_ok(buf, n - 1)
    checks += 2
fin.close()
fout.close()
assert nrec > 0

# --- API edges ----------------------------------------------------------------------------------
d = bytearray(16)
assert lz4.compress(b"", d) == 1 and d[0] == 0
assert lz4.decompress(b"\x00", bytearray(0)) == 0
expect_value_error(lambda: lz4.decompress(b"", bytearray(4)), "truncated input at byte 0")
expect_value_error(lambda: lz4.decompress(b"\x10a\x00\x00\x50bcdef", bytearray(20)), "offset 0 at byte 2")
expect_value_error(lambda: lz4.decompress(b"\x10a\x02\x00\x50bcdef", bytearray(20)), "before the start")
expect_value_error(lambda: lz4.decompress(b"\x10a\x01\x00", bytearray(20)), "ends without last literals")
expect_value_error(lambda: lz4.decompress(b"\x50abc", bytearray(20)), "truncated input at byte 1")
for bad in (bytearray(4096), array("B", bytes(4096)), array("H", bytes(20))):
    expect_value_error(lambda: lz4.compress(b"abc", bytearray(8), bad), "table must come from new_table()")
for ro in (bytes(32), memoryview(b"x" * 32)):  # never let viper write into immutable memory
    try:
        lz4.compress(b"abcdef", ro)
        raise AssertionError("compressed into a read-only buffer")
    except TypeError:
        pass
checks += 10


# --- decoder fuzzing: random and mutated blocks, viper core == portable core ---------------------
class Rng:  # xorshift32: identical streams on every port, no dependence on `random`
    def __init__(self, seed):
        self.s = seed

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def below(self, n):
        return self.next() % n


rng = Rng(0x1234567)
small = [blk for page, blk in records if 0 < len(blk) <= 1500]
assert small
fuzz = 0
for case in range(2500):
    kind = case % 3
    if kind == 0:  # random bytes
        blk = bytearray(rng.below(48))
        for i in range(len(blk)):
            blk[i] = rng.next() & 0xFF
    else:  # a valid block with a few bytes changed, then maybe cut or extended
        blk = bytearray(small[rng.below(len(small))])
        for _ in range(1 + rng.below(3)):
            blk[rng.below(len(blk))] = rng.next() & 0xFF
        if kind == 2:
            cut = rng.below(len(blk) + 1)
            blk = blk[:cut] + bytes(rng.below(3))
    cap = rng.below(4200)
    buf_v, view_v = guarded(cap)
    buf_p, view_p = guarded(cap)
    rv = VD.decompress(blk, view_v, len(blk), cap) if VD is not None else lz4._decompress_py(blk, view_v)
    rp = lz4._decompress_py(blk, view_p)
    assert rv == rp, ("viper and plain disagree", case, rv, rp)
    if rv >= 0:
        assert rv <= cap and view_v[:rv] == view_p[:rv], case
        assert bytes(view_v[rv:]) == b"\xa5" * (cap - rv), ("wrote past the output", case)
    assert sentinels_ok(buf_v, cap) and sentinels_ok(buf_p, cap), ("write outside dst", case)
    try:  # the API: a ValueError or a size, never anything else
        r = lz4.decompress(blk, view_v)
        assert r == rv
    except ValueError:
        assert rv < 0
    fuzz += 1
checks += fuzz

# --- two threads compressing at once with their own tables (no GIL on this port) ---------------
try:
    import _thread
except ImportError:
    _thread = None
if _thread is not None:
    import time

    lock = _thread.allocate_lock()
    state = {"done": 0, "bad": 0}

    def worker(pages):
        t = lz4.new_table()
        dst = bytearray(4200)
        bad = 0
        for _ in range(20):
            for page, blk in pages:
                k = lz4.compress(page, dst, t)
                if dst[:k] != blk:
                    bad += 1
        with lock:
            state["bad"] += bad
            state["done"] += 1

    _thread.start_new_thread(worker, (records[0::2],))
    _thread.start_new_thread(worker, (records[1::2],))
    t0 = time.ticks_ms()
    while state["done"] < 2:
        assert time.ticks_diff(time.ticks_ms(), t0) < 20000, "threads hung"
        time.sleep_ms(5)
    assert state["bad"] == 0, "parallel compression with own tables went wrong"
    checks += 1

print("OK", checks, lz4.IMPL)

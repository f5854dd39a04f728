# Viper versions of pagedata's hot functions: same bytes, same results (tests compare them).
# Imported only where the native emitter exists. Viper does no bounds checks: callers pass
# offsets inside the buffer (pool.py owns those). Viper `int` is the machine word (32 bits on
# boards, 64 on the unix port), so 32-bit results are masked with M, built at run time
# because 0xFFFFFFFF is not a small int on 32-bit ports. Frames start 4-byte aligned
# (bytearray data is word aligned, page_size is a power of two), so ptr32 is safe on them.
import micropython
from micropython import const
from .pagedata import VOCAB, VOFF

# Kind codes as module consts: viper inlines these, not names imported from pagedata.
_ZERO = const(0)
_PATTERN = const(1)
_TEXT = const(2)
_SENSOR = const(3)
_RANDOM = const(4)
_MIXED = const(5)


@micropython.viper
def _fill(buf: ptr8, off: int, n: int, kind: int, seed: int, page: int, ver: int, voc: ptr8,
          voff: ptr8):
    m = uint(0xFFFF) << 16 | uint(0xFFFF)
    a = uint(1664525)
    c = uint(1013904223)
    # pagedata.page_kind, then pagedata.mix, in machine words: in Python their 32-bit states
    # are long ints on a 32-bit port, a few heap objects per page written (seen on ARMv6-M: a
    # heap with the GC off ran out). A mixed page first takes its kind from version 0xFFFF.
    v = 0xFFFF if kind == _MIXED else ver
    while True:
        x = (((uint(seed) & m) ^ uint(0x2545F491)) * a + c) & m
        x = ((x ^ uint(page)) * a + c) & m
        x = ((x ^ (uint(v) << 8)) * a + c) & m
        x = (x * a + c) & m
        if kind != _MIXED:
            break
        b = int(x >> 24) % 20
        if b < 2:
            kind = _ZERO
        elif b < 5:
            kind = _PATTERN
        elif b < 11:
            kind = _TEXT
        elif b < 17:
            kind = _SENSOR
        else:
            kind = _RANDOM
        v = ver
    end = off + n
    if kind == _ZERO:
        i = off
        while i < end:
            buf[i] = 0
            i += 1
    elif kind == _PATTERN:
        period = 4 << int((x >> 28) & 3)
        if period > n:
            period = n
        i = off
        while i < off + period:
            x = (x * a + c) & m
            buf[i] = int(x >> 24)
            i += 1
        while i < end:
            buf[i] = buf[i - period]
            i += 1
    elif kind == _TEXT:
        i = off
        while i < end:
            x = (x * a + c) & m
            w = int((x >> 24) & 31)
            j = voff[w]
            k = voff[w + 1]
            while j < k and i < end:
                buf[i] = voc[j]
                i += 1
                j += 1
            if i < end and int((x >> 16) & 7) == 0:
                buf[i] = 46
                i += 1
            if i < end:
                buf[i] = 32
                i += 1
    elif kind == _SENSOR:
        v = 2048 + int((x >> 20) & 1023)
        i = off
        while i + 1 < end:
            x = (x * a + c) & m
            r = int(x >> 24)
            if r < 64:
                v += 1
            elif r < 128:
                v -= 1
            s = v
            if (r & 7) == 0:
                s = v ^ 1
            buf[i] = s & 0xFF
            buf[i + 1] = (s >> 8) & 0xFF
            i += 2
        if i < end:
            buf[i] = 0
    else:
        i = off
        while i < end:
            x = (x * a + c) & m
            buf[i] = int(x >> 24)
            i += 1


def fill(buf, off, n, kind, seed, page, ver):
    _fill(buf, off, n, kind, seed, page, ver, VOCAB, VOFF)


@micropython.viper
def csum(buf: ptr8, off: int, n: int) -> int:
    m = uint(0xFFFF) << 16 | uint(0xFFFF)
    a = uint(0)
    b = uint(0)
    nw = n >> 2
    addr = uint(buf) + uint(off)
    if addr & uint(3) == uint(0):  # a frame, a slot or an aligned buffer: word loads
        w = ptr32(addr)
        i = 0
        while i < nw:
            a = (a + uint(w[i])) & m
            b = (b + a) & m
            i += 1
    else:  # an odd offset (the zram devices' callers' buffers): words from bytes
        i = off
        end = off + (nw << 2)
        while i < end:
            x = uint(buf[i]) | uint(buf[i + 1]) << 8 | uint(buf[i + 2]) << 16 | uint(buf[i + 3]) << 24
            a = (a + x) & m
            b = (b + a) & m
            i += 4
    r = n & 3
    if r:
        i = off + (nw << 2)
        x = uint(0)
        s = 0
        while r:
            x |= uint(buf[i]) << s
            i += 1
            s += 8
            r -= 1
        a = (a + x) & m
        b = (b + a) & m
    return int(((b << 13) ^ (b >> 17) ^ a ^ (a >> 30)) & uint(0x3FFFFFFF))


@micropython.viper
def same_word(buf: ptr8, off: int, n: int, out: ptr32, oi: int) -> bool:
    w = ptr32(uint(buf) + uint(off))  # frame start: word aligned
    v = w[0]
    i = 1
    nw = n >> 2
    while i < nw:
        if w[i] != v:
            return False
        i += 1
    out[oi] = v
    return True


@micropython.viper
def memset32(buf: ptr8, off: int, n: int, src: ptr32, si: int):
    w = ptr32(uint(buf) + uint(off))
    v = src[si]
    i = 0
    nw = n >> 2
    while i < nw:
        w[i] = v
        i += 1


@micropython.viper
def copy(dst: ptr8, doff: int, src: ptr8, soff: int, n: int):
    # Zpool slots and frames may sit at any alignment: words where both ends are aligned
    # (frames, 8-aligned slots: 4x fewer steps), bytes for the rest. No overlap (callers').
    d = uint(dst) + uint(doff)
    s = uint(src) + uint(soff)
    i = 0
    if (d | s) & uint(3) == uint(0):
        dw = ptr32(d)
        sw = ptr32(s)
        nw = n >> 2
        while i < nw:
            dw[i] = sw[i]
            i += 1
        i = nw << 2
    db = ptr8(d)
    sb = ptr8(s)
    while i < n:
        db[i] = sb[i]
        i += 1


@micropython.viper
def set_word(dst: ptr32, di: int, src: ptr32, si: int):
    dst[di] = src[si]


@micropython.viper
def rand(state: ptr32) -> int:
    m = uint(0xFFFF) << 16 | uint(0xFFFF)
    x = (uint(state[0]) * uint(1664525) + uint(1013904223)) & m
    state[0] = x
    return int(x >> 8)

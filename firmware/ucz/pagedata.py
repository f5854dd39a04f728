# Page contents derived from (seed, page, version), the page checksum, and the small byte
# helpers the reclaim path needs (same-filled test, word fill, copy).
#
# The host imports this module to regenerate pages it audits, so these plain functions are
# the definition; pagedata_viper.py is a faster copy that must produce the same bytes
# (tests compare the two under MicroPython). All arithmetic is mod 2**32 so 32-bit boards
# and 64-bit hosts agree.
from .compat import const, has_viper

ZERO = const(0)
PATTERN = const(1)
TEXT = const(2)
SENSOR = const(3)
RANDOM = const(4)
MIXED = const(5)
KINDS = ("zero", "pattern", "text", "sensor", "random", "mixed")

_M32 = 0xFFFFFFFF
_LCG_A = const(1664525)  # Numerical Recipes LCG; both constants are small ints on every port
_LCG_C = const(1013904223)

# Vocabulary of the text kind: 32 words, offsets into one bytes object (no list of objects).
VOCAB = (
    b"thesensorvaluewasreadatandthenitmovedtodataloggernodebatterylowo"
    b"kerrorwarningtempstatusuptimepacketsentackretryqueuebootwifimqttrssims"
)
# Word i is VOCAB[VOFF[i]:VOFF[i+1]].
VOFF = bytes(
    (0, 3, 9, 14, 17, 21, 23, 26, 30, 32, 37, 39, 43, 49, 53, 60, 63,
     65, 70, 77, 81, 87, 93, 99, 103, 106, 111, 116, 120, 124, 128, 132, 134)
)


def lcg(x):
    return (x * _LCG_A + _LCG_C) & _M32


def mix(seed, page, ver):
    """32-bit state for one page version."""
    x = lcg((seed & _M32) ^ 0x2545F491)
    x = lcg(x ^ page)
    x = lcg(x ^ (ver << 8))
    return lcg(x)


def page_kind(kind, seed, page):
    """The data kind of one page: `mixed` picks one per page, stable across versions."""
    if kind != MIXED:
        return kind
    b = (mix(seed, page, 0xFFFF) >> 24) % 20
    if b < 2:
        return ZERO
    if b < 5:
        return PATTERN
    if b < 11:
        return TEXT
    if b < 17:
        return SENSOR
    return RANDOM


def fill(buf, off, n, kind, seed, page, ver):
    """Write the content of (seed, page, ver) for `kind` into buf[off:off+n]."""
    kind = page_kind(kind, seed, page)
    x = mix(seed, page, ver)
    end = off + n
    if kind == ZERO:
        for i in range(off, end):
            buf[i] = 0
    elif kind == PATTERN:
        period = 4 << ((x >> 28) & 3)
        if period > n:
            period = n
        for i in range(off, off + period):
            x = lcg(x)
            buf[i] = x >> 24
        for i in range(off + period, end):
            buf[i] = buf[i - period]
    elif kind == TEXT:
        i = off
        while i < end:
            x = lcg(x)
            w = (x >> 24) & 31
            j = VOFF[w]
            k = VOFF[w + 1]
            while j < k and i < end:
                buf[i] = VOCAB[j]
                i += 1
                j += 1
            if i < end and ((x >> 16) & 7) == 0:
                buf[i] = 46  # "."
                i += 1
            if i < end:
                buf[i] = 32
                i += 1
    elif kind == SENSOR:
        v = 2048 + ((x >> 20) & 1023)
        i = off
        while i + 1 < end:
            x = lcg(x)
            r = x >> 24
            if r < 64:
                v += 1
            elif r < 128:
                v -= 1
            s = v ^ 1 if (r & 7) == 0 else v  # noise in the lowest bit
            buf[i] = s & 0xFF
            buf[i + 1] = (s >> 8) & 0xFF
            i += 2
        if i < end:
            buf[i] = 0
    else:
        for i in range(off, end):
            x = lcg(x)
            buf[i] = x >> 24


def csum(buf, off, n):
    """30-bit Fletcher-style checksum of buf[off:off+n] (a small int on every port), over
    little-endian 32-bit words (a short tail zero-padded): a word per step is 4x fewer
    steps than a byte per step, and every fault verifies a whole page with it."""
    a = 0
    b = 0
    end = off + (n & ~3)
    for i in range(off, end, 4):
        a = (a + (buf[i] | buf[i + 1] << 8 | buf[i + 2] << 16 | buf[i + 3] << 24)) & _M32
        b = (b + a) & _M32
    if n & 3:
        w = 0
        for j in range(n & 3):
            w |= buf[end + j] << (j << 3)
        a = (a + w) & _M32
        b = (b + a) & _M32
    # a's top two bits folded in too: a word sum can change only there.
    return ((b << 13) ^ (b >> 17) ^ a ^ (a >> 30)) & 0x3FFFFFFF


def same_word(buf, off, n, out, oi):
    """If buf[off:off+n] is one repeated 32-bit word, store it in out[oi] and return True."""
    for i in range(off + 4, off + n):
        if buf[i] != buf[i - 4]:
            return False
    out[oi] = buf[off] | (buf[off + 1] << 8) | (buf[off + 2] << 16) | (buf[off + 3] << 24)
    return True


def memset32(buf, off, n, src, si):
    """Fill buf[off:off+n] with the 32-bit word src[si] (little-endian, as same_word read it)."""
    w = src[si]
    for i in range(off, off + n, 4):
        buf[i] = w & 0xFF
        buf[i + 1] = (w >> 8) & 0xFF
        buf[i + 2] = (w >> 16) & 0xFF
        buf[i + 3] = w >> 24


def copy(dst, doff, src, soff, n):
    """dst[doff:doff+n] = src[soff:soff+n] for byte buffers that do not overlap (callers
    check the bounds)."""
    dst[doff:doff + n] = src[soff:soff + n]


def set_word(dst, di, src, si):
    """dst[di] = src[si] for 32-bit arrays (the viper twin makes no Python int on the way)."""
    dst[di] = src[si]


def rand(state):
    """Step the 32-bit generator in state[0]; return its top 24 bits (a small int everywhere)."""
    x = lcg(state[0])
    state[0] = x
    return x >> 8


if has_viper():
    try:
        from .pagedata_viper import fill, csum, same_word, memset32, copy, set_word, rand  # noqa: F811
    except (ImportError, SyntaxError, ValueError, NotImplementedError):
        pass  # no native emitter on this port: the plain code above serves

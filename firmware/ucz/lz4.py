# LZ4 block codec (no frame, no size prefix) for MicroPython boards and CPython.
#
# API: bound(n) -> worst-case output size; compress(src, dst, table=None) -> bytes written;
# decompress(src, dst) -> bytes produced; new_table() -> a private compress() table;
# IMPL_COMPRESS / IMPL_DECOMPRESS are "viper" or "python", the core in use for each; IMPL is
# "viper" when both are (VIPER_ERROR says why one failed to load, where it should have).
# Errors are ValueError("lz4: ...").
#
# compress() is the C library's greedy LZ4_compress_default (acceleration 1) step for step:
# 12-bit hash of 5 bytes (LZ4_hash5, as the 64-bit build uses), 64 KiB window, forward and
# backward match extension, skip step searchMatchNb >> 6. Its output is byte-identical to
# the C library's (64-bit build, as python-lz4 ships) for inputs up to 64 KiB; beyond that
# the u16 table aliases far positions (still correct, slightly different matches).
#
# Where the native emitter takes them the work is done by ucz.lz4_viper (compress) and
# ucz.lz4dec_viper (decompress), each loaded on its own (same algorithm, same output, no
# allocation); _compress_py/_decompress_py below are the portable path and
# the spec. Every core returns the bytes written (>= 0) or -((pos << 3) | code), code _E_*.
from array import array

from .compat import MICROPYTHON, const, has_viper, micropython

# Error codes returned (negated, with a position) by the cores.
_E_TRUNC = const(1)  # decompress: input ends inside a sequence; pos = src byte
_E_OFF0 = const(2)  # decompress: match offset 0; pos = src byte of the offset
_E_OFFBACK = const(3)  # decompress: offset before the start of the output; pos = src byte
_E_DFULL = const(4)  # decompress: output would not fit dst; pos = src byte
_E_CFULL = const(5)  # compress: dst too small; pos = bytes the output needs at least
_E_NOLAST = const(6)  # decompress: block ends with a match instead of literals; pos = src byte

_HSIZE = const(4096)  # hash table entries (u16 positions mod 64 Ki): 8 KiB
TABLE_BYTES = 2 * _HSIZE  # what new_table() holds (the host sizes runs with it)
# LZ4_hash5 wants bits 28..39 of (5 input bytes) * 889523592379 mod 2**40. The multiplier
# in 20-bit halves keeps every partial product below 2**62: small ints on 64-bit MicroPython
# (a 32-bit port without viper gets big ints here: correct, only slower).
_PLO = const(0xCDCBB)
_PHI = const(0xCF1BB)


def new_table():
    """A private hash table for compress(table=...): 4096 u16 entries, 8 KiB."""
    if MICROPYTHON:
        return array("H", bytes(2 * _HSIZE))  # MicroPython copies raw bytes: no big list
    return array("H", [0]) * _HSIZE


_TABLE = None  # the default table, made on first use: the firmware's pool brings its own


def bound(n):
    """Worst-case compressed size of n input bytes (LZ4_COMPRESSBOUND)."""
    return n + n // 255 + 16


def _compress_py(src, dst, t):
    n = len(src)
    dlen = len(dst)
    for i in range(_HSIZE):
        t[i] = 0  # as the C library: empty slots point at position 0 (verified before use)
    op = 0
    anchor = 0
    if n >= 13:  # shorter inputs are all literals (block end rules)
        mflimit1 = n - 11  # a match must start >= 12 bytes before the end
        matchlimit = n - 5  # the last 5 bytes are always literals
        ip = 1  # position 0 is "inserted" implicitly: its slot value 0 is the clear value
        a = src[1] | src[2] << 8 | (src[3] & 15) << 16
        b = src[3] >> 4 | src[4] << 4 | src[5] << 12
        fh = ((a * _PLO + (((a * _PHI + b * _PLO) & 0xFFFFF) << 20)) >> 28) & 0xFFF
        done = False
        while True:
            # Find a match: skip ahead faster the longer nothing matches.
            fip = ip
            step = 1
            nb = 64  # acceleration << 6
            while True:
                h = fh
                ip = fip
                fip += step
                step = nb >> 6
                nb += 1
                if fip > mflimit1:
                    done = True
                    break
                a = src[fip] | src[fip + 1] << 8 | (src[fip + 2] & 15) << 16
                b = src[fip + 2] >> 4 | src[fip + 3] << 4 | src[fip + 4] << 12
                fh = ((a * _PLO + (((a * _PHI + b * _PLO) & 0xFFFFF) << 20)) >> 28) & 0xFFF
                # Slots hold positions mod 65536: the distance is recovered mod 65536 and
                # 0 means empty, stale or exactly 64 KiB back, none of which is usable.
                d = (ip - t[h]) & 0xFFFF
                t[h] = ip & 0xFFFF
                if d:
                    m = ip - d
                    if (
                        src[m] == src[ip]
                        and src[m + 1] == src[ip + 1]
                        and src[m + 2] == src[ip + 2]
                        and src[m + 3] == src[ip + 3]
                    ):
                        break
            if done:
                break
            # Extend backwards over literals that also match.
            while ip > anchor and m > 0 and src[ip - 1] == src[m - 1]:
                ip -= 1
                m -= 1
            # Token, literal length, literals; room for the offset is claimed now too.
            lit = ip - anchor
            need = op + 3 + lit
            if lit >= 15:
                need += (lit - 15) // 255 + 1
            if need > dlen:
                return -((need << 3) | _E_CFULL)
            tk = op
            op += 1
            if lit >= 15:
                dst[tk] = 0xF0
                r = lit - 15
                while r >= 255:
                    dst[op] = 255
                    op += 1
                    r -= 255
                dst[op] = r
                op += 1
            else:
                dst[tk] = lit << 4
            for i in range(anchor, ip):
                dst[op] = src[i]
                op += 1
            while True:  # one match, then as long as the very next position matches too
                d = ip - m
                dst[op] = d & 0xFF
                dst[op + 1] = d >> 8
                op += 2
                ip += 4
                m += 4
                st = ip
                while ip < matchlimit and src[ip] == src[m]:
                    ip += 1
                    m += 1
                ml = ip - st
                if ml >= 15:
                    need = op + (ml - 15) // 255 + 1
                    if need > dlen:
                        return -((need << 3) | _E_CFULL)
                    dst[tk] |= 15
                    ml -= 15
                    while ml >= 255:
                        dst[op] = 255
                        op += 1
                        ml -= 255
                    dst[op] = ml
                    op += 1
                else:
                    dst[tk] |= ml
                anchor = ip
                if ip >= mflimit1:
                    done = True
                    break
                p = ip - 2  # also index the position just before the match end
                a = src[p] | src[p + 1] << 8 | (src[p + 2] & 15) << 16
                b = src[p + 2] >> 4 | src[p + 3] << 4 | src[p + 4] << 12
                h = ((a * _PLO + (((a * _PHI + b * _PLO) & 0xFFFFF) << 20)) >> 28) & 0xFFF
                t[h] = p & 0xFFFF
                a = src[ip] | src[ip + 1] << 8 | (src[ip + 2] & 15) << 16
                b = src[ip + 2] >> 4 | src[ip + 3] << 4 | src[ip + 4] << 12
                h = ((a * _PLO + (((a * _PHI + b * _PLO) & 0xFFFFF) << 20)) >> 28) & 0xFFF
                d = (ip - t[h]) & 0xFFFF
                t[h] = ip & 0xFFFF
                if not d:
                    break
                m = ip - d
                if (
                    src[m] != src[ip]
                    or src[m + 1] != src[ip + 1]
                    or src[m + 2] != src[ip + 2]
                    or src[m + 3] != src[ip + 3]
                ):
                    break
                # Immediate next match: a token with no literals.
                need = op + 3
                if need > dlen:
                    return -((need << 3) | _E_CFULL)
                tk = op
                dst[op] = 0
                op += 1
            if done:
                break
            ip += 1
            a = src[ip] | src[ip + 1] << 8 | (src[ip + 2] & 15) << 16
            b = src[ip + 2] >> 4 | src[ip + 3] << 4 | src[ip + 4] << 12
            fh = ((a * _PLO + (((a * _PHI + b * _PLO) & 0xFFFFF) << 20)) >> 28) & 0xFFF
    # Last literals: everything from anchor to the end.
    lit = n - anchor
    need = op + 1 + lit
    if lit >= 15:
        need += (lit - 15) // 255 + 1
    if need > dlen:
        return -((need << 3) | _E_CFULL)
    if lit >= 15:
        dst[op] = 0xF0
        op += 1
        r = lit - 15
        while r >= 255:
            dst[op] = 255
            op += 1
            r -= 255
        dst[op] = r
    else:
        dst[op] = lit << 4
    op += 1
    for i in range(anchor, n):
        dst[op] = src[i]
        op += 1
    return op


def _decompress_py(src, dst):
    n = len(src)
    dlen = len(dst)
    ip = 0
    op = 0
    while True:
        if ip >= n:
            # Every block ends with a literal-only sequence; an empty one has no token.
            return -((ip << 3) | (_E_NOLAST if ip else _E_TRUNC))
        tok = src[ip]
        ip += 1
        lit = tok >> 4
        if lit == 15:
            while True:
                if ip >= n:
                    return -((ip << 3) | _E_TRUNC)
                b = src[ip]
                ip += 1
                lit += b
                if b != 255:
                    break
                if lit > n:  # cannot fit any more: stop before the sum could overflow (viper)
                    return -((ip << 3) | _E_TRUNC)
        # Compare against what remains (never add to a position: no overflow possible).
        if lit > n - ip:
            return -((ip << 3) | _E_TRUNC)
        if lit > dlen - op:
            return -((ip << 3) | _E_DFULL)
        for i in range(ip, ip + lit):
            dst[op] = src[i]
            op += 1
        ip += lit
        if ip == n:
            return op
        if n - ip < 2:
            return -((ip << 3) | _E_TRUNC)
        off = src[ip] | src[ip + 1] << 8
        if off == 0:
            return -((ip << 3) | _E_OFF0)
        if off > op:
            return -((ip << 3) | _E_OFFBACK)
        ip += 2
        ml = tok & 15
        if ml == 15:
            while True:
                if ip >= n:
                    return -((ip << 3) | _E_TRUNC)
                b = src[ip]
                ip += 1
                ml += b
                if b != 255:
                    break
                if ml > dlen:
                    return -((ip << 3) | _E_DFULL)
        ml += 4
        if ml > dlen - op:
            return -((ip << 3) | _E_DFULL)
        m = op - off
        for i in range(m, m + ml):  # byte by byte: an overlapping copy repeats the pattern
            dst[op] = dst[i]
            op += 1


# Each viper core loads on its own: ARMv6-M's emitter may refuse one (a jump beyond its
# reach, "native method too big") and the other must still run natively.
_vc = None  # the viper compressor (ucz.lz4_viper), or None
_vd = None  # the viper decompressor (ucz.lz4dec_viper), or None
VIPER_ERROR = None  # why a viper core is not in use on a native-emitter port, if one is not
if has_viper():
    try:
        from . import lz4_viper as _vc
    except Exception as e:  # e.g. a build without the native emitter: keep the portable path
        VIPER_ERROR = "compress: %r" % (e,)
    try:
        from . import lz4dec_viper as _vd
    except Exception as e:
        VIPER_ERROR = "%sdecompress: %r" % (VIPER_ERROR + "; " if VIPER_ERROR else "", e)
IMPL_COMPRESS = "python" if _vc is None else "viper"
IMPL_DECOMPRESS = "python" if _vd is None else "viper"
# One word for both: "viper" only when both cores are native (what the no-allocation promise
# of the pool needs), "python" when neither is, else which one is native.
if IMPL_COMPRESS == IMPL_DECOMPRESS:
    IMPL = IMPL_COMPRESS
else:
    IMPL = "viper-compress" if _vc is not None else "viper-decompress"


def _error(r, src_len, dst_len):
    code = (-r) & 7
    pos = (-r) >> 3
    if code == _E_CFULL:
        return ValueError(
            "lz4: dst too small (need >= %d, have %d; bound(%d) = %d always fits)"
            % (pos, dst_len, src_len, bound(src_len))
        )
    if code == _E_TRUNC:
        return ValueError("lz4: truncated input at byte %d" % pos)
    if code == _E_NOLAST:
        return ValueError("lz4: truncated input at byte %d (block ends without last literals)" % pos)
    if code == _E_OFF0:
        return ValueError("lz4: offset 0 at byte %d" % pos)
    if code == _E_OFFBACK:
        return ValueError("lz4: offset reaches before the start of the output at byte %d" % pos)
    return ValueError("lz4: output does not fit dst (%d bytes) at input byte %d" % (dst_len, pos))


def _check_table(t):
    # The viper core stores through a raw u16 pointer: the table must be an array of 4096
    # items of at least 2 bytes each, or stores would overrun it.
    ok = isinstance(t, array) and len(t) == _HSIZE
    if ok and not MICROPYTHON:
        ok = t.typecode == "H"
    elif ok:  # MicroPython arrays hide their typecode: 'b', 'B' and 'h' cannot hold 0xFFFF
        v = t[0]
        try:
            t[0] = 0xFFFF
            ok = t[0] == 0xFFFF
        except (OverflowError, ValueError):
            ok = False
        t[0] = v
    if not ok:
        raise ValueError("lz4: table must come from new_table()")


def compress(src, dst, table=None):
    """Compress all of src into dst as one LZ4 block; return the number of bytes written.

    src: bytes-like of bytes (bytes, bytearray, memoryview slices). dst: bytearray or
    writable memoryview slice, not overlapping src; len(dst) >= bound(len(src)) always
    suffices. Raises ValueError if the output does not fit, without ever writing past
    len(dst) (what it wrote is then garbage). The output depends only on src: it is the
    C library's LZ4_compress_default block for inputs up to 64 KiB. Inputs of any size work.

    table: scratch hash table from new_table(). The default is one module-level table, so
    calls must not overlap: threads compressing at the same time each pass their own.
    """
    global _TABLE
    if table is None:
        if _TABLE is None:
            _TABLE = new_table()
        table = _TABLE
    else:
        _check_table(table)
    n = len(src)
    dlen = len(dst)
    if _vc is None:
        r = _compress_py(src, dst, table)
    else:
        if dlen:
            dst[0] = dst[0]  # viper writes through a raw pointer: let a read-only dst fail here
        r = _vc.compress(src, dst, table, n, dlen, 0)
    if r < 0:
        raise _error(r, n, dlen)
    return r


def decompress(src, dst):
    """Decode one whole LZ4 block from src into dst; return the number of bytes produced.

    src: bytes-like; dst: bytearray or writable memoryview slice, not overlapping src.
    Raises ValueError on malformed or truncated input or when the output does not fit dst.
    Never reads outside src, never writes outside dst[:returned size] on success (dst holds
    garbage after an error), always terminates. Re-entrant: no shared state.
    """
    n = len(src)
    dlen = len(dst)
    if _vd is None:
        r = _decompress_py(src, dst)
    else:
        if dlen:
            dst[0] = dst[0]  # viper writes through a raw pointer: let a read-only dst fail here
        r = _vd.decompress(src, dst, n, dlen)
    if r < 0:
        raise _error(r, n, dlen)
    return r


# Offset forms for the pool's hot path: a page inside the arena is coded in place, with no
# memoryview slice made per call (that would allocate on every page). The viper cores take
# raw addresses; an address plus an offset is a small int on every port (RAM and PSRAM sit
# below 2**30 on rp2 and esp32; ints are 62-bit on the unix port), so nothing is allocated.
if _vc is not None or _vd is not None:
    from uctypes import addressof as _addr


@micropython.native  # see NATIVE in pool.py
def compress_into(src, soff, n, dst, table):
    """compress(src[soff:soff+n], dst, table) without slicing; table is required."""
    if soff < 0 or n < 0 or soff + n > len(src):
        raise ValueError("lz4: source range %d+%d outside %d bytes" % (soff, n, len(src)))
    if _vc is None:
        return compress(memoryview(src)[soff:soff + n], dst, table)
    dlen = len(dst)
    if dlen:
        dst[0] = dst[0]  # viper writes through a raw pointer: let a read-only dst fail here
    r = _vc.compress(_addr(src) + soff, dst, table, n, dlen, 0)
    if r < 0:
        raise _error(r, n, dlen)
    return r


@micropython.native  # see NATIVE in pool.py
def decompress_into(src, soff, n, dst, doff, dlen):
    """decompress(src[soff:soff+n], dst[doff:doff+dlen]) without slicing."""
    if soff < 0 or n < 0 or soff + n > len(src):
        raise ValueError("lz4: source range %d+%d outside %d bytes" % (soff, n, len(src)))
    if doff < 0 or dlen < 0 or doff + dlen > len(dst):
        raise ValueError("lz4: output range %d+%d outside %d bytes" % (doff, dlen, len(dst)))
    if _vd is None:
        return decompress(memoryview(src)[soff:soff + n], memoryview(dst)[doff:doff + dlen])
    if dlen:
        dst[doff] = dst[doff]  # raw pointer writes: let a read-only dst fail here, as above
    r = _vd.decompress(_addr(src) + soff, _addr(dst) + doff, n, dlen)
    if r < 0:
        raise _error(r, n, dlen)
    return r

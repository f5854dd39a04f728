# Viper (native code) decompressor of ucz.lz4: the same algorithm and the same results as
# lz4._decompress_py, which is the readable spec; keep them in step. Its own module so that it
# loads wherever the native emitter takes it, whatever becomes of the compressor
# (lz4_viper.py). Call it through ucz.lz4, which validates the arguments: it trusts n, dlen.
# The viper rules of lz4_viper.py's header hold here too.
import micropython


@micropython.viper
def decompress(s: ptr8, d: ptr8, n: int, dlen: int) -> int:
    # s: n input bytes; d: dlen output bytes. Returns the output size or -((pos << 3) | code).
    # s and d walk as cursors (the next input byte, the next output byte); error positions
    # are s - start, as in _decompress_py.
    sb = int(s)
    se = sb + n
    db = int(d)
    de = db + dlen
    while True:
        if se - int(s) <= 0:  # every block ends with a literal-only sequence
            if n:
                return -((n << 3) | 6)
            return -(0 | 1)  # an empty input has no token at all
        tok = s[0]
        s = ptr8(int(s) + 1)
        lit = tok >> 4
        if lit == 15:
            while True:
                if se - int(s) <= 0:
                    return -((n << 3) | 1)
                b = s[0]
                s = ptr8(int(s) + 1)
                lit += b
                if b != 255:
                    break
                if lit > n:  # longer than the input: stop before the sum could overflow
                    return -(((int(s) - sb) << 3) | 1)
        # Compare with what remains, never add to an address: no overflow possible.
        if lit > se - int(s):
            return -(((int(s) - sb) << 3) | 1)
        if lit > de - int(d):
            return -(((int(s) - sb) << 3) | 4)
        while lit >= 8:
            d[0] = s[0]
            d[1] = s[1]
            d[2] = s[2]
            d[3] = s[3]
            d[4] = s[4]
            d[5] = s[5]
            d[6] = s[6]
            d[7] = s[7]
            s = ptr8(int(s) + 8)
            d = ptr8(int(d) + 8)
            lit -= 8
        if lit >= 4:
            d[0] = s[0]
            d[1] = s[1]
            d[2] = s[2]
            d[3] = s[3]
            s = ptr8(int(s) + 4)
            d = ptr8(int(d) + 4)
            lit -= 4
        if lit >= 1:
            d[0] = s[0]
            if lit >= 2:
                d[1] = s[1]
                if lit >= 3:
                    d[2] = s[2]
            s = ptr8(int(s) + lit)
            d = ptr8(int(d) + lit)
        if se - int(s) == 0:
            return int(d) - db
        if se - int(s) < 2:
            return -(((int(s) - sb) << 3) | 1)
        off = s[0] | (s[1] << 8)
        if off == 0:
            return -(((int(s) - sb) << 3) | 2)
        if off > int(d) - db:
            return -(((int(s) - sb) << 3) | 3)
        s = ptr8(int(s) + 2)
        ml = tok & 15
        if ml == 15:
            while True:
                if se - int(s) <= 0:
                    return -((n << 3) | 1)
                b = s[0]
                s = ptr8(int(s) + 1)
                ml += b
                if b != 255:
                    break
                if ml > dlen:
                    return -(((int(s) - sb) << 3) | 4)
        ml += 4
        if ml > de - int(d):
            return -(((int(s) - sb) << 3) | 4)
        if off == 1:  # a run of one byte (zero pages): fill, no store-to-load dependency
            v = d[-1]
            while ml >= 8:
                d[0] = v
                d[1] = v
                d[2] = v
                d[3] = v
                d[4] = v
                d[5] = v
                d[6] = v
                d[7] = v
                d = ptr8(int(d) + 8)
                ml -= 8
            while ml > 0:
                d[0] = v
                d = ptr8(int(d) + 1)
                ml -= 1
            continue
        # Copy forwards in byte order: an overlapping match (off < ml) re-reads the bytes
        # it has just written, which repeats its pattern as LZ4 wants.
        ip = int(s)  # park the input cursor while s reads the earlier output
        s = ptr8(int(d) - off)
        while ml >= 8:
            d[0] = s[0]
            d[1] = s[1]
            d[2] = s[2]
            d[3] = s[3]
            d[4] = s[4]
            d[5] = s[5]
            d[6] = s[6]
            d[7] = s[7]
            s = ptr8(int(s) + 8)
            d = ptr8(int(d) + 8)
            ml -= 8
        if ml >= 4:
            d[0] = s[0]
            d[1] = s[1]
            d[2] = s[2]
            d[3] = s[3]
            s = ptr8(int(s) + 4)
            d = ptr8(int(d) + 4)
            ml -= 4
        if ml >= 1:
            d[0] = s[0]
            if ml >= 2:
                d[1] = s[1]
                if ml >= 3:
                    d[2] = s[2]
            d = ptr8(int(d) + ml)
        s = ptr8(ip)

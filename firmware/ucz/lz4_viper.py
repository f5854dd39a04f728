# Viper (native code) compressor of ucz.lz4: the same algorithm and the same output as
# lz4._compress_py, which is the readable spec; keep them in step (the decompressor is
# lz4dec_viper.py, loaded on its own). Imported by ucz.lz4 only where the native emitter
# exists. Call it through ucz.lz4, which validates the arguments: it trusts n, dlen, the table.
#
# Viper rules this code lives by:
# - no bounds checks: every access is proven in range before it happens (comments say how);
# - only byte loads and stores on data: unaligned 32-bit access faults on Cortex-M0+/Xtensa;
# - int is the machine word (32-bit on boards, 64-bit on unix): the hash keeps only bits
#   that 32-bit wrap-around cannot disturb, so both give the same output;
# - constants, and constant expressions (the compiler folds them), must stay small ints on
#   32-bit ports (< 2**30): bigger values are built at run time from a variable; no shift by
#   32 or more either, even in code a 32-bit port never runs;
# - a call between viper functions is a full Python call: each core is one function;
# - the first two parameters (s, d) live in machine registers, other locals on the C stack,
#   and a constant index on a register pointer is a single load or store. So the byte
#   loops move s and d as cursors (ptr8(address + k)) and unroll with constant indices.
import micropython


@micropython.viper
def compress(s: ptr8, d: ptr8, t: ptr16, n: int, dlen: int, w32: int) -> int:
    # s: n input bytes; d: dlen output bytes; t: 4096 u16 hash slots (a heap-aligned array).
    # w32=1 forces the 32-bit hash arithmetic on a 64-bit port (tests). Returns the output
    # size, or -((need << 3) | 5) when dst is too small.
    sb = int(s)
    db = int(d)
    # Clear the table as the C library does: an empty slot means "position 0" (verified
    # before use). The array is heap-aligned, so word stores are safe on every core.
    a = int(t)
    e = a + 8192
    while a < e:
        tw = ptr32(a)
        tw[0] = 0
        tw[1] = 0
        tw[2] = 0
        tw[3] = 0
        tw[4] = 0
        tw[5] = 0
        tw[6] = 0
        tw[7] = 0
        tw[8] = 0
        tw[9] = 0
        tw[10] = 0
        tw[11] = 0
        tw[12] = 0
        tw[13] = 0
        tw[14] = 0
        tw[15] = 0
        a += 64
    # LZ4_hash5 of the 5 bytes at d = bits 28..39 of their value * 889523592379. A 64-bit
    # port does one product (its low 64 bits wrap harmlessly). A 32-bit port splits the first
    # 4 bytes into 16-bit halves vl, vh and the multiplier into 0xCF:0x1BBC:0xDCBB; the sum
    # holds bits 16..47 of the product mod 2**32 and only its bits 12..23 are kept, which
    # wrap-around never reaches. Every hash below is this same text (a test checks it).
    # The compiler folds constant expressions into (big) int objects, which viper cannot mix
    # with machine ints: values past 2**30 are built from a variable, at run time.
    k = 1 << 16
    w64 = 0
    if (k << 16) != 0:  # 2**32 wraps to 0 on a 32-bit port
        w64 = 1
    if w32:
        w64 = 0
    pk = 0xCF1BB
    pk = (pk << 20) | 0xCDCBB  # 889523592379: only used (and only right) when w64
    op = 0
    anchor = 0
    if n >= 13:  # shorter inputs are all literals (block end rules)
        mflimit1 = n - 11  # hashed positions are <= this: their 5 bytes end before n - 5
        matchlimit = n - 5  # the last 5 bytes are always literals
        ip = 1
        d = ptr8(sb + 1)  # d is a free cursor whenever no output is being written
        if w64:
            fh = (((d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)
                    | ((d[4] << 16) << 16)) * pk) >> 28) & 0xFFF
        else:
            vl = d[0] | (d[1] << 8)
            vh = d[2] | (d[3] << 8)
            fh = ((((vl * 0xDCBB) >> 16) & 0xFFFF) + vh * 0xDCBB + vl * 0x1BBC
                  + ((vh * 0x1BBC + vl * 0xCF + d[4] * 0xBB) << 16)) >> 12 & 0xFFF
        while True:
            # Find a match, stepping faster the longer nothing matches.
            fip = ip
            step = 1
            nb = 64  # acceleration 1 << 6
            m = 0
            found = 0
            while True:
                h = fh
                ip = fip
                fip += step
                step = nb >> 6
                nb += 1
                if fip > mflimit1:
                    break
                d = ptr8(sb + fip)
                if w64:
                    fh = (((d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)
                            | ((d[4] << 16) << 16)) * pk) >> 28) & 0xFFF
                else:
                    vl = d[0] | (d[1] << 8)
                    vh = d[2] | (d[3] << 8)
                    fh = ((((vl * 0xDCBB) >> 16) & 0xFFFF) + vh * 0xDCBB + vl * 0x1BBC
                          + ((vh * 0x1BBC + vl * 0xCF + d[4] * 0xBB) << 16)) >> 12 & 0xFFF
                # Slots hold positions mod 64 Ki (a u16 store keeps the low half); distance
                # 0 = the slot is empty, stale or exactly 64 KiB back: unusable.
                dd = (ip - t[h]) & 0xFFFF
                t[h] = ip
                if dd != 0:
                    m = ip - dd  # >= 0: dd <= ip while ip < 64 Ki, and dd < 64 Ki after
                    if s[m] == s[ip] and s[m + 1] == s[ip + 1] and s[m + 2] == s[ip + 2] and s[m + 3] == s[ip + 3]:
                        found = 1
                        break
            d = ptr8(db)
            if found == 0:
                break
            while ip > anchor and m > 0 and s[ip - 1] == s[m - 1]:  # extend backwards
                ip -= 1
                m -= 1
            # Token + literal length + literals + the offset must fit before any write.
            lit = ip - anchor
            need = op + 3 + lit
            if lit >= 15:
                need += (lit - 15) // 255 + 1
            if need > dlen:
                return -((need << 3) | 5)
            tk = op
            op += 1
            if lit >= 15:
                d[tk] = 0xF0
                r = lit - 15
                while r >= 255:
                    d[op] = 255
                    op += 1
                    r -= 255
                d[op] = r
                op += 1
            else:
                d[tk] = lit << 4
            s = ptr8(sb + anchor)  # copy src[anchor:ip] to dst[op:op + lit]
            d = ptr8(db + op)
            op += lit
            k = lit
            while k >= 8:
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
                k -= 8
            if k >= 4:
                d[0] = s[0]
                d[1] = s[1]
                d[2] = s[2]
                d[3] = s[3]
                s = ptr8(int(s) + 4)
                d = ptr8(int(d) + 4)
                k -= 4
            if k >= 1:
                d[0] = s[0]
                if k >= 2:
                    d[1] = s[1]
                    if k >= 3:
                        d[2] = s[2]
            s = ptr8(sb)
            d = ptr8(db)
            done = 0
            while True:  # the match, then more while the very next position matches too
                dd = ip - m
                d[op] = dd & 0xFF
                d[op + 1] = dd >> 8
                op += 2
                # Extend forwards up to matchlimit: s walks the input, d the earlier copy.
                s = ptr8(sb + ip + 4)
                d = ptr8(sb + ip + 4 - dd)
                k = matchlimit - ip - 4  # > 0: ip + 4 <= mflimit1 + 4 < matchlimit
                while k >= 4 and s[0] == d[0] and s[1] == d[1] and s[2] == d[2] and s[3] == d[3]:
                    s = ptr8(int(s) + 4)
                    d = ptr8(int(d) + 4)
                    k -= 4
                while k > 0 and s[0] == d[0]:
                    s = ptr8(int(s) + 1)
                    d = ptr8(int(d) + 1)
                    k -= 1
                ml = int(s) - sb - ip - 4
                ip = int(s) - sb
                s = ptr8(sb)
                d = ptr8(db)
                if ml >= 15:
                    need = op + (ml - 15) // 255 + 1
                    if need > dlen:
                        return -((need << 3) | 5)
                    d[tk] = d[tk] | 15
                    ml -= 15
                    while ml >= 255:
                        d[op] = 255
                        op += 1
                        ml -= 255
                    d[op] = ml
                    op += 1
                else:
                    d[tk] = d[tk] | ml
                anchor = ip
                if ip >= mflimit1:
                    done = 1
                    break
                d = ptr8(sb + ip - 2)  # index the position just before the match end too
                if w64:
                    h = (((d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)
                           | ((d[4] << 16) << 16)) * pk) >> 28) & 0xFFF
                else:
                    vl = d[0] | (d[1] << 8)
                    vh = d[2] | (d[3] << 8)
                    h = ((((vl * 0xDCBB) >> 16) & 0xFFFF) + vh * 0xDCBB + vl * 0x1BBC
                         + ((vh * 0x1BBC + vl * 0xCF + d[4] * 0xBB) << 16)) >> 12 & 0xFFF
                t[h] = ip - 2
                d = ptr8(sb + ip)
                if w64:
                    h = (((d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)
                           | ((d[4] << 16) << 16)) * pk) >> 28) & 0xFFF
                else:
                    vl = d[0] | (d[1] << 8)
                    vh = d[2] | (d[3] << 8)
                    h = ((((vl * 0xDCBB) >> 16) & 0xFFFF) + vh * 0xDCBB + vl * 0x1BBC
                         + ((vh * 0x1BBC + vl * 0xCF + d[4] * 0xBB) << 16)) >> 12 & 0xFFF
                d = ptr8(db)
                dd = (ip - t[h]) & 0xFFFF
                t[h] = ip
                if dd == 0:
                    break
                m = ip - dd
                if s[m] != s[ip] or s[m + 1] != s[ip + 1] or s[m + 2] != s[ip + 2] or s[m + 3] != s[ip + 3]:
                    break
                if op + 3 > dlen:  # a token without literals, then the offset
                    return -(((op + 3) << 3) | 5)
                tk = op
                d[op] = 0
                op += 1
            if done:
                break
            ip += 1
            d = ptr8(sb + ip)
            if w64:
                fh = (((d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)
                        | ((d[4] << 16) << 16)) * pk) >> 28) & 0xFFF
            else:
                vl = d[0] | (d[1] << 8)
                vh = d[2] | (d[3] << 8)
                fh = ((((vl * 0xDCBB) >> 16) & 0xFFFF) + vh * 0xDCBB + vl * 0x1BBC
                      + ((vh * 0x1BBC + vl * 0xCF + d[4] * 0xBB) << 16)) >> 12 & 0xFFF
    # Last literals: everything from anchor to the end.
    d = ptr8(db)
    lit = n - anchor
    need = op + 1 + lit
    if lit >= 15:
        need += (lit - 15) // 255 + 1
    if need > dlen:
        return -((need << 3) | 5)
    if lit >= 15:
        d[op] = 0xF0
        op += 1
        r = lit - 15
        while r >= 255:
            d[op] = 255
            op += 1
            r -= 255
        d[op] = r
    else:
        d[op] = lit << 4
    op += 1
    s = ptr8(sb + anchor)
    d = ptr8(db + op)
    op += lit
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
    while lit > 0:
        d[0] = s[0]
        s = ptr8(int(s) + 1)
        d = ptr8(int(d) + 1)
        lit -= 1
    return op

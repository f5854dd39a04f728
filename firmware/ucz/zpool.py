# The compressed store: a zsmalloc-like size-class allocator over one preallocated bytearray.
#
# The store is cut into zspages of `group` consecutive pages (zsmalloc links up to four
# physical pages; ours are consecutive slices of one bytearray, so an object that crosses a
# page boundary inside its zspage is still one contiguous slice). A size class takes a whole
# zspage and cuts it into k equal slots of (zspage // k) bytes rounded down to 8: no tail
# waste, and with four pages per zspage the classes are fine enough (819, 682, 585, 512 ...
# bytes for 1 KiB pages) that rounding costs little. A page stored raw (incompressible) is
# exactly the class with k == group: no waste at all.
# Free slots are chained through their own first byte; zspages with free slots hang on a
# per-class doubly linked list; empty zspages go back to a free stack. No per-object Python
# objects: a handle is (zspage << 6) | slot, a small int.
#
# Not thread safe by itself: callers hold Pool.lock around alloc/free (short, no copying).
from .compat import const, zeros, micropython

NONE = const(0xFFFF)
_END = const(0xFF)
_SLOT_BITS = const(6)
_SLOT_MASK = const(63)


class ZPool:
    def __init__(self, nbytes, page_size, group=0, buf=None, base=0, max_classes=0):
        if page_size & (page_size - 1) or page_size < 256:
            raise ValueError("zpool: page_size must be a power of two >= 256")
        if group == 0:
            group = zspage_pages(nbytes, page_size)
        zspage = page_size * group  # bytes per zspage
        nz = nbytes // zspage
        if nz < 1:
            raise ValueError("zpool: %d bytes hold no %d-byte page" % (nbytes, page_size))
        if nz >= NONE:
            raise ValueError("zpool: too many zspages (%d)" % nz)
        self.zspage = zspage
        self.group = group
        self.nz = nz
        # The store may be a slice of a caller's arena (buf[base:base+nz*zspage]): one big
        # allocation made early beats two made after the heap has fragmented.
        if buf is None:
            buf = bytearray(nz * zspage)
            base = 0
        elif base + nz * zspage > len(buf):
            raise ValueError("zpool: arena too small")
        self.buf = buf
        self.base = base
        sizes = _class_sizes(zspage)
        if max_classes:
            sizes = thin_classes(sizes, page_size, max_classes)
        ncls = len(sizes)
        self.ncls = ncls
        self.slot = zeros("H", ncls)
        self.nslots = bytearray(ncls)
        for i in range(ncls):
            self.slot[i] = sizes[i]
            self.nslots[i] = zspage // sizes[i]
        self.head = zeros("H", ncls)  # first zspage with a free slot, per class
        for i in range(ncls):
            self.head[i] = NONE
        # Class of an object of n bytes: cls_of[(n + 7) >> 3].
        self.cls_of = bytearray((page_size >> 3) + 1)  # objects are at most a page
        c = 0
        for i in range(len(self.cls_of)):
            while sizes[c] < (i << 3):
                c += 1
            self.cls_of[i] = c
        # Per-zspage metadata: 7 bytes each.
        self.zcls = bytearray(nz)
        self.zinuse = bytearray(nz)
        self.zfree = bytearray(nz)
        self.znext = zeros("H", nz)
        self.zprev = zeros("H", nz)
        self.fstack = zeros("H", nz)
        for i in range(nz):
            self.fstack[i] = nz - 1 - i
        self.nfreez = nz
        # Accounting (zram mm_stat names at export).
        self.used_bytes = 0  # sum of object sizes: compr_data_size
        self.nobj = 0

    def meta_bytes(self):
        return 7 * self.nz + 3 * self.ncls + len(self.cls_of)

    def _unlink(self, zp, c):
        n = self.znext[zp]
        p = self.zprev[zp]
        if p == NONE:
            self.head[c] = n
        else:
            self.znext[p] = n
        if n != NONE:
            self.zprev[n] = p

    def _push(self, zp, c):
        h = self.head[c]
        self.znext[zp] = h
        self.zprev[zp] = NONE
        if h != NONE:
            self.zprev[h] = zp
        self.head[c] = zp

    @micropython.native  # see NATIVE in pool.py
    def alloc(self, n):
        """A handle for an n-byte object (1 <= n <= zspage), or -1 when no slot can be had."""
        c = self.cls_of[(n + 7) >> 3]
        zp = self.head[c]
        buf = self.buf
        if zp == NONE:
            if self.nfreez == 0:
                return -1
            self.nfreez -= 1
            zp = self.fstack[self.nfreez]
            # Chain the new zspage's slots: slot i's first byte names slot i+1.
            s = self.slot[c]
            ns = self.nslots[c]
            base = self.base + zp * self.zspage
            for i in range(ns - 1):
                buf[base + i * s] = i + 1
            buf[base + (ns - 1) * s] = _END
            self.zcls[zp] = c
            self.zinuse[zp] = 0
            self.zfree[zp] = 0
            self._push(zp, c)
        i = self.zfree[zp]
        nxt = buf[self.base + zp * self.zspage + i * self.slot[c]]
        self.zfree[zp] = nxt
        self.zinuse[zp] += 1
        if nxt == _END:
            self._unlink(zp, c)  # full: off the partial list
        self.used_bytes += n
        self.nobj += 1
        return (zp << _SLOT_BITS) | i

    def offset(self, h):
        zp = h >> _SLOT_BITS
        return self.base + zp * self.zspage + (h & _SLOT_MASK) * self.slot[self.zcls[zp]]

    @micropython.native  # see NATIVE in pool.py
    def free(self, h, n):
        zp = h >> _SLOT_BITS
        i = h & _SLOT_MASK
        c = self.zcls[zp]
        was_full = self.zfree[zp] == _END
        self.buf[self.base + zp * self.zspage + i * self.slot[c]] = self.zfree[zp]
        self.zfree[zp] = i
        self.zinuse[zp] -= 1
        self.used_bytes -= n
        self.nobj -= 1
        if self.zinuse[zp] == 0:
            if not was_full:
                self._unlink(zp, c)
            self.fstack[self.nfreez] = zp
            self.nfreez += 1
        elif was_full:
            self._push(zp, c)

    def mem_used(self):
        return (self.nz - self.nfreez) * self.zspage

    def stats(self):
        used = self.mem_used()
        return {
            "zspages": self.nz,
            "zspage_bytes": self.zspage,
            "zspages_used": self.nz - self.nfreez,
            "objects": self.nobj,
            "compr_data_size": self.used_bytes,
            "mem_used": used,
            "classes": self.ncls,
            # Share of the used zspages that holds no object data (slot rounding + free slots).
            "fragmentation": 0.0 if used == 0 else 1.0 - self.used_bytes / used,
        }

    def check(self):
        """Walk every structure and check the accounting (tests; allocates freely)."""
        inuse = 0
        on_free = set(self.fstack[i] for i in range(self.nfreez))
        for zp in range(self.nz):
            if zp in on_free:
                continue
            c = self.zcls[zp]
            ns = self.nslots[c]
            nfree = 0
            i = self.zfree[zp]
            seen = set()
            while i != _END:
                assert i < ns and i not in seen, "zpool: bad free chain in zspage %d" % zp
                seen.add(i)
                nfree += 1
                i = self.buf[self.base + zp * self.zspage + i * self.slot[c]]
            assert nfree + self.zinuse[zp] == ns, "zpool: zspage %d slot count" % zp
            assert self.zinuse[zp] > 0, "zpool: empty zspage %d not freed" % zp
            inuse += self.zinuse[zp]
        assert inuse == self.nobj, "zpool: %d objects counted, %d in zspages" % (self.nobj, inuse)
        for c in range(self.ncls):
            zp = self.head[c]
            prev = NONE
            while zp != NONE:
                assert self.zcls[zp] == c and self.zfree[zp] != _END
                assert self.zprev[zp] == prev
                prev = zp
                zp = self.znext[zp]
        return True


def thin_classes(sizes, page_size, n):
    """At most n of the ascending class sizes up to a page (the exact page-size class kept):
    every class in use holds a partly filled zspage, so a store of few zspages loses more to
    many fine classes than to the rounding of coarse ones (zram on a small heap: 45-64% of
    the store unused with the full set, measured)."""
    small = [s for s in sizes if s < page_size]
    big = [s for s in sizes if s >= page_size]
    if len(small) < n:
        return sizes
    # Geometric spacing from the page size down: the same relative rounding everywhere.
    r = (page_size / small[0]) ** (1.0 / n)
    keep = []
    limit = page_size / r
    for s in reversed(small):
        if s <= limit:
            keep.append(s)
            limit = s / r
    keep.reverse()
    return keep + big


def classes_for(nbytes, page_size):
    """A class count for a store of nbytes: about one class per four zspages, so partly
    filled zspages cost at most about a quarter of the store; at least 4."""
    return max(4, nbytes // (page_size * zspage_pages(nbytes, page_size)) // 4)


def _class_sizes(zspage):
    """Size classes, ascending: slot = zspage//k (8-aligned), k = 1.. while slots >=
    max(32, zspage/64)."""
    min_slot = max(32, zspage >> _SLOT_BITS)
    sizes = []
    k = 1
    while True:
        s = (zspage // k) & ~7
        if s < min_slot:
            break
        if not sizes or s != sizes[-1]:
            sizes.append(s)
        k += 1
    sizes.reverse()
    return sizes


def meta_bytes_for(nbytes, page_size):
    """ZPool(nbytes, page_size).meta_bytes() without building one (the host sizes runs)."""
    zspage = page_size * zspage_pages(nbytes, page_size)
    return 7 * (nbytes // zspage) + 3 * len(_class_sizes(zspage)) + (page_size >> 3) + 1


def zspage_pages(nbytes, page_size):
    """Pages per zspage: 4 (fine classes) when the store still has >= 16 zspages, else fewer,
    so that a small store is not eaten by one partly filled zspage per class."""
    g = 4
    while g > 1 and nbytes // (page_size * g) < 16:
        g >>= 1
    return g

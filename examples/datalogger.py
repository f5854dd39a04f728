# A sensor data logger that keeps its samples in compressed RAM (ucz.zram), with the
# compressor on core 1 where there is one.
#
# It fills RAM with timestamped CSV lines (temperature, humidity, pressure, battery: slowly
# varying values with noise) three ways with the same RAM and reports how many hours of
# one-a-second samples each holds:
#   a plain bytearray ring, littlefs on a RAMBlockDev (MicroPython's documented RAM disk),
#   a ZramLog, and (--file) a file on littlefs on a ZramDisk mounted at /zram;
# plus the append latency (p99) of each.
#
# On a board (ucz deployed: `ucompressd deploy --port P`):  mpremote run examples/datalogger.py
# On the simulated board, or the unix port from a checkout:
#   MICROPYPATH=firmware micropython -X heapsize=400K examples/datalogger.py [ram_kb] [--file]
# `ucompressd zram` runs it for you and prints the device's stats as a table.
import gc
import sys

from ucz.compat import ticks_us, ticks_diff
from ucz import counters as C
from ucz.zram import ZramLog, ZramDisk, hist_p, ENOSPC
from ucz.bench import RAMBlockDev  # MicroPython's documented RAM disk: the baseline

RAM = 96 * 1024     # bytes each store may use
PAGE = 4096         # ZramLog page
FILE_BLOCK = 1024   # ZramDisk block (--file): finer blocks, less rewritten per flush
PERIOD_S = 1        # one sample a second


class Sensor:
    """Deterministic readings: random walks with noise (one 32-bit LCG, no floats kept)."""

    def __init__(self, seed=1):
        self.x = seed
        self.temp = 2150    # centi-degrees
        self.hum = 480      # per-mille
        self.press = 10132  # deci-hPa
        self.batt = 4100    # mV

    def _r(self, n):
        self.x = (self.x * 1664525 + 1013904223) & 0xFFFFFFFF
        return (self.x >> 8) % n

    def line(self, i):
        """Sample i (i seconds after midnight, day rolling over) as one CSV line."""
        self.temp += self._r(3) - 1
        self.hum += self._r(3) - 1
        if self._r(8) == 0:
            self.press += self._r(3) - 1
        if self._r(64) == 0:
            self.batt -= 1
        t = i * PERIOD_S
        noise = self._r(5) - 2  # the last digit jitters
        return b"2026-12-%02d %02d:%02d:%02d,%d.%02d,%d.%d,%d.%d,%d\n" % (
            1 + t // 86400 % 28, t // 3600 % 24, t // 60 % 60, t % 60,
            (self.temp + noise) // 100, (self.temp + noise) % 100, self.hum // 10,
            self.hum % 10, self.press // 10, self.press % 10, self.batt)


def _p99(hist):
    return hist_p(hist, 0.99)


def ring(ram):
    """A bytearray ring of `ram` bytes: how many of the newest samples it holds once full
    (the samples are what they are: the count is exact), and its append p99."""
    buf = bytearray(ram)
    hist = C.new_hist()
    s = Sensor()
    pos = 0
    held = 0
    used = 0
    lens = []
    i = 0
    while used < 2 * ram:  # twice around: the ring has wrapped
        rec = s.line(i)
        n = len(rec)
        t0 = ticks_us()
        end = pos + n
        if end <= ram:
            buf[pos:end] = rec
        else:
            k = ram - pos
            buf[pos:] = rec[:k]
            buf[:n - k] = rec[k:]
        pos = end % ram
        C.hist_add(hist, ticks_diff(ticks_us(), t0))
        lens.append(n)
        used += n
        i += 1
    total = 0
    for n in reversed(lens):  # the newest lines that fit
        if total + n > ram:
            break
        total += n
        held += 1
    return {"store": "bytearray ring", "samples": held, "append_p99_us": _p99(hist)}


def _fill_file(path, progress=None, ram=0, dev=None):
    s = Sensor()
    hist = C.new_hist()
    i = 0
    with open(path, "wb") as f:
        while True:
            rec = s.line(i)
            t0 = ticks_us()
            try:
                f.write(rec)
                if i % 64 == 63:
                    f.flush()  # what a logger does so a crash loses little; full shows here
            except OSError as e:
                if e.args[0] not in (ENOSPC, 5):  # FAT reports any device error as EIO
                    raise
                break
            C.hist_add(hist, ticks_diff(ticks_us(), t0))
            i += 1
            if progress is not None and dev is not None and i % 512 == 0:
                progress(ram - dev.free_bytes(), ram)
    # What is in the file once closed: the samples held.
    held = 0
    try:
        with open(path, "rb") as f:
            while f.readline():
                held += 1
    except OSError:
        pass
    return held, _p99(hist)


def ramblockdev(ram):
    import vfs

    dev = RAMBlockDev(512, ram // 512)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), "/ramdisk")
    try:
        held, p99 = _fill_file("/ramdisk/log.csv")
    finally:
        vfs.umount("/ramdisk")
    return {"store": "littlefs on RAMBlockDev", "samples": held, "append_p99_us": p99}


def zramlog(ram, mode=None, compressor="thread", progress=None):
    log = ZramLog(ram, page_size=PAGE, mode=mode, compressor=compressor)
    try:
        s = Sensor()
        i = 0
        while True:
            rec = s.line(i)
            try:
                log.append(rec)
            except OSError as e:
                if e.args[0] != ENOSPC:
                    raise
                break
            i += 1
            if progress is not None and i % 512 == 0:
                progress(ram - log.free_bytes(), ram)
        # Read back (every page verified) to prove what it holds.
        s = Sensor()
        k = 0
        for rec in log:
            assert rec == s.line(k), "sample %d read back wrong" % k
            k += 1
        st = log.stats()
        return {"store": "ZramLog", "samples": k,
                "append_p99_us": _p99(log.whist), "stats": st}
    finally:
        log.close()


def zramfile(ram, mode=None, compressor="thread", progress=None):
    import vfs

    # One file that only grows leaves littlefs little stale data (a stale share of 0.08
    # measured), so the device may offer twice its RAM, above the default size (which
    # allows for the stale blocks of files rewritten and deleted); full is ENOSPC, not loss.
    disk = ZramDisk(2 * ram, ram, block_size=FILE_BLOCK, mode=mode, compressor=compressor)
    try:
        vfs.VfsLfs2.mkfs(disk)
        fs = vfs.VfsLfs2(disk)
        vfs.mount(fs, "/zram")
        try:
            held, p99 = _fill_file("/zram/log.csv", progress, ram, disk)
            st = disk.stats(fs)
        finally:
            vfs.umount("/zram")
        return {"store": "littlefs on ZramDisk", "samples": held, "append_p99_us": p99,
                "stats": st}
    finally:
        disk.close()


def run(ram=RAM, use_file=False, mode=None, compressor="thread", progress=None):
    """Every store with the same RAM; returns {"ram", "period_s", "stores": [...]}."""
    out = []
    for job in (lambda: ring(ram), lambda: ramblockdev(ram),
                lambda: zramlog(ram, mode, compressor, progress)):
        gc.collect()
        out.append(job())
    if use_file:
        gc.collect()
        out.append(zramfile(ram, mode, compressor, progress))
    base = out[0]["samples"]
    for r in out:
        r["hours"] = r["samples"] * PERIOD_S / 3600
        r["vs_ring"] = r["samples"] / base if base else None
    return {"ram": ram, "period_s": PERIOD_S, "page": PAGE, "stores": out}


def main():
    args = sys.argv[1:]
    ram = RAM
    use_file = "--file" in args
    for a in args:
        if a.isdigit():
            ram = int(a) * 1024
    r = run(ram, use_file)
    print("%d KB of RAM, a sample every %d s:" % (ram // 1024, PERIOD_S))
    for s in r["stores"]:
        print("  %-26s %7d samples  %6.1f h  %4.2fx  append p99 <= %d us"
              % (s["store"], s["samples"], s["hours"], s["vs_ring"], s["append_p99_us"]))
    z = r["stores"][2]["stats"]
    print("ZramLog: %s/%s, %d pages stored, %d B compressed of %d B, corrupt %d"
          % (z["mode"], z["compressor"], z["pages_stored"], z["compr_data_size"],
             z["orig_data_size"], z["corrupt"]))


if "_ZRAM_HOST" not in globals():  # the host command sets this and calls run() itself
    main()

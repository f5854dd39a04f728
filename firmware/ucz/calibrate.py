# A fixed board-side loop timed on each thread, before and after a compare: on an idle board
# (or an idle host, for the simulated one) it takes the same time alone on the main thread,
# alone on the second thread and on both at once; a busy host shows as a slower or a drifting
# loop. The host judges (ucompressd.experiment); this only measures. Allocates a little.
from .compat import ticks_us, ticks_diff, sleep_ms, start_new_thread, zeros

_LOOPS = 100000  # about 7 ms on the unix port, well under a second on a 150 MHz Cortex-M


def spin(n):
    """The fixed loop (benchmarks/host_speed.py times it on the host's CPUs too)."""
    x = 1
    for _ in range(n):
        x = (x * 1664525 + 1013904223) & 0xFFFFFF  # small ints on every port: no allocation
    return x


def _timed(n, out, i):
    t0 = ticks_us()
    spin(n)
    out[i] = ticks_diff(ticks_us(), t0)
    out[i + 1] = 1  # done


def _wait(out, i, timeout_ms=10000):
    t = 0
    while not out[i + 1]:
        sleep_ms(1)
        t += 1
        if t > timeout_ms:
            raise RuntimeError("calibration thread did not finish")


def calibrate(loops=_LOOPS, threads=True):
    """{"loops", "main_us", "thread_us", "both_main_us", "both_thread_us"}: the loop alone on
    the main thread, alone on a second thread, then on both at once (thread figures None
    without threads)."""
    out = zeros("i", 8)
    _timed(loops, out, 0)
    r = {"loops": loops, "main_us": out[0], "thread_us": None, "both_main_us": None,
         "both_thread_us": None}
    if not threads:
        return r
    start_new_thread(_timed, (loops, out, 2))
    _wait(out, 2)
    start_new_thread(_timed, (loops, out, 4))
    _timed(loops, out, 6)
    _wait(out, 4)
    r["thread_us"] = out[2]
    r["both_main_us"] = out[6]
    r["both_thread_us"] = out[4]
    return r

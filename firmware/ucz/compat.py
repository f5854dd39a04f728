# The few shims that let one source run on MicroPython and on CPython.
# Everything else in ucz imports these names from here, never from micropython/time directly.
import sys

MICROPYTHON = sys.implementation.name == "micropython"

if MICROPYTHON:
    from micropython import const
    from time import ticks_us, ticks_ms, ticks_diff, sleep_ms
    import asyncio

    async_sleep_ms = asyncio.sleep_ms
else:
    import asyncio
    import time as _time

    def const(x):
        return x

    _T0 = _time.perf_counter_ns()

    def ticks_us():
        return (_time.perf_counter_ns() - _T0) // 1000

    def ticks_ms():
        return (_time.perf_counter_ns() - _T0) // 1000000

    def ticks_diff(a, b):
        # CPython ticks never wrap.
        return a - b

    def sleep_ms(ms):
        _time.sleep(ms / 1000)

    def async_sleep_ms(ms):
        return asyncio.sleep(ms / 1000)

import _thread

allocate_lock = _thread.allocate_lock
start_new_thread = _thread.start_new_thread


def has_viper():
    """True where the native emitter exists (unix, rp2, esp32); viper modules import only then."""
    return MICROPYTHON and sys.platform != "webassembly"

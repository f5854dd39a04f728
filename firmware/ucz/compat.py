# The few shims that let one source run on MicroPython and on CPython.
# Everything else in ucz imports these names from here, never from micropython/time directly.
import sys

MICROPYTHON = sys.implementation.name == "micropython"

if MICROPYTHON:
    import micropython  # for @micropython.native, which the compiler reads by its name
    from micropython import const
    from time import ticks_us, ticks_ms, ticks_diff, sleep_ms, sleep_us
    import asyncio

    async_sleep_ms = asyncio.sleep_ms
else:
    import asyncio
    import time as _time

    def const(x):
        return x

    class micropython:  # CPython: the firmware's @micropython.native changes nothing here
        @staticmethod
        def native(f):
            return f

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

    def sleep_us(us):
        _time.sleep(us / 1000000)

    def async_sleep_ms(ms):
        return asyncio.sleep(ms / 1000)

try:
    import _thread

    THREADS = True
except ImportError:  # ports built without threads (the QEMU boards)
    _thread = None
    THREADS = False
NO_THREADS = "this port has no _thread (one core): use the task placement"

# A thread that runs truly beside the main one: MicroPython reports _thread "unsafe" where
# there is no GIL (rp2's core 1, the unix port) and "GIL" where threads share one (ESP32);
# CPython has a GIL. Where this is False, compressing on a "second core" cannot pay.
PARALLEL = THREADS and MICROPYTHON and getattr(sys.implementation, "_thread", "GIL") != "GIL"

if MICROPYTHON:
    from asyncio import core as _core

    class Wakeup:
        """An event with one waiter that allocates nothing to wait or to wake.

        asyncio.Event.wait() makes a coroutine object per call, and once the arena has taken
        most of the heap every allocation searches a fragmented heap (measured: runs slowed
        2x as garbage built up). Same scheme as asyncio's own SingletonGenerator: awaiting
        parks the current task here; set() puts it back on the run queue.
        """

        def __init__(self):
            self.flag = False
            self.task = None
            self.stop = StopIteration()

        def wait(self):
            return self

        def __iter__(self):
            return self

        def __next__(self):
            if self.flag:
                self.flag = False  # consumed: the next wait() blocks again
                self.stop.__traceback__ = None
                raise self.stop
            self.task = _core.cur_task
            return None

        def set(self):
            self.flag = True
            t = self.task
            if t is not None:
                self.task = None
                _core._task_queue.push(t)

else:

    class Wakeup:
        """CPython twin of the MicroPython Wakeup (there, allocation is not a concern)."""

        def __init__(self):
            self.ev = asyncio.Event()

        async def wait(self):
            await self.ev.wait()
            self.ev.clear()

        def set(self):
            self.ev.set()


class _NoLock:
    """The lock of a port without threads: nothing runs beside the main thread."""

    def acquire(self, blocking=1):
        return True

    def release(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


if THREADS:
    allocate_lock = _thread.allocate_lock
    start_new_thread = _thread.start_new_thread
else:
    def allocate_lock():
        return _NoLock()

    def start_new_thread(func, args):
        raise OSError(NO_THREADS)


try:  # the QEMU boards (boards/qemu/ucz_board.c): runs in emulated time repeat exactly
    from ucz_board import sync_ticks
except ImportError:

    def sync_ticks():
        pass


def has_viper():
    """True where the native emitter exists (unix, rp2, esp32); viper modules import only then."""
    return MICROPYTHON and sys.platform != "webassembly"


_ITEMSIZE = {"b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "q": 8, "Q": 8}


def itemsize(typecode):
    return _ITEMSIZE[typecode]


def zeros(typecode, n):
    """A zero-filled array of n items, built without a temporary list."""
    from array import array

    if MICROPYTHON:
        # MicroPython takes a buffer initializer as raw bytes; CPython would take it item by item.
        return array(typecode, bytearray(n * _ITEMSIZE[typecode]))
    return array(typecode, (0,)) * n

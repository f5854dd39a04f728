# kcompressd analog: drains the ring the scanner fills, compressing each page into the zpool.
#   task:   an asyncio task on the scanner's core (the review's single-CPU case);
#   thread: a _thread worker (core 1 on rp2; a truly parallel thread on the unix port).
# Each page: dequeue (lock) -> compress (no lock; the page is WRITEBACK, its frame ours to
# read) -> place (slot under the lock, filled outside) -> publish (lock), dropped if the app
# rescued the page meanwhile.
from .compat import const, asyncio, ticks_us, ticks_diff, sleep_us, start_new_thread, sleep_ms, Wakeup
from . import counters as C
from .pool import Scratch

_SPIN_US = const(2000)  # thread placement: busy-poll this long after the last page
_IDLE_US = const(50)  # thread placement: poll period of an empty ring (no cross-thread wait
                      # primitive exists on every port; a lock released by another thread is
                      # undefined behaviour on the unix port's pthread mutexes)


class Compressor:
    def __init__(self, pool, placement="thread", slice_us=200):
        if placement not in ("task", "thread"):
            raise ValueError("compressor: must be task or thread")
        self.pool = pool
        self.placement = placement
        self.slice_us = slice_us
        self.sc = Scratch(pool.P)  # its own buffers and LZ4 table: runs beside the scanner's
        self.running = False
        self.done = True
        self.error = None
        self.event = None
        self.waiting = False

    def kick(self):
        """The scanner queued a page: wake the task (the thread polls)."""
        if self.waiting:
            self.waiting = False
            self.event.set()

    def start(self):
        self.running = True
        if self.placement == "thread":
            self.done = False
            start_new_thread(self._thread, ())
            return None
        self.event = Wakeup()
        return asyncio.create_task(self._task())

    def stop(self, timeout_ms=2000):
        """Stop and, for the thread, wait until it has left the pool for good."""
        self.running = False
        if self.event is not None:
            self.event.set()
        t0 = ticks_us()
        while not self.done:
            if ticks_diff(ticks_us(), t0) > timeout_ms * 1000:
                raise RuntimeError("compressor thread did not stop")
            sleep_ms(1)

    def _one(self, p):
        t0 = ticks_us()
        self.pool.writeback(p, self.sc, C.PGSTEAL_KSWAPD)
        # Only this compressor writes this slot: no lock needed.
        self.pool.c[C.COMPRESSOR_US] += ticks_diff(ticks_us(), t0)

    def _thread(self):
        pool = self.pool
        sc = self.sc
        last = ticks_us()
        try:
            while self.running:
                p = pool.dequeue(sc)
                if p < 0:
                    # Poll hard for a while after the last page (the scanner refills the ring
                    # in bursts, and a sleep costs far more than a page), then doze.
                    if ticks_diff(ticks_us(), last) > _SPIN_US:
                        sleep_us(_IDLE_US)
                    continue
                self._one(p)
                last = ticks_us()
        except Exception as e:  # a bug here must surface in the results, not vanish with the thread
            self.error = repr(e)
        finally:
            self.done = True

    async def _task(self):
        pool = self.pool
        sc = self.sc
        while self.running:
            p = pool.dequeue(sc)
            if p < 0:
                self.waiting = True
                await self.event.wait()
                continue
            t0 = ticks_us()
            while p >= 0:
                self._one(p)
                if ticks_diff(ticks_us(), t0) >= self.slice_us:
                    break
                p = pool.dequeue(sc)
            await asyncio.sleep(0)

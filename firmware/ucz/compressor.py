# kcompressd analog: drains the ring the scanner fills, compressing each page into the zpool.
#   task:   an asyncio task on the scanner's core (the review's single-CPU case);
#   thread: a _thread worker (core 1 on rp2; a truly parallel thread on the unix port).
# It drains in batches: one lock round takes up to pool.batch pages (-> WRITEBACK), then each
# page: compress (no lock; its frame is ours to read) -> place (slot under the lock, filled
# outside) -> publish (lock), dropped if the app rescued the page meanwhile.
from .compat import (const, asyncio, ticks_us, ticks_diff, sleep_us, start_new_thread, sleep_ms,
                     Wakeup, micropython)
from . import counters as C
from .pool import Scratch

_SPIN_US = const(2000)  # thread placement: busy-poll this long after the last page
_IDLE_US = const(50)  # thread placement: poll period of an empty ring (no cross-thread wait
                      # primitive exists on every port; a lock released by another thread is
                      # undefined behaviour on the unix port's pthread mutexes)
_DOZE_MS = const(1)  # poll period while auto compresses inline: a thread that shares the app's
                     # core (one-core host, GIL) must not take it from the app by polling


class Compressor:
    def __init__(self, pool, placement="thread", slice_us=200):
        if placement not in ("task", "thread"):
            raise ValueError("compressor: must be task or thread")
        self.pool = pool
        self.placement = placement
        self.slice_us = slice_us
        self.sc = Scratch(pool.P, pool.batch)  # its own buffers and table: runs beside the scanner's
        self.doze = False  # set by auto while it compresses inline: poll the empty ring slowly
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

    @micropython.native  # see NATIVE in pool.py
    def _drain(self):
        """Take a batch from the ring (one lock round) and store each page; returns how many."""
        pool = self.pool
        sc = self.sc
        k = pool.dequeue_batch(sc, pool.batch)
        if k:
            t0 = ticks_us()
            for i in range(k):
                sc.frame = sc.frames[i]
                sc.gen = sc.gens[i]
                pool.writeback(sc.pages[i], sc, C.PGSTEAL_KSWAPD)
            # Only this compressor writes this slot: no lock needed.
            pool.c[C.COMPRESSOR_US] += ticks_diff(ticks_us(), t0)
        return k

    def _thread(self):
        last = ticks_us()
        try:
            while self.running:
                if self._drain():
                    last = ticks_us()
                elif self.doze:
                    sleep_ms(_DOZE_MS)
                elif ticks_diff(ticks_us(), last) > _SPIN_US:
                    # Poll hard for a while after the last page (the scanner refills the ring
                    # in bursts, and a sleep costs far more than a page), then doze.
                    sleep_us(_IDLE_US)
        except Exception as e:  # a bug here must surface in the results, not vanish with the thread
            self.error = repr(e)
        finally:
            self.done = True

    async def _task(self):
        while self.running:
            t0 = ticks_us()
            k = self._drain()
            if not k:
                self.waiting = True
                await self.event.wait()
                continue
            while k and ticks_diff(ticks_us(), t0) < self.slice_us:
                k = self._drain()
            await asyncio.sleep(0)

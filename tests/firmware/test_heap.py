# A server session runs experiment after experiment on one heap: each run must give back what
# it took. In a file of its own: under MicroPython (tests/mprun.py, a Pico 2's heap) a test
# file's own code lives in that heap, and test_pool's left too little for this one.
import gc
from ucz import runner


def test_mp_runs_give_their_memory_back():
    # A server session runs experiment after experiment: each must find the heap it had.
    cfg = runner.config({"pages": 256, "frames": 64, "page_size": 1024, "ops": 500})
    free = []
    for _ in range(3):
        runner.run(cfg)
        gc.collect()
        free.append(gc.mem_free())
    assert max(free) - min(free) < 4096, free
    assert free[-1] > runner.arena_needed(cfg), free

# auto's decisions (ucz.auto) on a clock the test advances: switches and their counters, the
# hysteresis, a trial's win confirmed, trials backing off, trials skipped while the hand-off plainly pays, the window's
# page and time floors, a lost trial cut short (by its pace or by its stalls), a trial won by
# stalling less, and one core. CPython and MicroPython (tests/mprun.py): plain asserts. Its
# allocation-free path is checked in test_pool.
from ucz import counters as C
from ucz.pool import Pool
from ucz.scanner import Scanner
from ucz.compressor import Compressor


def _pool():
    pool = Pool(64, 16, 256, 64 * 256, data=5, seed=9)
    comp = Compressor(pool, "task")
    return pool, Scanner(pool, comp), comp


class _Clock:
    """Auto's clock, advanced by the test (its decisions rest on time per reclaimed page)."""

    def __init__(self):
        self.t = 0


class _AutoOnClock:
    """`with _AutoOnClock() as (S, auto, pool, comp, clock):` an Auto that starts handing off
    (a thread on a second core), on a clock the test advances (no contextlib on every port)."""

    def __enter__(self):
        from ucz import auto as S

        self.S = S
        self.real = S.ticks_us
        pool, sc, comp = _pool()
        clock = _Clock()
        S.ticks_us = lambda: clock.t
        return S, S.Auto(pool, True, False), pool, comp, clock

    def __exit__(self, *exc):
        self.S.ticks_us = self.real


def _window_pages(S, us_per_page):
    """Pages in one of auto's windows at this cost per page: WINDOW_PAGES, or more when those
    would take less than WINDOW_US."""
    return max(S.WINDOW_PAGES, -(-S.WINDOW_US // us_per_page))


def _reclaim(c, clock, n, us_per_page, stall_us=0):
    """n pages reclaimed at us_per_page, stall_us of that time in one allocation stall."""
    clock.t += us_per_page * n
    c[C.PGSTEAL_KSWAPD] += n
    if stall_us:
        c[C.ALLOCSTALL] += 1
        c[C.ALLOCSTALL_US] += stall_us


def test_auto_switches_to_the_design_that_costs_less_and_counts_it():
    with _AutoOnClock() as (S, auto, pool, comp, clock):
        c = pool.c

        def window(us_per_page):
            # one window of reclaim at this cost; returns the design chosen for what follows
            n = _window_pages(S, us_per_page)
            clock.t += us_per_page * n
            c[C.PGSTEAL_KSWAPD] += n
            return auto.step(comp)

        # Hand-off costs 100 us a page, inline 40: the first trial of inline wins.
        assert window(100) is False and c[C.KCOMPRESSD_AUTO_PROBE] == 1  # trial: inline
        assert window(40) is True  # the trial won; a window of hand-off confirms it
        assert c[C.KCOMPRESSD_AUTO_INLINE] == 0 and auto.confirm
        assert window(100) is False  # confirmed: inline for good, counted
        assert c[C.KCOMPRESSD_AUTO_INLINE] == 1 and c[C.KCOMPRESSD_OFFLOADING] == 0
        assert comp.doze  # the thread stops polling the ring hard while nothing comes
        # Now hand-off would be slightly cheaper, but within the margin: no flapping.
        switches = c[C.KCOMPRESSD_AUTO_INLINE] + c[C.KCOMPRESSD_AUTO_OFFLOAD]
        offload = False
        for _ in range(40):
            offload = window(37 if offload else 40)
        assert c[C.KCOMPRESSD_AUTO_INLINE] + c[C.KCOMPRESSD_AUTO_OFFLOAD] == switches
        assert c[C.KCOMPRESSD_AUTO_PROBE] > 1  # it kept trying, less and less often
        # Trials back off: at most one per PROBE_MAX windows once they keep losing.
        p0 = c[C.KCOMPRESSD_AUTO_PROBE]
        for _ in range(64):
            offload = window(37 if offload else 40)
        assert c[C.KCOMPRESSD_AUTO_PROBE] - p0 <= 64 // S.PROBE_MAX + 1
        # Hand-off becomes far cheaper: the next trial wins and is counted; from then on it
        # hands off but for its own (losing) trials of inline.
        for _ in range(S.PROBE_MAX + 2):
            offload = window(10 if offload else 40)
        assert c[C.KCOMPRESSD_AUTO_OFFLOAD] == 1
        designs = []
        for _ in range(4 * S.PROBE_MAX):
            offload = window(10 if offload else 40)
            designs.append(offload)
        assert c[C.KCOMPRESSD_AUTO_OFFLOAD] == 1 and c[C.KCOMPRESSD_AUTO_INLINE] == 1
        assert designs.count(True) > 3 * len(designs) // 4
        if offload:
            assert not comp.doze


def test_a_host_that_speeds_up_at_a_trial_does_not_make_the_worse_design_win():
    # Handing off costs 50 us a page, inline 60: the hand-off is better. The host's core gets
    # 1.75x faster just as the first trial of inline starts, and stays so: the trial beats the
    # running cost by far more than the margin, but not the window after it.
    with _AutoOnClock() as (S, auto, pool, comp, clock):
        c = pool.c
        speed = [4]  # us per page x 4 / speed

        def window():
            us = (50 if auto.offload else 60) * 4 // speed[0]
            n = _window_pages(S, us)
            clock.t += us * n
            c[C.PGSTEAL_KSWAPD] += n
            return auto.step(comp)

        assert window() is False and auto.trial  # the first window ends in a trial of inline
        speed[0] = 7
        assert window() is True and auto.confirm  # the trial won against the slow past
        for _ in range(4 * S.PROBE_MAX):
            window()
        assert c[C.KCOMPRESSD_AUTO_PROBE] >= 3  # trials went on, and lost
        assert c[C.KCOMPRESSD_AUTO_INLINE] == 0 and auto.offload


def test_auto_skips_trials_while_the_hand_off_plainly_pays():
    # A trial of inline is a window of kswapd-like stalls: while the compressor is busy most
    # of the window and the app's core spends little on reclaim, auto does not pay for one.
    # Once the compressor is starved (the app's core stores pages and stalls), trials resume.
    with _AutoOnClock() as (S, auto, pool, comp, clock):
        c = pool.c

        def window(compressor_us, app_core_us):
            # pages reclaimed in 60 us each; every store took 50 us, whoever did it; the
            # compressor's and the app core's reclaim time per page as given
            n = _window_pages(S, 60)
            clock.t += 60 * n
            c[C.PGSTEAL_KSWAPD] += n
            c[C.PSWPOUT] += n
            c[C.COMPRESS_US] += 50 * n
            c[C.COMPRESSOR_US] += compressor_us * n
            c[C.SCAN_US] += app_core_us * n
            return auto.step(comp)

        for _ in range(3 * S.PROBE_MAX):
            assert window(48, 8) is True  # busy thread, cheap hand-off
        assert c[C.KCOMPRESSD_AUTO_PROBE] == 0
        for _ in range(4):
            window(48, 40)  # the app's core does the thread's work meanwhile
        assert c[C.KCOMPRESSD_AUTO_PROBE] >= 1
        p0 = c[C.KCOMPRESSD_AUTO_PROBE]
        for _ in range(3 * S.PROBE_MAX):
            window(10, 8)  # an idle compressor: inline may cost the app nothing
        assert c[C.KCOMPRESSD_AUTO_PROBE] > p0


def test_auto_windows_last_long_enough_and_a_lost_trial_ends_early():
    with _AutoOnClock() as (S, auto, pool, comp, clock):
        c = pool.c

        def batch(us_per_page, n=8):
            _reclaim(c, clock, n, us_per_page)
            return auto.step(comp)

        # 2 us a page: WINDOW_PAGES pages take a tenth of WINDOW_US; the window stays open (no
        # trial yet) until its time is up, then closes with all its pages.
        for _ in range(S.WINDOW_PAGES // 8):
            assert batch(2) is True
        assert c[C.KCOMPRESSD_AUTO_PROBE] == 0
        while clock.t < S.WINDOW_US - 16:
            assert batch(2) is True
        assert c[C.KCOMPRESSD_AUTO_PROBE] == 0
        assert batch(2) is False  # the window closed: cost 2 us/page, the first trial starts
        assert c[C.KCOMPRESSD_AUTO_PROBE] == 1
        # Inline at 300 us a page against 2: after WINDOW_US it cannot win any more, so the
        # trial ends well before its WINDOW_PAGES pages, and auto hands off again.
        t0 = clock.t
        pages = 0
        while not batch(300):
            pages += 8
            assert clock.t - t0 < 2 * S.WINDOW_US
        assert pages < S.WINDOW_PAGES // 2 and c[C.KCOMPRESSD_AUTO_INLINE] == 0
        # The hand-off becomes dear (a busy host: 100 us a page); inline at 20 wins its next
        # trial, and only once that trial has run for WINDOW_US.
        while c[C.KCOMPRESSD_AUTO_PROBE] < 2:
            batch(100)
        t0 = clock.t
        while auto.trial:
            offload = batch(20)
            assert clock.t - t0 <= S.WINDOW_US
        assert clock.t - t0 >= S.WINDOW_US and offload and auto.confirm  # won; to confirm
        while auto.confirm:
            batch(100)
        assert c[C.KCOMPRESSD_AUTO_INLINE] == 1 and not auto.offload


def test_a_trial_that_stalls_the_app_loses_at_once_whatever_its_pace():
    with _AutoOnClock() as (S, auto, pool, comp, clock):
        c = pool.c

        def batch(us_per_page, stall_us=0):
            _reclaim(c, clock, 8, us_per_page, stall_us)
            return auto.step(comp)

        # Handing off at 100 us a page with no stall; the first window ends in a trial.
        while batch(100):
            pass
        assert c[C.KCOMPRESSD_AUTO_PROBE] == 1 and auto.trial
        probe = auto.probe
        # Inline at 40 us a page would win on pace, but a stall takes half of every batch: the
        # trial ends at its TRIAL_STALLS-th stall, long before its window, and loses.
        n = 0
        while not batch(40, stall_us=160):
            n += 1
            assert n < S.TRIAL_STALLS
        assert n == S.TRIAL_STALLS - 1 and c[C.KCOMPRESSD_AUTO_INLINE] == 0
        assert auto.probe == 2 * probe and not auto.trial
        # The next trial stalls too, but for under STALL_256THS/256 of its time: it runs its
        # window, wins on pace and is counted as a switch.
        while batch(100):
            pass
        assert c[C.KCOMPRESSD_AUTO_PROBE] == 2 and auto.trial
        t0 = clock.t
        while auto.trial:
            batch(40, stall_us=4)
        assert clock.t - t0 >= S.WINDOW_US and c[C.ALLOCSTALL] > 2 * S.TRIAL_STALLS
        while auto.confirm:
            batch(100)  # the window of the hand-off that confirms the win
        assert c[C.KCOMPRESSD_AUTO_INLINE] == 1 and not auto.offload


def test_a_trial_that_stalls_the_app_far_less_wins_at_about_the_same_pace():
    with _AutoOnClock() as (S, auto, pool, comp, clock):
        auto = S.Auto(pool, False, False)  # starts inline, trials allowed (a second core)
        c = pool.c

        def batch(inline_us, offload_us):
            # one batch at the pace of the design in force; inline stalls the app a quarter
            # of its time (a stall per batch), the hand-off not at all
            if auto.offload:
                _reclaim(c, clock, 8, offload_us)
            else:
                _reclaim(c, clock, 8, inline_us, inline_us * 8 // 4)
            return auto.step(comp)

        # The hand-off 1/16 slower: more than auto gives up for fewer stalls; trials, no switch.
        per_window = _window_pages(S, 32) // 8  # batches
        for _ in range(2 * S.PROBE_MAX * per_window):
            batch(32, 34)
        assert c[C.KCOMPRESSD_AUTO_PROBE] >= 3 and c[C.KCOMPRESSD_AUTO_OFFLOAD] == 0
        # At inline's pace, it stalls the app 1/4 less: its next trial wins, counted.
        for _ in range((S.PROBE_MAX + 2) * per_window):
            if batch(32, 32) and not auto.trial:
                break
        assert auto.offload and c[C.KCOMPRESSD_AUTO_OFFLOAD] == 1


def test_auto_on_one_core_stays_inline():
    from ucz import auto as S

    real = S.ticks_us
    clock = _Clock()
    S.ticks_us = lambda: clock.t
    try:
        pool = Pool(64, 16, 256, 64 * 256, data=5, seed=9)
        comp = Compressor(pool, "task")
        sc = Scanner(pool, comp, auto=True)
        assert sc.auto.offload is False and comp.doze
        c = pool.c
        for _ in range(3 * S.PROBE_MAX):  # windows that close (pages and time)
            clock.t += S.WINDOW_US
            c[C.PGSTEAL_KSWAPD] += S.WINDOW_PAGES
            assert sc.auto.step(comp) is False
    finally:
        S.ticks_us = real
    assert c[C.KCOMPRESSD_AUTO_PROBE] == 0 and sc.auto.cost > 0  # measured, never tried


def test_auto_on_one_core_makes_no_compressor():
    # A task compressor shares the app's core, so auto never hands off to one: the runner makes
    # none (it and auto's bookkeeping cost a one-core run time), and auto runs kswapd.
    from ucz import runner
    from ucz.compat import THREADS

    made = []
    real = runner.Compressor

    def spy(pool, placement, slice_us):
        made.append(placement)
        return real(pool, placement, slice_us)

    runner.Compressor = spy
    try:
        small = {"pages": 64, "frames": 16, "page_size": 256, "ops": 600, "data": "mixed"}
        r = runner.run(runner.config(dict(small, mode="auto", compressor="task")))
        assert made == []
        c = r["counters"]
        assert c["pswpout"] > 0 and c["corrupt"] == 0 and c["kcompressd_enqueue"] == 0
        runner.run(runner.config(dict(small, mode="kcompressd", compressor="task")))
        assert made == ["task"]
        if THREADS:
            runner.run(runner.config(dict(small, mode="auto", compressor="thread")))
            assert made == ["task", "thread"]
    finally:
        runner.Compressor = real

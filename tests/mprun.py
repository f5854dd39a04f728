# Runs a tests/firmware file under MicroPython: every test_* function, one line each.
# Usage: micropython tests/mprun.py tests/firmware/test_x.py [name-filter]
# (MICROPYPATH must hold firmware/.) Prints "PASS name" / "FAIL name: error", then "DONE p f".
import sys
import gc

# Ports without sys.argv (MicroPython's qemu port) exec this file with ARGV set beforehand.
args = globals().get("ARGV") or sys.argv[1:]
path = args[0]
filt = args[1] if len(args) > 1 else ""
g = {"__name__": "fwtest"}
g.update(globals().get("FWGLOBALS", {}))  # e.g. SCALE for a slow board
exec(open(path).read(), g)
names = sorted(k for k in g if k.startswith("test_") and filt in k)
npass = nfail = 0
for name in names:
    gc.collect()
    try:
        g[name]()
        print("PASS", name)
        npass += 1
    except Exception as e:
        if type(e).__name__ == "SkipTest":  # unittest.SkipTest on CPython, the tests' own here
            print("SKIP %s: %s" % (name, e))
            continue
        print("FAIL %s: %s %s" % (name, type(e).__name__, e))
        sys.print_exception(e)
        nfail += 1
print("DONE", npass, nfail)

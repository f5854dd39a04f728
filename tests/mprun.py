# Runs a tests/firmware file under MicroPython: every test_* function, one line each.
# Usage: micropython tests/mprun.py tests/firmware/test_x.py [name-filter]
# (MICROPYPATH must hold firmware/.) Prints "PASS name" / "FAIL name: error", then "DONE p f".
import sys
import gc

path = sys.argv[1]
filt = sys.argv[2] if len(sys.argv) > 2 else ""
g = {"__name__": "fwtest"}
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
        print("FAIL %s: %s %s" % (name, type(e).__name__, e))
        sys.print_exception(e)
        nfail += 1
print("DONE", npass, nfail)

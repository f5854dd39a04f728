# The in-place codec entry points refuse a read-only destination, as compress()/decompress()
# do: under MicroPython the viper cores write through a raw pointer and would otherwise change
# an immutable bytes object (issue 8). Runs under CPython (pytest) and MicroPython
# (tests/mprun.py): plain asserts only.
from ucz import lz4


def _refused(f, *args):
    try:
        f(*args)
    except TypeError:
        return True
    return False


def test_into_refuses_a_read_only_dst():
    src = bytes(range(256)) * 4
    block = bytearray(lz4.bound(len(src)))
    n = lz4.compress(src, block)
    t = lz4.new_table()
    ro = bytes(len(block))
    assert _refused(lz4.compress_into, src, 0, len(src), ro, t)
    assert ro == bytes(len(block))  # untouched
    out = bytes(len(src))
    assert _refused(lz4.decompress_into, block, 0, n, out, 0, len(src))
    assert out == bytes(len(src))
    # The writable forms still work, with the same bytes as the plain functions.
    dst = bytearray(len(block))
    assert lz4.compress_into(src, 0, len(src), dst, t) == n and dst[:n] == block[:n]
    back = bytearray(len(src))
    assert lz4.decompress_into(block, 0, n, back, 0, len(src)) == len(src) and back == src

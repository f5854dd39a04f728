"""ucz.lz4 (LZ4 block codec) against the C library, on CPython and under MicroPython.

CPython runs the portable core (ucz.lz4._compress_py / _decompress_py). The MicroPython unix
port runs tests/mp/lz4_check.py (viper core vs portable core vs the C library's blocks) on
records written here; the blocks it produces come back here to be decoded by the C library.
"""
import os
import random
import struct
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(REPO, "firmware")
if FIRMWARE not in sys.path:
    sys.path.insert(0, FIRMWARE)

lz4c = pytest.importorskip("lz4.block")  # the C reference (python-lz4)

from ucz import lz4  # noqa: E402
from conftest import HEAPSIZE, NO_MICROPYTHON, micropython_argv  # noqa: E402

KINDS = ("zero", "pattern", "text", "sensor", "random", "mixed")
LENGTHS = (0, 1, 4, 5, 12, 13, 14, 64, 255, 256, 1000, 4096)
BIG = (65536, 70000)  # > 64 KiB: positions wrap in the u16 table, matches still verified


def make_page(kind, n, seed=0):
    """Deterministic test data of one kind: what a paged heap could hold."""
    rnd = random.Random("%s/%d/%d" % (kind, n, seed))
    if kind == "zero":
        return bytes(n)
    if kind == "pattern":
        pat = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 40)))
        return (pat * (n // len(pat) + 1))[:n]
    if kind == "text":
        words = (
            b"the", b"lz4", b"page", b"memory", b"compress", b"store", b"micropython",
            b"kernel", b"swap", b"\n", b"    ", b"def", b"return", b"0x", b"{", b"}",
        )
        out = bytearray()
        while len(out) < n:
            out += rnd.choice(words) + b" "
        return bytes(out[:n])
    if kind == "sensor":  # slowly varying 16-bit samples with noise
        v = 2000
        out = bytearray()
        while len(out) < n:
            v = max(0, min(4095, v + rnd.randint(-3, 3)))
            out += struct.pack("<H", v + rnd.randint(-2, 2))
        return bytes(out[:n])
    if kind == "random":
        return rnd.randbytes(n)
    assert kind == "mixed"
    parts = [make_page(k, 1024, seed) for k in KINDS[:-1]]
    out = bytearray()
    while len(out) < n:
        p = rnd.choice(parts)
        a = rnd.randrange(len(p))
        out += p[a : a + rnd.randrange(16, 600)]
    return bytes(out[:n])


def c_block(page, **kw):
    return lz4c.compress(page, store_size=False, **kw)


def ours(page):
    dst = bytearray(lz4.bound(len(page)))
    return bytes(dst[: lz4.compress(page, dst)])


def decode(blk, cap):
    dst = bytearray(cap)
    return bytes(dst[: lz4.decompress(blk, dst)])


ALL_PAGES = [(k, n) for k in KINDS for n in LENGTHS] + [(k, n) for k in ("mixed", "text", "zero") for n in BIG]


# --- CPython: the portable core -------------------------------------------------------------------


def test_bound():
    assert [lz4.bound(n) for n in (0, 1, 254, 255, 4096)] == [16, 17, 270, 272, 4128]


@pytest.mark.parametrize("kind,n", ALL_PAGES)
def test_compress_matches_c_library(kind, n):
    page = make_page(kind, n)
    blk = ours(page)
    assert lz4c.decompress(blk, uncompressed_size=n) == page
    if n <= 65536:  # same greedy parse, same hash: the very same bytes
        assert blk == c_block(page)
    else:  # the u16 table aliases positions > 64 KiB back: same codec, nearly the same size
        assert len(blk) <= len(c_block(page)) * 1.01 + 16


@pytest.mark.parametrize("kind,n", ALL_PAGES)
def test_decompress_c_blocks(kind, n):
    page = make_page(kind, n, seed=1)
    variants = [c_block(page)]
    variants += [c_block(page, mode="fast", acceleration=a) for a in (2, 8, 64)]
    if n <= 4096:
        variants += [c_block(page, mode="high_compression", compression=c) for c in (3, 9, 12)]
    for blk in variants:
        assert decode(blk, n) == page
        assert decode(blk, n + 100) == page  # a roomier dst is fine, the size says what counts


def test_end_rules_and_tiny_inputs():
    assert ours(b"") == b"\x00"  # what the C library produces for an empty input
    assert decode(b"\x00", 0) == b""
    for n in range(13):  # below 13 bytes: one literal-only sequence
        page = bytes(n)
        assert ours(page) == bytes([n << 4]) + page
    # Long runs: the last match ends 5 bytes before the end, which are literals.
    blk = ours(bytes(1000))
    assert blk.endswith(b"\x50" + bytes(5))


def test_dst_too_small_never_writes_past_dst():
    for kind, n in (("text", 4096), ("random", 4096), ("zero", 4096), ("mixed", 1000), ("text", 20)):
        page = make_page(kind, n)
        blk = ours(page)
        k = len(blk)
        for size in sorted({0, 1, 2, k // 3, k // 2, k - 6, k - 2, k - 1}):
            if not 0 <= size < k:
                continue
            pool = bytearray(b"\xa5" * (size + 32))
            view = memoryview(pool)[16 : 16 + size]
            with pytest.raises(ValueError, match=r"^lz4: dst too small \(need >= (\d+), have %d" % size) as ei:
                lz4.compress(page, view)
            need = int(str(ei.value).split("need >= ")[1].split(",")[0])
            assert size < need <= k
            assert pool[:16] == b"\xa5" * 16 and pool[16 + size :] == b"\xa5" * 16
        pool = bytearray(b"\xa5" * (k + 32))
        assert lz4.compress(page, memoryview(pool)[16 : 16 + k]) == k
        assert pool[16 : 16 + k] == blk and pool[16 + k :] == b"\xa5" * 16


def test_memoryview_slices():
    page = make_page("mixed", 4096)
    pool = bytearray(3) + page + bytearray(5)
    src = memoryview(pool)[3 : 3 + 4096]
    out = bytearray(lz4.bound(4096) + 9)
    k = lz4.compress(src, memoryview(out)[9:])
    blk = bytes(out[9 : 9 + k])
    assert blk == c_block(page)
    store = bytearray(7) + blk + bytearray(2)
    dst = bytearray(b"\xa5" * (4096 + 20))
    assert lz4.decompress(memoryview(store)[7 : 7 + k], memoryview(dst)[10 : 10 + 4096]) == 4096
    assert dst[10 : 10 + 4096] == page and dst[:10] == b"\xa5" * 10 and dst[-10:] == b"\xa5" * 10
    assert lz4.compress(bytearray(page), bytearray(lz4.bound(4096))) == k


def test_own_tables():
    page = make_page("text", 4096)
    t1, t2 = lz4.new_table(), lz4.new_table()
    dst = bytearray(lz4.bound(4096))
    assert bytes(dst[: lz4.compress(page, dst, t1)]) == c_block(page)
    assert bytes(dst[: lz4.compress(page, dst, t2)]) == c_block(page)
    from array import array

    for bad in (bytearray(8192), array("B", bytes(4096)), array("H", [0]) * 100, [0] * 4096):
        with pytest.raises(ValueError, match="table must come from new_table"):
            lz4.compress(page, dst, bad)


@pytest.mark.parametrize(
    "blk,cap,msg",
    [
        (b"", 10, r"^lz4: truncated input at byte 0$"),
        (b"\xf0", 100, r"^lz4: truncated input at byte 1$"),  # literal length byte missing
        (b"\x50abc", 10, r"^lz4: truncated input at byte 1$"),  # 5 literals, 3 present
        (b"\x10a\x00\x00\x50bcdef", 20, r"^lz4: offset 0 at byte 2$"),
        (b"\x10a\x02\x00\x50bcdef", 20, r"^lz4: offset reaches before the start of the output at byte 2$"),
        (b"\x10a\x01", 20, r"^lz4: truncated input at byte 2$"),  # half an offset
        (b"\x1fa\x01\x00", 20, r"^lz4: truncated input at byte 4$"),  # match length byte missing
        (b"\x10a\x01\x00", 20, r"^lz4: truncated input at byte 4 \(block ends without last literals\)$"),
        (b"\x50abcde", 4, r"^lz4: output does not fit dst \(4 bytes\) at input byte 1$"),
        (b"\x10a\x01\x00\x50bcdef", 6, r"^lz4: output does not fit dst \(6 bytes\) at input byte 5$"),
        (b"\xf0" + b"\xff" * 40, 10**6, r"^lz4: truncated input at byte \d+$"),  # endless length
    ],
)
def test_decompress_errors(blk, cap, msg):
    with pytest.raises(ValueError, match=msg):
        decode(blk, cap)


def test_decompress_overlapping_match():
    # offset 1 repeats one byte, offset 3 a three-byte pattern (match longer than offset)
    assert decode(b"\x1fa\x01\x00\x05\x50bcdef", 100) == b"a" * 25 + b"bcdef"
    assert decode(b"\x3fabc\x03\x00\x00\x50bcdef", 100) == (b"abc" * 8)[:22] + b"bcdef"


def test_decoder_fuzz():
    rnd = random.Random(20240601)
    valid = [ours(make_page(k, n, seed=2)) for k in KINDS for n in (64, 256, 1000)]
    outcomes = {"ok": 0, "err": 0}
    for case in range(3000):
        if case % 3 == 0:
            blk = rnd.randbytes(rnd.randrange(48))
        else:
            blk = bytearray(rnd.choice(valid))
            for _ in range(rnd.randrange(1, 4)):
                blk[rnd.randrange(len(blk))] = rnd.randrange(256)
            if case % 3 == 2:
                blk = blk[: rnd.randrange(len(blk) + 1)] + rnd.randbytes(rnd.randrange(3))
            blk = bytes(blk)
        cap = rnd.randrange(1100)
        pool = bytearray(b"\xa5" * (cap + 16))
        err = ""
        try:
            r = lz4.decompress(blk, memoryview(pool)[8 : 8 + cap])
        except ValueError as e:
            err = str(e)
            assert err.startswith("lz4: ")
            r = None
        assert pool[:8] == b"\xa5" * 8 and pool[8 + cap :] == b"\xa5" * 8
        if r is not None:  # and nothing past the output it reports
            assert pool[8 + r : 8 + cap] == b"\xa5" * (cap - r)
        # Whatever the C decoder accepts (it is stricter about the block end) we accept too,
        # with the same output; C does not reject offset 0, so those cases are left out.
        try:
            ref = lz4c.decompress(blk, uncompressed_size=cap)
        except Exception:
            ref = None
        if ref is not None and "offset 0" not in err:
            assert r == len(ref) and bytes(pool[8 : 8 + r]) == ref, case
        outcomes["ok" if r is not None else "err"] += 1
    assert outcomes["ok"] > 100 and outcomes["err"] > 1000, outcomes  # both paths exercised


def test_viper_source_compiles_on_32bit_ports():
    # MicroPython folds constant expressions into int objects; on a 32-bit port anything
    # past 2**30 becomes a big int, which viper refuses to mix with machine ints, and the
    # module would silently fall back to the slow core. Shifts by >= 32 differ per CPU.
    import ast

    tree = ast.parse(open(os.path.join(FIRMWARE, "ucz", "lz4_viper.py")).read())

    def const(node):
        if isinstance(node, ast.Constant):
            return node.value if type(node.value) is int else None
        if isinstance(node, ast.UnaryOp) and const(node.operand) is not None:
            return eval(compile(ast.Expression(node), "<viper>", "eval"))
        if isinstance(node, ast.BinOp) and const(node.left) is not None and const(node.right) is not None:
            return eval(compile(ast.Expression(node), "<viper>", "eval"))
        return None

    checked = 0
    for node in ast.walk(tree):
        v = const(node)
        if v is not None:
            assert -(1 << 30) <= v < (1 << 30), ast.unparse(node)
            checked += 1
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.LShift, ast.RShift)):
            amount = const(node.right)
            assert amount is not None and 0 <= amount < 32, ast.unparse(node)
    assert checked > 100


class W32(int):
    """An int that wraps like a viper int on a 32-bit board (signed, arithmetic >>)."""

    def __new__(cls, v):
        v &= 0xFFFFFFFF
        return int.__new__(cls, v - (1 << 32) if v & 0x80000000 else v)


for _name, _op in (("add", int.__add__), ("mul", int.__mul__), ("lshift", int.__lshift__),
                   ("rshift", int.__rshift__), ("and", int.__and__), ("or", int.__or__)):
    setattr(W32, "__%s__" % _name, lambda a, b, op=_op: W32(op(int(a), int(b))))
    setattr(W32, "__r%s__" % _name, lambda a, b, op=_op: W32(op(int(b), int(a))))


def test_viper_hash_survives_32bit_wraparound():
    # The unix port runs viper with 64-bit ints, so evaluate the 32-bit hash branch of
    # lz4_viper.py (its very source text) with 32-bit wrap-around after every operation.
    import re

    src = open(os.path.join(FIRMWARE, "ucz", "lz4_viper.py")).read()
    found = re.findall(r"vl = (.*)\n\s*vh = (.*)\n\s*\w+ = (\(.*\n.*)\n", src)
    assert len(found) == 5  # the hash is inlined at five places...
    found = {tuple(" ".join(e.split()) for e in f) for f in found}
    assert len(found) == 1  # ...as the very same text
    vl_src, vh_src, h_src = found.pop()
    rnd = random.Random(5)
    samples = [bytes(5), b"\xff" * 5, b"\x80\x00\x00\x80\xff"] + [rnd.randbytes(5) for _ in range(3000)]
    for b5 in samples:
        env = {"d": [W32(c) for c in b5]}
        env["vl"] = eval(vl_src, env)
        env["vh"] = eval(vh_src, env)
        got = eval(h_src, env)
        want = (((int.from_bytes(b5, "little") << 24) * 889523592379) % (1 << 64)) >> 52  # LZ4_hash5
        assert got == want, b5


# --- MicroPython: viper core, portable core and the C library --------------------------------------


# The > 64 KiB page goes first, while the (Pico 2's) heap is still empty.
MP_PAGES = [("mixed", 70000, 0)] + [(k, n, 0) for k in KINDS for n in LENGTHS] + [(k, 4096, 1) for k in KINDS]


@pytest.fixture(scope="module")
def mp_run(tmp_path_factory):
    exe = micropython_argv()
    if exe is None:
        pytest.skip(NO_MICROPYTHON)
    d = tmp_path_factory.mktemp("lz4mp")
    inp, out = d / "records.bin", d / "blocks.bin"
    pages = []
    with open(inp, "wb") as f:
        for kind, n, seed in MP_PAGES:
            page = make_page(kind, n, seed)
            pages.append(page)
            blocks = {"default": c_block(page)}
            if n <= 4096:  # (the big page stays lean: MicroPython holds it all in a Pico 2's heap)
                for a in (2, 8, 64):
                    blocks["fast%d" % a] = c_block(page, mode="fast", acceleration=a)
                for c in (3, 9, 12):
                    blocks["hc%d" % c] = c_block(page, mode="high_compression", compression=c)
            f.write(struct.pack("<I", n) + page + bytes([len(blocks)]))
            for tag, blk in blocks.items():
                f.write(bytes([len(tag)]) + tag.encode() + struct.pack("<I", len(blk)) + blk)
    script = os.path.join(REPO, "tests", "mp", "lz4_check.py")
    proc = subprocess.run(
        [*exe, "-X", f"heapsize={HEAPSIZE}", script, FIRMWARE, str(inp), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    blocks = []
    if out.exists():
        data = out.read_bytes()
        i = 0
        while i < len(data):
            n, k = struct.unpack_from("<II", data, i)
            blocks.append((n, data[i + 8 : i + 8 + k]))
            i += 8 + k
    return proc, pages, blocks


def test_micropython_checks_pass(mp_run):
    proc, _, _ = mp_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("OK ") and int(last.split()[1]) > 2500, proc.stdout


def test_micropython_blocks_decode_with_c_library(mp_run):
    proc, pages, blocks = mp_run
    assert len(blocks) == len(pages), proc.stdout + proc.stderr
    for page, (n, blk) in zip(pages, blocks):
        assert n == len(page)
        assert lz4c.decompress(blk, uncompressed_size=n) == page
        if n <= 65536:
            assert blk == c_block(page)
        else:  # > 64 KiB: the viper core must still agree with the portable core on CPython
            assert blk == ours(page)

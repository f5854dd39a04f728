# Freezes the ucz firmware into a MicroPython image (MicroPython's manifest format): a board's
# manifest says include("<this repo>/firmware/manifest.py"). The QEMU boards do (ucompressd.qemu).
# options.exclude: files the including board freezes another way. qemu-m0 (ARMv6-M, built from
# MicroPython 1.25, whose Thumb-1 emitter cannot jump over 2 KiB) freezes lz4_viper.py as the
# .mpy of a newer mpy-cross (1.26+ emits long jumps), or as source without one.
import os

metadata(description="ucompressd: paged memory with compressed reclaim (kswapd / kcompressd)")
options.defaults(exclude=())
package("ucz", files=sorted(
    f for f in os.listdir("ucz") if f.endswith(".py") and f not in options.exclude))

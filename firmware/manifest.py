# Freezes the ucz firmware into a MicroPython image (MicroPython's manifest format): a board's
# manifest says include("<this repo>/firmware/manifest.py"). The QEMU boards do (ucompressd.qemu).
# options.exclude: files the including board freezes another way. ARMv6-M (RP2040, qemu-m0)
# freezes lz4_viper.py as source, compiled at import as on a Pico with .py files: mpy-cross
# cannot emit its compressor there (a jump over 2 KiB), and ucz.lz4 then compresses in Python
# (the decompressor, lz4dec_viper.py, is native code there all the same).
import os

metadata(description="ucompressd: paged memory with compressed reclaim (kswapd / kcompressd)")
options.defaults(exclude=())
package("ucz", files=sorted(
    f for f in os.listdir("ucz") if f.endswith(".py") and f not in options.exclude))

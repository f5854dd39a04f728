# ucz: paged memory with compressed reclaim (kswapd / kcompressd) for MicroPython boards.
VERSION = "0.1.0"

"""ucompressd host side: run kswapd / kcompressd experiments on MicroPython boards."""

from ucz import VERSION as __version__  # host and firmware ship together: one version

__all__ = ["__version__"]

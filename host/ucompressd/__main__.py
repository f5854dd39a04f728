import sys

from ucompressd.cli import main

sys.exit(main())

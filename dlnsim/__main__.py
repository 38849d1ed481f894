"""``python -m dlnsim``: the command line (same as the ``dlnsim`` script)."""

import sys

from .analysis.cli import main

sys.exit(main())

"""``python -m avatar_engine.cli``: the same command line as the ``avatar-engine`` script."""

import sys

from avatar_engine.cli import main

sys.exit(main())

"""``python -m bayeslmm``: the same as the ``bayeslmm`` command."""

import sys

from .present.cli import main

sys.exit(main())

"""``python -m bayeslmm``: the same as the ``bayeslmm`` command."""

import sys

from .cli import main

sys.exit(main())

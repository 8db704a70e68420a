"""The figures, as ``bayeslmm.plots`` (``import bayeslmm.plots`` and ``bl.plots`` alike).

They live in :mod:`bayeslmm.present.plots`; this module is that one under the short name.
"""

from .present.plots import *  # noqa: F403
from .present.plots import __all__ as __all__  # noqa: F401

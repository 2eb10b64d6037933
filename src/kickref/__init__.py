"""kickref: crystallographic refinement of macromolecular models against X-ray data.

Quick use::

    import kickref
    stats = kickref.rfactor("model.pdb", "data.mtz")
    maps, stats = kickref.compute_maps("model.pdb", "data.mtz")
"""
__version__ = "0.1.0"

from .core.errors import KickrefError, InputError  # noqa: F401,E402
from .core.model import Model  # noqa: F401,E402
from .core.reflections import Reflections  # noqa: F401,E402
from .io.models import read_model, write_model  # noqa: F401,E402
from .io.reflections import read_reflections  # noqa: F401,E402
from .api import (load_inputs, rfactor, compute_maps, refine, refine_map,  # noqa: F401,E402
                  density_combination)

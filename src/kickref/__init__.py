"""kickref: crystallographic refinement of macromolecular models against X-ray data.

Quick use::

    import kickref
    r = kickref.rfactor("model.pdb", "data.mtz")                 # RFactorResult
    print(r.r_work, r.r_free)
    maps = kickref.compute_maps("model.pdb", "data.mtz")          # MapsResult
    kickref.write_map_coefficients(maps.map_coefficients, "maps.mtz")
    result = kickref.refine("model.pdb", "data.mtz", cycles=5)    # RefinementResult
"""
__version__ = "0.1.0"

from .core.errors import KickrefError, InputError  # noqa: F401,E402
from .core.model import Model  # noqa: F401,E402
from .core.reflections import Reflections  # noqa: F401,E402
from .io.models import read_model, write_model  # noqa: F401,E402
from .io.maps import write_map_coefficients  # noqa: F401,E402
from .io.reflections import (read_reflections, reflections_from_mtz,  # noqa: F401,E402
                             reflections_to_mtz)
from .api import (Inputs, MapsResult, RealSpaceResult, RFactorResult,  # noqa: F401,E402
                  add_hydrogens, compute_maps, density_combination, load_inputs, refine,
                  refine_map, rfactor)

# imported on first use (they pull in scipy.stats and the refinement drivers)
_LAZY = {"MapCoefficients": "xtal.maps", "RefineOptions": "refinement.protocol",
         "RefinementResult": "refinement.protocol",
         "DensityCombinationResult": "refinement.density_combination", "Session": "session"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'kickref' has no attribute {name!r}")

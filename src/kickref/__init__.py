"""kickref: crystallographic refinement of macromolecular models against X-ray data.

Quick use::

    import kickref
    model = kickref.read_model("model.pdb")
    data = kickref.read_reflections("data.mtz")
    stats = kickref.rfactor(model, data)
"""
__version__ = "0.1.0"

from .errors import KickrefError, InputError  # noqa: F401,E402
from .model import Model  # noqa: F401,E402
from .io.models import read_model, write_model  # noqa: F401,E402

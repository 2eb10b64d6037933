"""Examples that kickref builds itself (no data files shipped): see :mod:`kickref.examples.peptide`."""
from .peptide import build_example

__all__ = ["build_example"]

"""The fused op's Python face and what it is built from.

- ``fused``: ``egl_attention`` over the compiled ``diffmd_fast::egl_attention`` ops (register_fake,
  register_autograd); falls back to the reference without the extension.
- ``reference``: the same op in pure PyTorch (the float64 ground truth of the tests).
- ``basis``: the spherical Fourier-Bessel basis of Eqs. 10-11 (roots, normalisations, sizes).
- ``graph``: CSR neighbour graphs (complete per molecule, radius graph).
"""
from . import basis, graph, reference
from .fused import COMPILED, egl_attention

__all__ = ["COMPILED", "basis", "egl_attention", "graph", "reference"]

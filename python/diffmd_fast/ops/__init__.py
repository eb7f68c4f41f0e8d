"""The fused op's Python face and what it is built from.

- ``fused``: one function per compiled op (``egl_attention`` with register_fake and register_autograd,
  falling back to the reference without the extension; ``egt_score``, ``valence_force``,
  ``radius_graph``) and the one flag ``HAS_EXTENSION``.
- ``reference``: the same op in pure PyTorch (the float64 ground truth of the tests).
- ``basis``: the spherical Fourier-Bessel basis of Eqs. 10-11 (roots, normalisations, sizes).
- ``graph``: CSR neighbour graphs (complete per molecule, radius graph).
"""
from . import basis, graph, reference
from .fused import HAS_EXTENSION, egl_attention

__all__ = ["HAS_EXTENSION", "basis", "egl_attention", "graph", "reference"]

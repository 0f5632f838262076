"""bnlib: Batch Normalization in numpy, with PyTorch's names and numbers.

``import bnlib`` gives the library and needs only numpy::

    import numpy as np
    import bnlib

    bn = bnlib.BatchNorm1d(3)
    y = bn(np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32))

The library: the functional forms (:func:`batch_norm` and its backward passes,
:func:`ghost_batch_norm`, folding, :func:`from_keras`), the layers
(:class:`BatchNorm1d` ...), :func:`set_num_threads` and :func:`set_backend` (numpy,
or the compiled numba kernels of the ``fast`` extra). Subpackages, imported on their
own:

- ``bnlib.torch``: the same inside PyTorch (an autograd Function, drop-in layers,
  model helpers); needs the ``torch`` extra.
- ``bnlib.lab``, ``bnlib.derive``, ``bnlib.bench``: the book's experiment kit, SymPy
  derivations and speed benchmark; not part of the library's API.
"""

from bnlib._kernels.blocked import get_num_threads, set_num_threads
from bnlib._version import __version__
from bnlib.backend import get_backend, set_backend
from bnlib.batchnorm import (
    batch_norm,
    batch_norm_backward,
    batch_norm_eval_backward,
    batch_stats,
)
from bnlib.convert import from_keras
from bnlib.fold import bn_affine, fold_batch_norm
from bnlib.ghost import ghost_batch_norm, ghost_batch_norm_backward
from bnlib.modules import BatchNorm1d, BatchNorm2d, BatchNorm3d

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "__version__",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_eval_backward",
    "batch_stats",
    "bn_affine",
    "fold_batch_norm",
    "from_keras",
    "get_backend",
    "get_num_threads",
    "ghost_batch_norm",
    "ghost_batch_norm_backward",
    "set_backend",
    "set_num_threads",
]

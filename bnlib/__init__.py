"""bnlib: Batch Normalization in numpy, matching PyTorch, with the book's tools.

The numpy core needs only numpy::

    import numpy as np
    import bnlib

    bn = bnlib.BatchNorm1d(3)
    y = bn(np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32))

Modules that use torch or sympy import them themselves and are not imported here.
"""

from bnlib.batchnorm import (
    batch_norm,
    batch_norm_backward,
    batch_norm_eval_backward,
    batch_stats,
)
from bnlib.modules import BatchNorm1d, BatchNorm2d, BatchNorm3d

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_eval_backward",
    "batch_stats",
]

__version__ = "0.1.0"

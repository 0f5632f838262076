"""bnlib: Batch Normalization in numpy, with PyTorch's names and numbers.

``import bnlib`` gives the library and needs only numpy::

    import numpy as np
    import bnlib

    bn = bnlib.BatchNorm1d(3)
    y = bn(np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32))

The library: the functional forms (:func:`batch_norm` and its backward passes,
:func:`ghost_batch_norm`, folding, :func:`from_keras`, the shard statistics
:func:`shard_stats` and :func:`merge_stats`), the layers (:class:`BatchNorm1d` ...),
the normalization family (:func:`layer_norm`,
:func:`group_norm`, :func:`instance_norm`, :func:`rms_norm`, :func:`batch_renorm`,
:func:`weight_norm`, their backward passes and layers, all on the one z-score of
:func:`normalize`), :func:`no_grad` (inference: the layers keep no input for
``backward``), :func:`set_num_threads` and :func:`set_backend` (numpy, or the
compiled numba kernels of the ``fast`` extra). Subpackages, imported on their own:

- ``bnlib.torch``: the same inside PyTorch (an autograd Function, drop-in layers,
  model helpers); needs the ``torch`` extra.

The book's tools (experiments, SymPy derivations, the benchmark) are the separate
package ``bnbook``, installed with the book, not with bnlib.
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
from bnlib.family import (
    group_norm,
    group_norm_backward,
    layer_norm,
    layer_norm_backward,
)
from bnlib.family_modules import GroupNorm, LayerNorm, RMSNorm
from bnlib.fold import bn_affine, fold_batch_norm
from bnlib.ghost import ghost_batch_norm, ghost_batch_norm_backward
from bnlib.grad_mode import is_grad_enabled, no_grad
from bnlib.instance import (
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    instance_norm,
    instance_norm_backward,
)
from bnlib.modules import BatchNorm1d, BatchNorm2d, BatchNorm3d
from bnlib.renorm import (
    BatchRenorm1d,
    BatchRenorm2d,
    batch_renorm,
    batch_renorm_backward,
)
from bnlib.rmsnorm import rms_norm, rms_norm_backward
from bnlib.shards import ShardStats, merge_stats, shard_stats
from bnlib.weight_norm import weight_norm, weight_norm_backward, weight_norm_init
from bnlib.zscore import normalize, normalize_backward

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "ShardStats",
    "BatchRenorm1d",
    "BatchRenorm2d",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
    "RMSNorm",
    "__version__",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_eval_backward",
    "batch_renorm",
    "batch_renorm_backward",
    "batch_stats",
    "bn_affine",
    "fold_batch_norm",
    "from_keras",
    "get_backend",
    "get_num_threads",
    "ghost_batch_norm",
    "ghost_batch_norm_backward",
    "merge_stats",
    "set_backend",
    "set_num_threads",
    "shard_stats",
    "group_norm",
    "group_norm_backward",
    "instance_norm",
    "instance_norm_backward",
    "is_grad_enabled",
    "layer_norm",
    "layer_norm_backward",
    "normalize",
    "no_grad",
    "normalize_backward",
    "rms_norm",
    "rms_norm_backward",
    "weight_norm",
    "weight_norm_backward",
    "weight_norm_init",
]

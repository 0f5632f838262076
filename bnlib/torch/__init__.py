"""bnlib inside PyTorch: the autograd Function, drop-in layers and model helpers.

Needs torch (``pip install "bnlib-batchnorm[torch]"``). Every computation here runs
bnlib's numpy code on CPU tensors, so a network built with these layers trains on the
book's own derivation rather than on PyTorch's kernel.
"""

from bnlib._extras import require

require("bnlib.torch", "torch", "torch")

from bnlib.torch.batchnorm import (  # noqa: E402
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    BatchNormFunction,
    batch_norm,
)
from bnlib.torch.fold import fold_bn_module, fold_sequential  # noqa: E402
from bnlib.torch.ghost import GhostBatchNorm1d, to_ghost  # noqa: E402
from bnlib.torch.recalibrate import freeze_bn, recalibrate_bn  # noqa: E402
from bnlib.torch.swap import convert, revert  # noqa: E402
from bnlib.torch.sync import SyncBatchNorm  # noqa: E402

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "BatchNormFunction",
    "GhostBatchNorm1d",
    "SyncBatchNorm",
    "batch_norm",
    "convert",
    "fold_bn_module",
    "fold_sequential",
    "freeze_bn",
    "recalibrate_bn",
    "revert",
    "to_ghost",
]

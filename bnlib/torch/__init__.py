"""bnlib inside PyTorch: custom operators, drop-in layers and model helpers.

Needs torch (``pip install "bnlib-batchnorm[torch]"``). Every computation here runs
bnlib's numpy code on CPU tensors, so a network built with these layers trains on the
book's own derivation rather than on PyTorch's kernel. The numpy kernels are
registered as the torch custom operators ``bnlib::batch_norm`` and
``bnlib::batch_norm_backward``, so ``torch.compile`` traces a converted model without
a graph break from bnlib and ``torch.export`` exports it.

Supported torch versions: 2.4 and later (``torch.library.custom_op`` with
``register_fake`` and ``register_autograd`` arrived in 2.4). Tested with torch
2.13.0 only. ``bias=False`` on an affine layer needs a torch whose BatchNorm takes
the ``bias`` keyword (a recent one); bnlib passes that keyword only for such a layer,
so on older torch every other layer works and asking for ``bias=False`` raises a
TypeError that says why. The guide for moving a model over is the book's page
``migration``.
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
from bnlib.torch.fold import fold_bn, fold_bn_module, fold_sequential  # noqa: E402
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
    "fold_bn",
    "fold_bn_module",
    "fold_sequential",
    "freeze_bn",
    "recalibrate_bn",
    "revert",
    "to_ghost",
]

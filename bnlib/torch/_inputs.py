"""What bnlib.torch accepts: CPU tensors, their dtypes, and torch's ``bias`` keyword.

The checks mirror ``torch.nn.functional.batch_norm`` on the CPU: float16, bfloat16,
float32 and float64 inputs; parameters and buffers of the input's dtype, or float32
for a float16 or bfloat16 input (computed in float32, as torch does).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from bnlib._checks import MixedDtypeError

__all__ = ["bias_kwargs"]

_LOW = (torch.float16, torch.bfloat16)
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# torch's BatchNorm layers took the ``bias`` keyword (an affine layer without a bias)
# only in recent versions; bnlib passes it only when a layer has no bias.
_HAS_BIAS = "bias" in inspect.signature(torch.nn.modules.batchnorm._NormBase).parameters


def bias_kwargs(bias: bool) -> dict[str, bool]:
    """``{}`` for a layer with a bias (the default everywhere), ``{"bias": False}``
    without one; TypeError where this torch has no such keyword."""
    if bias:
        return {}
    if not _HAS_BIAS:
        raise TypeError(
            f"bias=False needs a torch whose BatchNorm takes the bias keyword; "
            f"torch {torch.__version__} does not"
        )
    return {"bias": False}


def _numpy(t: torch.Tensor | None) -> Any:
    """A numpy view of a CPU tensor (shares memory), or None."""
    return None if t is None else t.detach().numpy()


def _check_tensor(input: Any, low_precision: bool = True) -> None:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if input.device.type != "cpu":
        raise TypeError(f"input must be on the CPU, got device {input.device}")
    if input.dtype not in (_FLOATS if low_precision else _FLOATS[2:]):
        kinds = "float16, bfloat16, float32 or float64" if low_precision else ""
        raise TypeError(
            f"input must be {kinds or 'float32 or float64'}, got {input.dtype}"
        )


def _check_same_dtype(input: torch.Tensor, *tensors: torch.Tensor | None) -> None:
    """As ``torch.nn.functional.batch_norm`` on the CPU: parameters and buffers, when
    given, are tensors of the input's dtype, or all float32 for a float16 or
    bfloat16 input."""
    given = [t for t in tensors if t is not None]
    for t in given:
        if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
            raise TypeError(
                f"weight, bias and the running statistics must be CPU tensors or "
                f"None, got {type(t).__name__} on {getattr(t, 'device', 'no device')}"
            )
    dtypes = {t.dtype for t in given}
    if dtypes <= {input.dtype} or (input.dtype in _LOW and dtypes == {torch.float32}):
        return
    found = ", ".join(sorted(str(d) for d in dtypes))
    raise MixedDtypeError(
        f"mixed dtype: the input is {input.dtype}, the parameters and buffers are "
        f"{found}; use one dtype (float32 parameters are allowed for a float16 or "
        "bfloat16 input)"
    )


def _working(t: torch.Tensor | None, low: bool) -> torch.Tensor | None:
    """float32 for a float16/bfloat16 computation (differentiable), else ``t``."""
    return t.float() if low and t is not None else t

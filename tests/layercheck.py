"""Checks shared by the tests that compare a bnlib torch layer with torch's own."""

from __future__ import annotations

import torch


def assert_same_state(ours: torch.nn.Module, ref: torch.nn.Module, tol: float) -> None:
    """Every entry of ``ref``'s state dict is in ``ours``, with the same value."""
    for key, value in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=0, atol=tol)


def assert_same_in_eval(
    ours: torch.nn.Module, ref: torch.nn.Module, x: torch.Tensor, tol: float
) -> None:
    """Switch both layers to evaluation mode; their outputs on ``x`` agree."""
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=tol)

"""A clear ImportError when a dependency of the book's tools is missing."""

from __future__ import annotations

import importlib.util

__all__ = ["require"]


def require(where: str, *modules: str) -> None:
    """Raise ImportError unless every one of ``modules`` can be imported.

    Parameters
    ----------
    where : str
        The bnbook subpackage that needs them, for the message.
    *modules : str
        Top-level module names, such as ``"sympy"``.
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"{where} needs {', '.join(missing)}, which is not installed; "
            "install the book's tools with: pip install -r requirements.txt"
        )

"""Optional dependencies: a clear ImportError that names the extra to install."""

from __future__ import annotations

import importlib.util

__all__ = ["require"]


def require(where: str, extra: str, *modules: str) -> None:
    """Raise ImportError unless every one of ``modules`` can be imported.

    Parameters
    ----------
    where : str
        The bnlib subpackage that needs them, for the message.
    extra : str
        The ``pip install "bnlib-batchnorm[extra]"`` that provides them.
    *modules : str
        Top-level module names, such as ``"torch"``.
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"{where} needs {', '.join(missing)}, which is not installed; "
            f'install it with: pip install "bnlib-batchnorm[{extra}]"'
        )

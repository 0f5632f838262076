"""The book's derivations: SymPy proofs of the gradient identities and their helpers.

Not part of bnlib's library API: the chapter "Deriving the gradients" builds on
these. Needs the ``sympy`` extra (``pip install "bnlib[sympy]"``).
"""

from bnlib._extras import require

require("bnlib.derive", "sympy", "sympy")

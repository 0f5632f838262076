"""The book's derivations: SymPy proofs of the gradient identities and their helpers.

Not part of bnlib's library API: the chapter "Deriving the gradients" builds on
these. Installs with the book (``pip install -r requirements.txt``).
"""

from bnbook._extras import require

require("bnbook.derive", "sympy")

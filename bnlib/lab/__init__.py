"""The book's experiment kit: data, small networks, training loops and measurements.

Not part of bnlib's library API: these are the tools the chapters of *How Batch
Normalization Works* run their experiments with. Needs the ``book`` extra
(``pip install "bnlib[book]"``: torch, scikit-learn, scipy, matplotlib).
"""

from bnlib._extras import require

require("bnlib.lab", "book", "torch", "sklearn", "scipy")

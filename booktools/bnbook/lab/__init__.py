"""The book's experiment kit: data, small networks, training loops and measurements.

Not part of bnlib's library API: these are the tools the chapters of *How Batch
Normalization Works* run their experiments with. Installs with the book
(``pip install -r requirements.txt``: torch, scikit-learn, scipy, matplotlib).
"""

from bnbook._extras import require

require("bnbook.lab", "torch", "sklearn", "scipy")

"""The book's tools, apart from the library: experiments, derivations, benchmark.

- ``bnbook.lab``: the experiment kit (data, small networks, training over seeds).
- ``bnbook.derive``: the SymPy derivations and the proof ledger's records.
- ``bnbook.bench``: the speed benchmark, ``python -m bnbook.bench``.
- ``bnbook.sync_timing``: SyncBatchNorm timings under ``torchrun``.

They install with the book (``pip install -r requirements.txt``), not with bnlib.
"""

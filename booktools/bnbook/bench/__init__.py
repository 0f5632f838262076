"""The book's speed benchmark: ``python -m bnbook.bench``.

Not part of bnlib's library API. It times bnlib against PyTorch's CPU kernel (when
torch is installed) and a textbook numpy version; the chapter "How fast is bnlib?"
explains the method.
"""

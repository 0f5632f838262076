"""``python -m bnlib.bench``: run the speed benchmark and print its report."""

from bnlib.bench.runner import main

raise SystemExit(main())

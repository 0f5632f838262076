"""``python -m bnbook.bench``: run the speed benchmark and print its report."""

from bnbook.bench.runner import main

raise SystemExit(main())

"""``python bench/run.py [--only batch|cold|warm|backlog] [--quick] [--strict]``: what ``make bench``
runs; the same as ``python -m bench``. The benchmarks are the ``bench`` package (see its
``__init__``)."""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, Python puts bench/ first on the path: the package is imported from the
    # checkout instead, so that its modules are not taken for top-level ones.
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from bench.main import main

    sys.exit(main())

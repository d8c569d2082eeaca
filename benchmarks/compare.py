"""One-run comparison of lowrank_core against plain numpy, scipy.sparse and PyTorch.

Same data, same process, alternating runs, medians; prints a markdown table with the
machine it ran on and the command to re-run it. The implementation lives in
``lowrank_core.comparison`` so that the installed package (``lowrank-core bench``) can
run it too; this script is its command line.

    python benchmarks/compare.py                  # the issues' sizes (several minutes)
    python benchmarks/compare.py --quick          # small sizes, well under a minute
    python benchmarks/compare.py --kinds dense symmetric --dtypes float64 --no-solves
    python benchmarks/compare.py --help
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")  # before numpy: see lowrank_core/__init__

from lowrank_core.comparison import main, run_comparison  # noqa: F401  (re-exported)

if __name__ == "__main__":
    sys.exit(main())

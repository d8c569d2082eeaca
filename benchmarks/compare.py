"""The benchmark harness's command line: lowrank_core against what a user would write.

    python benchmarks/compare.py [all] [options]     # the one-run comparison: every operator
                                                     # kind's product and every method's time
                                                     # to accuracy vs numpy/scipy.sparse/torch
    python benchmarks/compare.py dense [options]     # dense products vs float64 numpy, GB/s
    python benchmarks/compare.py structured [...]    # sparse / entries / rank-one products
    python benchmarks/compare.py solvers [options]   # time to 1e-10 error vs numpy, overhead
    python benchmarks/compare.py distributed [...]   # Dask sharding overhead and scale-out
    python benchmarks/compare.py SUBCOMMAND --help

Without a subcommand (or with options only) it runs ``all``: ``--quick`` for small sizes
(well under a minute), ``--kinds``, ``--dtypes``, ``--methods``, ``--threads``, ``--output``.
The same commands run as ``lowrank-core bench [SUBCOMMAND] [options]`` from a source
checkout (``pip install -e ".[bench]"``). The implementation is the ``harness`` package
next to this script (not installed with lowrank_core).
"""

from __future__ import annotations

import os
import sys

#: subcommand -> (harness module, one-line description)
SUBCOMMANDS = {
    "all": ("comparison", "one-run comparison: every kind's product, every method's solve"),
    "dense": ("dense", "dense products against float64 numpy, bytes of A per second"),
    "structured": ("structured", "sparse, entrywise and rank-one products vs numpy/scipy"),
    "solvers": ("solvers", "time to 1e-10 error against the numpy loops; driver overhead"),
    "distributed": ("sharded", "Dask sharding: overhead per iteration and a scale-out run"),
}

_HERE = os.path.dirname(os.path.abspath(__file__))


def _prepare_environment(command: str, argv: list[str]) -> None:
    """Environment that must be set before numpy loads its BLAS (no-op once it has)."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")  # see lowrank_core/__init__
    # structured --threads N: reach OpenBLAS and the OpenMP default without threadpoolctl
    if command == "structured" and "--threads" in argv[:-1]:
        n = argv[argv.index("--threads") + 1]
        os.environ["OPENBLAS_NUM_THREADS"] = n
        os.environ["OMP_NUM_THREADS"] = n


def split_command(argv: list[str]) -> tuple[str, list[str]]:
    """(subcommand, its arguments); no subcommand (or options first) means "all"."""
    if argv and argv[0] in SUBCOMMANDS:
        return argv[0], argv[1:]
    return "all", argv


def usage(prog: str) -> str:
    lines = [f"usage: {prog} [{{{','.join(SUBCOMMANDS)}}}] [options]", "",
             "subcommands (default: all):"]
    lines += [f"  {name:<12} {text}" for name, (_, text) in SUBCOMMANDS.items()]
    lines += ["", f"'{prog} SUBCOMMAND --help' lists a subcommand's options."]
    return "\n".join(lines)


def main(argv=None, prog: str | None = None) -> int:
    """Run a subcommand of the harness; returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or "python benchmarks/compare.py"
    if argv[:1] in (["-h"], ["--help"]) and len(argv) == 1:
        print(usage(prog))
        print()
    command, rest = split_command(argv)
    _prepare_environment(command, rest)
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    import importlib

    module = importlib.import_module(f"harness.{SUBCOMMANDS[command][0]}")
    sub_prog = prog if command == "all" and argv[:1] != ["all"] else f"{prog} {command}"
    return int(module.main(rest, prog=sub_prog) or 0)


def build_parser(argv: list[str], prog: str | None = None):
    """The argparse parser of the subcommand ``argv`` selects (for validation)."""
    command, _ = split_command(argv)
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    import importlib

    module = importlib.import_module(f"harness.{SUBCOMMANDS[command][0]}")
    prog = prog or "python benchmarks/compare.py"
    return module.build_parser(prog if command == "all" and argv[:1] != ["all"]
                               else f"{prog} {command}")


if __name__ == "__main__":
    sys.exit(main())

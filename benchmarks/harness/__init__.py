"""The benchmark harness of lowrank_core (not installed with the package).

One place for what every benchmark needs:

* :mod:`.problems` — operator kinds, method lists, problem sizes and fixed-seed problems
  (also used by the asv suite in ``benchmarks/benchmarks``);
* :mod:`.references` — what a user would otherwise write: the per-iteration product of
  every operator kind in numpy, scipy.sparse and PyTorch (when installed), and ONE plain
  numpy loop per method of :func:`lowrank_core.solve` (the tests keep their own,
  independent copy);
* :mod:`.timing` — alternating runs and medians, thread pinning, the machine line;
* one module per report: :mod:`.comparison` (the one-run comparison, every kind and
  method), :mod:`.dense`, :mod:`.structured`, :mod:`.solvers`, :mod:`.distributed`.

The command line is ``python benchmarks/compare.py [all|dense|structured|solvers|
distributed] [options]`` (also ``lowrank-core bench ...`` from a source checkout).
"""

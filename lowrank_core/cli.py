r"""The ``lowrank-core`` command line (also ``python -m lowrank_core``).

Subcommands:

* ``demo`` — the main job: an over-parameterized sensing problem solved by five methods,
  a table of the outcomes and, with ``--plot FILE``, the convergence plot;
* ``solve`` — one solve of a problem read from a ``.npz`` file (format:
  :mod:`lowrank_core.problem_io`) or generated from flags; writes the factors (``.npz``)
  and a JSON summary with the per-iteration history;
* ``reproduce NAME`` / ``reproduce --list`` — the source papers' experiments
  (:mod:`lowrank_core.experiments`), each writing CSV + PNG and printing a measured verdict;
* ``bench`` — the benchmark harness of a source checkout (``benchmarks/compare.py``):
  every operator kind and method against numpy, scipy.sparse and PyTorch.

Every error (unknown command, bad flag, missing or malformed file, invalid option) is one
line on stderr and a non-zero exit status: 2 for usage errors, 1 for everything else.
Set ``LOWRANK_CORE_DEBUG=1`` to get the full traceback instead.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import stat
import sys
import warnings

import numpy as np

__all__ = ["CLIError", "build_parser", "main"]

PROG = "lowrank-core"


class CLIError(Exception):
    """A user error: reported as one line on stderr, exit status 1."""


class _UsageError(Exception):
    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage block) and never exit."""

    def error(self, message):
        raise _UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")

    def exit(self, status=0, message=None):
        if message:
            sys.stderr.write(message)
        raise _UsageError("", status)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    text = " ".join(str(message).split())
    (file or sys.stderr).write(f"{PROG}: warning: {text}\n")


def _log(text):
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- demo
def _cmd_demo(args) -> int:
    from .experiments import run_demo

    if args.plot:
        from .plotting import figure_format, require_matplotlib
        require_matplotlib()
        try:
            figure_format(args.plot)
        except ValueError as exc:
            raise CLIError(f"--plot: {exc}") from None
        _check_writable(args.plot)
    demo = run_demo(quick=args.quick, seed=args.seed, n_threads=args.threads,
                    max_iter=args.max_iter)
    print(f"{PROG} demo: {demo.setting}")
    print()
    width = max(len(label) for label, _ in demo.runs)
    print(f"{'method':<{width}}  {'iterations':>10}  {'time [s]':>8}  {'rel. error':>10}  status")
    for label, res in demo.runs:
        print(f"{label:<{width}}  {res.n_iter:>10d}  {res.time:>8.2f}  {res.error:>10.2e}  "
              f"{res.status}")
    print()
    print(f"total {demo.seconds:.1f} s; relative error = ||F G^T - M*||_F / ||M*||_F")
    if args.plot:
        from .plotting import plot_results
        plot_results(demo.runs, args.plot, x=args.x, title=demo.title, dpi=args.dpi)
        print(f"convergence plot written to {args.plot}")
    return 0


# ------------------------------------------------------------------------------ solve
def _parse_option(text):
    if "=" not in text:
        raise CLIError(f"--option expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    key = key.strip().replace("-", "_")
    v = value.strip()
    if v.lower() in ("none", "null"):
        return key, None
    try:
        return key, int(v)
    except ValueError:
        pass
    try:
        return key, float(v)
    except ValueError:
        return key, v


def _check_writable(path):
    """CLIError now (before any solve) unless ``path`` can be written.

    The parent directory must exist, the path must not be a directory, FIFO or socket, and
    opening it for appending must succeed (a file created by this probe is removed again):
    e.g. ``--summary /proc/s.json`` is refused up front instead of after the solve.
    """
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CLIError(f"cannot write {path}: directory {parent} does not exist")
    existed = os.path.lexists(path)
    if existed:
        mode = os.stat(path).st_mode if os.path.exists(path) else 0
        if stat.S_ISDIR(mode):
            raise CLIError(f"cannot write {path}: is a directory")
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise CLIError(f"cannot write {path}: not a regular file (a FIFO or socket)")
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
    if not existed:
        try:
            os.remove(path)
        except OSError:
            pass


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def _problem_from_flags(args):
    from .problems import make_problem

    dtype = np.float32 if args.dtype == "float32" else np.float64
    return make_problem(args.n1, args.n2, rank=args.true_rank, m=args.m,
                        operator=args.operator, psd=args.psd, cond=args.cond,
                        noise=args.noise, dtype=dtype, seed=args.problem_seed,
                        n_threads=args.threads)


def _cmd_solve(args) -> int:
    from . import problem_io
    from .driver import solve

    options = dict(_parse_option(o) for o in (args.option or []))
    if "reg" in options:
        raise CLIError("pass the ridge weight as --reg LAMBDA, not -o reg=...")
    if args.problem is not None:
        generated_flags = [f for f in ("n1", "n2", "m", "true_rank", "operator", "psd",
                                       "cond", "noise", "dtype", "problem_seed")
                           if getattr(args, f) != _SOLVE_DEFAULTS[f]]
        if generated_flags:
            raise CLIError("problem-generation flags (" + ", ".join(
                "--" + f.replace("_", "-") for f in generated_flags)
                + f") cannot be combined with a problem file ({args.problem})")
        loaded = problem_io.load_problem(args.problem)
        op, y, truth = loaded.operator, loaded.y, loaded.truth
        if args.threads is not None:
            op.n_threads = args.threads
        true_rank = loaded.rank
        source = f"{args.problem} ({loaded.kind}, m={op.m}, shape {op.shape[0]}x{op.shape[1]})"
    else:
        if args.n2 is not None and args.psd and args.n2 != args.n1:
            raise CLIError("--psd needs a square problem (--n2 equal to --n1 or omitted)")
        prob = _problem_from_flags(args)
        op, y, truth = prob.operator, prob.y, prob.truth_factors
        true_rank = prob.rank
        source = (f"generated: {args.operator}, n1={op.shape[0]}, n2={op.shape[1]}, "
                  f"rank {prob.rank}, m={op.m}, psd={args.psd}, cond={args.cond:g}, "
                  f"noise={args.noise:g}, {args.dtype}, seed {args.problem_seed}")
        if args.save_problem:
            _check_writable(args.save_problem)
    k = args.rank if args.rank is not None else true_rank
    if k is None:
        raise CLIError("--rank is required: the problem file has no truth factors to take "
                       "the rank from")
    init_scale = None
    if args.init_scale is not None:
        if len(args.init_scale) > 2:
            raise CLIError("--init-scale takes one value (alpha) or two (alpha_F alpha_G)")
        init_scale = args.init_scale[0] if len(args.init_scale) == 1 else tuple(args.init_scale)
    out = args.out
    if not out.endswith(".npz"):
        out += ".npz"   # what numpy.savez writes: print and record the real name
    summary = args.summary or os.path.splitext(out)[0] + ".json"
    _check_writable(out)
    _check_writable(summary)
    progress = args.progress
    if progress is None:
        from .methods import METHODS
        cap = METHODS[args.method].default_max_iter if args.max_iter is None \
            else args.max_iter
        progress = sys.stderr.isatty() and cap >= 200
    record = {"every": args.record_every} if args.record_every != 1 else None
    res = solve(op, y, k, method=args.method, symmetric=args.symmetric, init=args.init,
                init_scale=init_scale, step=args.step, max_iter=args.max_iter, tol=args.tol,
                max_time=args.max_time, truth=truth, record=record, seed=args.seed,
                progress=progress, reg=args.reg, **options)

    if args.problem is None and args.save_problem:
        problem_io.save_problem(args.save_problem, prob)
    arrays = {"X": res["X"]} if res.symmetric else {"F": res["F"], "G": res["G"]}
    np.savez(out, **arrays)
    doc = {"problem": source, "factors_file": os.path.abspath(out)}
    for key in ("method", "status", "message", "n_iter", "loss", "residual", "error", "time",
                "init_time", "n_evaluations", "options"):
        if key in res:
            doc[key] = res[key]
    for key, value in res.items():
        if key not in doc and key not in ("X", "F", "G", "history"):
            doc[key] = value
    doc["symmetric"] = res.symmetric
    doc["history"] = {name: np.asarray(v).tolist() for name, v in res.history.items()}
    with open(summary, "w") as fh:
        json.dump(doc, fh, indent=1, default=_json_default, allow_nan=True)

    print(f"problem:    {source}")
    print(f"method:     {res.method} ({'X X^T' if res.symmetric else 'F G^T'}, k={k})")
    print(f"status:     {res.status}")
    print(f"message:    {res.message}")
    print(f"iterations: {res.n_iter}")
    print(f"time:       {res.time:.3f} s (+ {res.init_time:.3f} s initialization)")
    print(f"residual:   {res.residual:.6e} (||A(F G^T) - y|| / ||y||)")
    if "error" in res:
        print(f"error:      {res.error:.6e} (||F G^T - M*||_F / ||M*||_F)")
    print(f"factors:    {out}")
    print(f"summary:    {summary}")
    return 0 if res.status != "diverged" else 3


# -------------------------------------------------------------------------- reproduce
def _cmd_reproduce(args) -> int:
    from .experiments import EXPERIMENTS, run_experiment, write_outputs

    if args.list:
        if args.names:
            raise CLIError("--list takes no experiment names")
        width = max(len(n) for n in EXPERIMENTS)
        paper = None
        for name, exp in EXPERIMENTS.items():
            if exp.paper != paper:
                paper = exp.paper
                print(paper)
            print(f"  {name:<{width}}  {exp.summary}")
        return 0
    names = list(EXPERIMENTS) if args.all else args.names
    if not names:
        raise CLIError("name an experiment (see 'lowrank-core reproduce --list') or use --all")
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:  # a bad argument value: a usage error (status 2), like --method's
        near = difflib.get_close_matches(unknown[0], list(EXPERIMENTS), n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise _UsageError(f"{PROG} reproduce: error: unknown experiment {unknown[0]!r}{hint} "
                          "(choose from " + ", ".join(EXPERIMENTS) + "; see "
                          f"'{PROG} reproduce --list')")
    plot = not args.no_plot
    if plot:
        from .plotting import require_matplotlib
        require_matplotlib()
    os.makedirs(args.out, exist_ok=True)
    failed = 0
    for name in names:
        print(f"== {name} ({EXPERIMENTS[name].paper})"
              + (" [quick]" if args.quick else ""), flush=True)
        res = run_experiment(name, quick=args.quick, seed=args.seed, n_threads=args.threads,
                             log=_log if args.verbose else None)
        from .plotting import figure_dpi
        with figure_dpi(args.dpi):
            paths = write_outputs(res, args.out, plot=plot)
        print(f"setting: {res.setting}")
        for v in res.verdicts:
            print("verdict: " + v.line())
            failed += not v.holds
        print(f"wrote {', '.join(paths)} ({res.seconds:.1f} s)", flush=True)
    return 0


# ------------------------------------------------------------------------------ bench
#: Where to get the benchmark harness when this installation has no source tree beside it.
_BENCH_HOWTO = ("the benchmark harness lives in the source repository's benchmarks/ folder "
                "and is not installed with the package: clone the repository, run "
                "'pip install -e \".[bench]\"' in it, then 'lowrank-core bench' (or pass "
                "--benchmarks-dir PATH/TO/benchmarks)")


def _split_benchmarks_dir(argv: list) -> tuple:
    """(``--benchmarks-dir`` value or None, the other arguments)."""
    rest, explicit = [], None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--benchmarks-dir":
            if i + 1 >= len(argv):
                raise _UsageError(f"{PROG} bench: error: argument --benchmarks-dir: expected "
                                  f"one argument (see '{PROG} bench --help')")
            explicit = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--benchmarks-dir="):
            explicit = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return explicit, rest


def _find_benchmarks(explicit) -> str:
    """The benchmarks/ folder: ``explicit``, else the one beside the package source (an
    editable install or a checkout on sys.path). Raises CLIError saying how to get it."""
    def usable(path):
        return (os.path.isfile(os.path.join(path, "compare.py"))
                and os.path.isfile(os.path.join(path, "harness", "__init__.py")))

    if explicit is not None:
        path = os.path.abspath(explicit)
        if not usable(path):
            raise CLIError(f"--benchmarks-dir {explicit}: no compare.py and harness/ there; "
                           f"{_BENCH_HOWTO}")
        return path
    package = os.path.dirname(os.path.realpath(__file__))
    path = os.path.join(os.path.dirname(package), "benchmarks")
    if not usable(path):
        raise CLIError(_BENCH_HOWTO)
    return path


def _cmd_bench(argv: list) -> int:
    """``lowrank-core bench [SUBCOMMAND] ARGS`` -> ``benchmarks/compare.py`` of the source tree.

    The arguments are validated first with the harness's own parser, made to report
    errors in one line like the rest of the command line.
    """
    import importlib.util

    explicit, argv = _split_benchmarks_dir(argv)
    path = _find_benchmarks(explicit)
    spec = importlib.util.spec_from_file_location("_lowrank_core_bench",
                                                  os.path.join(path, "compare.py"))
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    prog = f"{PROG} bench"
    if argv[:1] in (["-h"], ["--help"]):
        print(compare.usage(prog).replace(
            "[options]", "[--benchmarks-dir DIR] [options]", 1))
        print()
    parser = compare.build_parser(argv, prog)
    sub = compare.split_command(argv)[0]
    shown = parser.prog

    def one_line(message):
        raise _UsageError(f"{shown}: error: {message} (see '{shown} --help')")

    parser.error = one_line
    parser.parse_args(argv[1:] if argv[:1] == [sub] else argv)
    return int(compare.main(argv, prog=prog) or 0)


# ----------------------------------------------------------------------------- parser
_SOLVE_DEFAULTS = {"n1": 50, "n2": None, "m": 1500, "true_rank": 3, "operator": "dense",
                   "psd": False, "cond": 1.0, "noise": 0.0, "dtype": "float64",
                   "problem_seed": 0}


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _nonneg_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def _operator_name(text):
    from .problems import operator_name
    try:
        return operator_name(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _method_choice(text):
    from .driver import _method_name
    try:
        return _method_name(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _max_iter_defaults(methods) -> str:
    """'gd, onestep 10000; ...; gnmr, als 1000': each method's ``default_max_iter``,
    methods with the same cap grouped, largest cap first (the --max-iter help text)."""
    groups: dict = {}
    for name, cls in methods.items():
        groups.setdefault(int(cls.default_max_iter), []).append(name)
    return "; ".join(f"{', '.join(names)} {cap}"
                     for cap, names in sorted(groups.items(), reverse=True))


def _dpi(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer dpi, got {text!r}") from None
    if not 20 <= v <= 2400:
        raise argparse.ArgumentTypeError(f"dpi must be between 20 and 2400, got {v}")
    return v


def _step_value(text):
    if text in ("auto", "fixed"):
        return text
    return _positive_float(text)


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (v > 0 and np.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _nonneg_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (v >= 0 and np.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def _threads(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v == 0:
        raise argparse.ArgumentTypeError("0 threads: use a positive count, or -1 for all")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``lowrank-core`` with its four subcommands."""
    from . import __version__
    from .experiments import EXPERIMENTS
    from .initialization import INITS
    from .methods import METHODS
    from .problem_io import FORMAT_HELP
    from .problems import OPERATOR_NAMES

    fmt = argparse.RawDescriptionHelpFormatter
    ap = _Parser(prog=PROG, formatter_class=fmt,
                 description="Low-rank matrix recovery from linear measurements with "
                             "factorized gradient methods.",
                 epilog="Run '%(prog)s COMMAND --help' for the options of a command. "
                        "Start with '%(prog)s demo'.")
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    threads_help = "OpenMP threads of the kernels (default: OpenMP's default; -1 = all)"

    # demo
    d = sub.add_parser("demo", formatter_class=fmt,
                       help="over-parameterized sensing solved by five methods (the main job)",
                       description="An over-parameterized PSD sensing problem (n=50, rank 3, "
                                   "k=5, m=1500 Gaussian measurements) solved by symmetric "
                                   "GD, asymmetric GD, onestep, PrecGD and AGN from the same "
                                   "small random initialization; prints iterations, time, "
                                   "final relative error and status per method.")
    d.set_defaults(_parser=d)
    d.add_argument("--plot", metavar="FILE",
                   help="save the convergence plot (relative error, log scale): .png, or "
                        ".pdf/.svg for vector output")
    d.add_argument("--dpi", type=_dpi, default=None,
                   help="resolution of a PNG plot (default 150)")
    d.add_argument("--x", choices=("iteration", "time"), default="iteration",
                   help="horizontal axis of the plot: iteration (default) or wall-clock "
                        "time [s] (history['time'])")
    d.add_argument("--quick", action="store_true",
                   help="a small problem (n=20, 150 iterations; seconds)")
    d.add_argument("--max-iter", type=_nonneg_int, default=None,
                   help="iterations per method (default 1000; quick 150)")
    d.add_argument("--seed", type=_nonneg_int, default=0, help="seed (default 0)")
    d.add_argument("--threads", type=_threads, default=None, help=threads_help)
    d.set_defaults(func=_cmd_demo)

    # solve
    s = sub.add_parser(
        "solve", formatter_class=fmt,
        help="solve one problem from a .npz file or generated from flags",
        description="Solve one problem: read from a .npz file, or generated from the "
                    "problem flags when no file is given. Writes the factors (--out, .npz with "
                    "X, or F and G) and a JSON summary (--summary) with the status, the final "
                    "metrics, every option used and the per-iteration history.",
        epilog=FORMAT_HELP + "\n\nexamples:\n"
               "  lowrank-core solve --n1 60 --true-rank 2 --m 1200 --method precgd --rank 4 "
               "--symmetric --psd\n"
               "  lowrank-core solve problem.npz --method agn --rank 5 --out fit.npz\n"
               "  lowrank-core solve --save-problem p.npz --max-iter 0   # just write a problem")
    s.add_argument("problem", nargs="?", metavar="PROBLEM.npz",
                   help="problem file (format below); omit to generate one from the flags")
    g = s.add_argument_group("generated problem (no file)")
    g.add_argument("--n1", type=_positive_int, default=_SOLVE_DEFAULTS["n1"],
                   help="rows (default 50)")
    g.add_argument("--n2", type=_positive_int, default=None, help="columns (default n1)")
    g.add_argument("--m", type=_positive_int, default=_SOLVE_DEFAULTS["m"],
                   help="measurements (default 1500)")
    g.add_argument("--true-rank", type=_positive_int, default=_SOLVE_DEFAULTS["true_rank"],
                   help="rank of the truth (default 3)")
    g.add_argument("--operator", type=_operator_name, default=_SOLVE_DEFAULTS["operator"],
                   metavar="{" + ",".join(OPERATOR_NAMES) + "}",
                   help="operator kind, as in make_problem and the file format (default "
                        "dense: Gaussian A_i; 'gaussian' is accepted for dense)")
    g.add_argument("--psd", action="store_true",
                   help="PSD truth (symmetric A_i for the gaussian operator)")
    g.add_argument("--cond", type=_positive_float, default=1.0,
                   help="condition number sigma_1/sigma_r of the truth (default 1)")
    g.add_argument("--noise", type=_nonneg_float, default=0.0,
                   help="std of Gaussian noise on each measurement (default 0)")
    g.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    g.add_argument("--problem-seed", type=_nonneg_int, default=0,
                   help="seed of the generated problem (default 0)")
    g.add_argument("--save-problem", metavar="FILE.npz",
                   help="also write the generated problem in the file format")
    m = s.add_argument_group("solver")
    m.add_argument("--method", type=_method_choice, default="gd",
                   metavar="{" + ",".join(METHODS) + "}",
                   help="(default gd; case-insensitive, '_' for '-' accepted)")
    m.add_argument("--rank", "-k", type=_positive_int, default=None,
                   help="factor width k (default: the truth's rank)")
    m.add_argument("--symmetric", action="store_true", help="factor as X X^T (PSD target)")
    m.add_argument("--init", choices=list(INITS), default=None,
                   help="initialization (default: the method's, spectral or small)")
    m.add_argument("--init-scale", type=_positive_float, nargs="+", metavar="ALPHA",
                   help="alpha of init small/nystrom; two values give (alpha_F, alpha_G)")
    m.add_argument("--step", type=_step_value, default="auto",
                   help="'auto' (exact line search, default), 'fixed' (the method's fixed "
                        "step) or a positive number")
    m.add_argument("--max-iter", type=_nonneg_int, default=None,
                   help="iteration cap (default: the method's own, as solve() with "
                        "max_iter=None: " + _max_iter_defaults(METHODS) + ")")
    m.add_argument("--tol", type=_positive_float, default=None,
                   help="stop at relative residual <= tol (default 1e-10; float32 1e-5)")
    m.add_argument("--max-time", type=_positive_float, default=None, help="seconds")
    m.add_argument("--reg", type=_nonneg_float, default=0.0, metavar="LAMBDA",
                   help="ridge weight: the loss gains LAMBDA/2 (||F||^2 + ||G||^2) "
                        "(solve(reg=); default 0, for noisy data > 0)")
    m.add_argument("--option", "-o", action="append", metavar="KEY=VALUE",
                   help="method option, e.g. trigger=0.05, damping=gradient (repeatable)")
    m.add_argument("--seed", type=_nonneg_int, default=0,
                   help="seed of the initialization (default 0)")
    m.add_argument("--threads", type=_threads, default=None, help=threads_help)
    o = s.add_argument_group("output")
    o.add_argument("--out", default="solution.npz", metavar="FILE.npz",
                   help="factors (default solution.npz)")
    o.add_argument("--summary", metavar="FILE.json", default=None,
                   help="JSON summary with the history (default: --out with .json)")
    o.add_argument("--record-every", type=_positive_int, default=1,
                   help="history every N iterations (default 1)")
    pg = o.add_mutually_exclusive_group()
    pg.add_argument("--progress", dest="progress", action="store_true", default=None,
                    help="progress bar (tqdm if installed; default: on a terminal)")
    pg.add_argument("--no-progress", dest="progress", action="store_false")
    s.set_defaults(func=_cmd_solve, _parser=s)

    # reproduce
    lines = "\n".join(f"  {n:<17} {e.summary}" for n, e in EXPERIMENTS.items())
    r = sub.add_parser("reproduce", formatter_class=fmt,
                       help="reproduce an experiment of the source papers",
                       description="Run an experiment of the source papers, write its CSV "
                                   "tables and PNG figure into --out, and print the measured "
                                   "verdict for each claim.",
                       epilog="experiments:\n" + lines)
    r.add_argument("names", nargs="*", metavar="NAME", help="experiment(s) to run")
    r.add_argument("--list", action="store_true", help="list the experiments")
    r.add_argument("--all", action="store_true", help="run every experiment")
    r.add_argument("--quick", action="store_true",
                   help="small sizes (seconds each; verdicts say 'not checked at --quick size')")
    r.add_argument("--out", default="figures", metavar="DIR",
                   help="output folder (default ./figures)")
    r.add_argument("--seed", type=_nonneg_int, default=0, help="(default 0)")
    r.add_argument("--threads", type=_threads, default=None, help=threads_help)
    r.add_argument("--no-plot", action="store_true", help="CSV only (no matplotlib needed)")
    r.add_argument("--dpi", type=_dpi, default=None,
                   help="resolution of the PNG figures (default 150)")
    r.add_argument("--verbose", "-v", action="store_true", help="one line per run on stderr")
    r.set_defaults(func=_cmd_reproduce, _parser=r)

    # bench (forwarded to benchmarks/compare.py of the source tree; see _cmd_bench)
    sub.add_parser("bench", add_help=False,
                   help="lowrank_core against numpy / scipy.sparse / PyTorch (benchmark "
                        "harness of a source checkout; 'bench --help' for its options)")
    return ap


# ------------------------------------------------------------------------------- main
def _unrecognized(parser, extra) -> str:
    """The usage error for arguments ``parser`` (a subcommand's) does not know: each
    unknown flag with the nearest flag of that subcommand (``--max_iter``: did you mean
    --max-iter?)."""
    flags = [o for action in parser._actions for o in action.option_strings
             if o.startswith("--")]
    hints = []
    for arg in extra:
        if not arg.startswith("-"):
            continue
        name = arg.split("=", 1)[0]
        near = difflib.get_close_matches(name.replace("_", "-"), flags, n=1, cutoff=0.6)
        if near:
            hints.append(f"{name}: did you mean {near[0]}?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    return (f"{parser.prog}: error: unrecognized arguments: {' '.join(extra)}{hint} "
            f"(see '{parser.prog} --help')")


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 success, 1 error, 2 usage)."""
    debug = bool(os.environ.get("LOWRANK_CORE_DEBUG"))
    argv = list(sys.argv[1:] if argv is None else argv)
    from .plotting import PlottingUnavailable
    from .problem_io import ProblemFileError

    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _one_line_warning
        try:
            if argv[:1] == ["bench"]:
                return _cmd_bench(argv[1:])
            parser = build_parser()
            args, extra = parser.parse_known_args(argv)
            if extra:
                raise _UsageError(_unrecognized(args._parser, extra))
            return int(args.func(args))
        except _UsageError as exc:
            if str(exc):
                print(str(exc), file=sys.stderr)
            return exc.status
        except SystemExit as exc:  # e.g. --help of a forwarded parser
            code = exc.code
            return code if isinstance(code, int) else (0 if code is None else 1)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except (CLIError, PlottingUnavailable, ProblemFileError) as exc:
            if debug:
                raise
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        except BrokenPipeError:
            return 1
        except Exception as exc:  # one line, never a traceback
            if debug:
                raise
            text = " ".join(str(exc).split()) or type(exc).__name__
            print(f"{PROG}: error: {text} ({type(exc).__name__}; set LOWRANK_CORE_DEBUG=1 "
                  f"for the traceback)", file=sys.stderr)
            return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

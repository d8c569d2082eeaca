r"""Alternating least squares (ALS / AltMin) for f(F, G) = 1/2 ||A(F G^T) - y||^2.

One iteration (Gauss-Seidel order), with a ridge lam >= 0 (option ``damping``):

    F <- argmin_F 1/2 ||A(F G^T) - y||^2 + lam/2 ||F||_F^2,
    G <- argmin_G 1/2 ||A(F G^T) - y||^2 + lam/2 ||G||_F^2     (with the new F).

The default ``damping="auto"`` is a ridge that vanishes with the residual, so the exact
solution stays a fixed point: for the half-step with fixed factor G,

    lam_t = c rho_t^2 g(G),   rho_t = ||A(F_t G_t^T) - y|| / ||y|| (both half-steps),
    g(G) = s^2 p ||G||_F^2 / k (completion, p = m / (n1 n2)) or ||G||_F^2 / k (others),

g the mean diagonal of the expected Gram matrix E[s^2 G_Omega_i^T G_Omega_i], so lam_t is
relative to the row systems and invariant to the scale of y and of the factors; c =
``damping_scale`` (1). Why: plain ALS (``damping=0``) can follow a path to infinity. Measured
on completion 300 x 350, r = 5, cond 10, OS 2.5 (seeds 0-4, spectral start,
tol 1e-10): plain ALS recovered 2/5; on the 3 others one column G_j grows without bound
(||G|| 5.6 after 20 iterations, 38 after 100, 121 after 300; error 250 after 5000) along a
near-null direction of F restricted to that column's rows, each half-step reinforcing the
other. The vanishing ridge bounds that growth and recovers 5/5 in 67-71 iterations
(benchmarks in docs/benchmarks.rst). A ridge proportional to rho_t (not rho_t^2) stalls
at a spurious fixed point (rho about 5e-2 at c = 1); a proximal term mu ||F - F_t||^2
slows the growth but did not stop it on 1 seed of 5. ``damping=`` a number is the
fixed ridge; ``result.ridge`` holds each iteration's lam (F half-step) and
``result.options["ridge_gram_scale"]`` the factor s^2 p (1 for other operators).

Matrix completion (:class:`~lowrank_core.EntryOperator`, A(M)_e = s M[r_e, c_e]) separates
by row: with Omega_i the observed columns of row i,

    F_i = (s^2 G_{Omega_i}^T G_{Omega_i} + lam I)^{-1} s G_{Omega_i}^T y_{Omega_i},

one k x k Cholesky per row, and the same per column of G with the entries grouped by
column. The compiled kernel ``lowrank_core._als.solve_rows`` runs the rows in parallel
(fixed row ranges balanced by entry count; bitwise independent of the thread count); per
row it gathers the observed G rows into a contiguous block and forms the Gram matrix and
right-hand side by BLAS gemm/gemv, then LAPACK potrf/potrs (src/_als.pyx).
On an operator with a cache-blocked layout, option ``layout="blocked"`` runs both
half-steps over its tiles instead (:class:`TileSolves`, src/_als_blocked.pyx.tp): per row
block, the rows' Gram matrices and right-hand sides are accumulated tile by tile (the
fixed rows an entry reads lie in the tile's column slice, not at random in the whole
factor), then each row is solved by the same finishing code; the G half-step walks a
transposed copy of the tiles, built once per solve. No row layout, no groupings:
(4 + itemsize) m bytes for the transposed tiles against 2 m index words for the
operator's row layout and 4 m for the groupings (plus their argsort) on the row path.
``layout="auto"`` (the default) takes this path on a from_entries blocked operator
(whose measurement order is the tiles': nothing to build or permute besides the
transposed tiles) and the row path on every other: at n1 = n2 = 1e6, k = 10, 2 threads,
1e8 observations, 19.2 against 24.9 CPU s per iteration, 6 s against 35 s of setup and
a 3.06 against 4.92 GiB peak (1e7: 4.6-5.2 against 5.6-5.7 CPU s; docs/benchmarks.rst,
benchmarks/als_scale.py).
``layout="rows"`` keeps the row path, ``"blocked"`` also takes a constructed
operator's blocked layout (y permuted into its order once per solve).
Singular rows (lam = 0 and fewer than k observations, or a rank-deficient
G_{Omega_i}; detected as a Cholesky pivot below ``rcond`` times the largest diagonal
entry) get the minimal-norm least-squares solution from the k x k eigendecomposition
(eigenvalues below ``rcond`` times the largest dropped); rows without observations get
0. Their count per iteration is in ``result.singular_rows``; rows and columns with fewer
than k observations (not determined by the data) are reported once by a RuntimeWarning
and counted in ``result.underdetermined_lines``. The column grouping is
built once per solve (O(m log m), 2 m index words). Cost per iteration:
4 m k (k + 1) flops for the Gram matrices (gemm forms both triangles) and right-hand
sides plus (n1 + n2) k^3 / 3 for the factorizations.

Every other operator: each half-step is the linear least-squares problem in n1 k (resp.
n2 k) unknowns, solved by conjugate gradients on its normal equations
H(D) = A^T(A(D G^T)) G + lam D = A^T(y) G, started at the current factor, with one
factored forward and one adjoint-products pass per CG iteration, stopped when the
normal-equations residual has dropped by ``cg_tol`` or after ``cg_max_iter`` iterations
(counted in ``result.cg_iterations``).

Why :class:`~lowrank_core.SparseOperator` stays on conjugate gradients: the F half-step
separates into independent k x k row systems only when every A_i touches ONE row of F
(A(F G^T)_i = sum over the nonzeros (j, l) of A_i of a_jl F_j . G_l couples every row j
that A_i touches), and the G half-step only when every A_i touches one column. The sparse
ensemble has ``s`` nonzeros per A_i at uniform positions (default 10), so with
probability 1 - (1/n1)^(s-1) an A_i couples s distinct rows: the normal matrix of the
half-step is block-sparse n1 k x n1 k with off-diagonal blocks wherever two rows share a
measurement, not block-diagonal. The only sparse operators that separate both ways have
one nonzero per A_i, i.e. weighted entries (y_i = a_i M[r_i, c_i]), which is completion
with per-entry weights; the row kernel takes a single scale, so those also run CG.

Ridge: ``solve(reg=lam)`` is this ``damping``: the half-steps above are then the exact
block minimizations of the regularized objective 1/2 ||A(F G^T) - y||^2 + lam/2 (||F||^2 +
||G||^2) that ``loss`` reports (``damping`` alone, the older spelling, damps the
half-steps but leaves the reported loss unregularized; passing both with different values
is an error).

Asymmetric only: in the symmetric form X X^T the subproblem in X is quartic, not a
least-squares problem. The default initialization is spectral (the AltMin analyses start
there; a zero or tiny G makes the first half-step singular). ``step`` is unused.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _kernels
from .._validation import check_positive_float
from ._base import StepFailure, StepRule
from .gnmr import adjoint_products_into, check_line_coverage, forward_factored_into

#: values of the ALS option ``layout`` (completion only; see :func:`tile_layout`)
LAYOUTS = ("auto", "rows", "blocked")


def _entry_operator_class():
    from .. import EntryOperator
    return EntryOperator


def _index_type(*sizes: int):
    return np.int32 if max(sizes) < 2 ** 31 - 1 else np.int64


def _group(keys: np.ndarray, n_groups: int, itype):
    """(ptr, order, sorted): a stable grouping of positions by key."""
    counts = np.bincount(keys, minlength=n_groups)
    ptr = np.zeros(n_groups + 1, itype)
    np.cumsum(counts, out=ptr[1:])
    if keys.size < 2 or bool(np.all(keys[1:] >= keys[:-1])):
        return ptr, None
    return ptr, np.argsort(keys, kind="stable").astype(itype)


def _row_bounds(ptr: np.ndarray, n_threads: int) -> np.ndarray:
    """Fixed row ranges of about equal entry counts, one per thread (deterministic)."""
    n = ptr.shape[0] - 1
    T = max(1, min(int(n_threads), n, int(ptr[-1]) // 2048 + 1))
    targets = np.round(np.arange(T + 1) * (float(ptr[-1]) / T)).astype(ptr.dtype)
    bounds = np.searchsorted(ptr, targets, side="left").astype(np.intp)
    bounds[0], bounds[-1] = 0, n
    return np.maximum.accumulate(bounds)


class _Grouping:
    """Observed entries grouped by the rows of one factor: ptr, other index, position."""

    def __init__(self, keys, others, n_groups, itype):
        ptr, order = _group(keys, n_groups, itype)
        self.ptr = ptr
        if order is None:
            self.idx = np.ascontiguousarray(others, dtype=itype)
            self.pos = np.zeros(1, itype)
            self.has_pos = False
        else:
            self.idx = np.ascontiguousarray(others[order], dtype=itype)
            self.pos = order
            self.has_pos = True


class RowSolves:
    """The compiled per-row ridge solves over one grouping of the observed entries.

    ``keys`` (m,) are the rows of the factor being solved for (n_groups of them),
    ``others`` (m,) the matching rows of the fixed factor. Builds once the grouping
    (O(m log m) unless the keys are sorted), the fixed per-thread row ranges and the
    per-thread scratch for width ``width``; :meth:`solve` then runs
    ``_als.solve_rows``: out_i <- argmin ||scale Fixed_Oi out_i - y_Oi||^2 + lam ||out_i||^2
    (the last ``n_unpenalized`` coordinates not penalized), O(m width^2 + n_groups width^3).
    """

    def __init__(self, keys, others, n_groups, itype, width, dtype, n_threads):
        from .. import _steps
        self.kernel = _kernels.load("_als")
        self.grouping = _Grouping(keys, others, n_groups, itype)
        self.bounds = _row_bounds(self.grouping.ptr, n_threads)
        self.lwork = int(_steps.eigen_workspace_size(width, dtype))
        self.work = np.empty((self.bounds.shape[0] - 1,
                              self.kernel.scratch_size(width, self.lwork)), dtype)

    def solve(self, y, fixed, out, scale, lam, rcond, n_unpenalized=0) -> int:
        """out <- the row solves against ``fixed`` (width columns); returns the number of
        rows solved by the pseudo-inverse (singular systems)."""
        g = self.grouping
        return int(self.kernel.solve_rows(g.ptr, g.idx, g.pos, g.has_pos, y, fixed, out,
                                          scale, lam, rcond, self.work, self.bounds,
                                          self.lwork, True, n_unpenalized))


class _TileHalf:
    """One half-step of :class:`TileSolves`: tiles of ``bo`` output rows x ``bf`` fixed
    rows (tptr, code) and y in their order."""

    def __init__(self, owner, tptr, code, y, bo, bf, n_in, bounds, sub):
        self.owner, self.tptr, self.code, self.y = owner, tptr, code, y
        self.bo, self.bf, self.n_in, self.bounds = int(bo), int(bf), int(n_in), bounds
        self.sub = int(bo) if not sub else max(1, min(int(sub), int(bo)))

    def solve(self, y, fixed, out, scale, lam, rcond, n_unpenalized=0) -> int:
        """out <- the row solves against ``fixed``; returns the singular rows' count."""
        o = self.owner
        if y is not o.y_source:
            o.set_y(y)      # refills self.y (both halves' y arrays are rebuilt)
        return int(o.kernel.solve_tiles(self.tptr, self.code, self.y, fixed, out, self.bo,
                                        self.bf, scale, lam, rcond, o.work, o.counts,
                                        self.bounds, o.lwork, n_unpenalized, self.sub))


class TileSolves:
    """Both half-steps of completion ALS over an EntryOperator's blocked tiles
    (``lowrank_core._als_blocked``, src/_als_blocked.pyx.tp): no row layout, no gather.

    The F half-step walks the operator's tiles (br x bc, by row block, then column block,
    each by row): per row block, each row's packed Gram matrix X_c X_c^T and right-hand
    side y_e X_c are accumulated in a per-thread workspace, then each row is solved by
    the row kernel's finishing code (ridge, potrf with the rcond pivot test, the
    pseudo-inverse of a singular row). The workspace holds ``sub_rows`` rows of k (k +
    1) / 2 + k values of the factor's dtype (the row kernel accumulates in it too):
    by default 1024 rows, 0.53 MB at k = 10 in float64, so it stays in L2; each pass
    takes its rows' part of each of the block's tiles (binary search on the sorted
    tile). ``sub_rows=0`` accumulates the whole row block at once (br rows: 34 MB at br
    = 65536, k = 10, float64): 1.4x the CPU at 1e7 observations, 1.5x the wall time at
    1e8 (docs/benchmarks.rst). The passes add the same products in the same order: the
    same bits. The G half-step walks the transposed layout
    (tiles by column block, then row block, each by column), built once per solve by one
    counting sort per tile, O(m + n_rb n2): a 32-bit code and y per entry, (4 +
    itemsize) m bytes (1.2 GB at m = 1e8, float64), plus 8 bytes per tile and the column
    counts (n2 int64), held by this object (freed with the solve). y is taken in the
    tiles' order (as stored for from_entries; permuted once, y[pos], for a constructed
    operator's layout). Threads own whole output blocks (fixed partitions balanced by
    entry count): bitwise independent of the thread count.
    """

    #: rows per accumulation pass (benchmarks/als_scale.py, n = 1e6, k = 10, 2 threads:
    #: the whole block's workspace, 65536 rows, 7.2 CPU s per iteration at 1e7 and
    #: 19.1 CPU s, 16.7 s wall at 1e8; passes of 1024 rows 5.2 and 19.2 CPU s, 11.2 s
    #: wall)
    SUB_ROWS = 1024

    def __init__(self, op, blocked, y, width, dtype, n_threads, sub_rows=SUB_ROWS):
        from .. import _steps
        from ..operators import _indexing as ix
        self.kernel = _kernels.load("_als_blocked")
        self.op, self.blocked = op, blocked
        n1, n2 = op.shape
        br, bc = blocked["shape"]
        self.n_rb, self.n_cb = -(-n1 // br), -(-n2 // bc)
        self.dtype = np.dtype(dtype)
        m = op.m
        self.tptr_t = np.empty(self.n_rb * self.n_cb + 1, np.int64)
        self.code_t = np.empty(m, np.uint32)
        self.y_t = np.empty(m, self.dtype)
        self.col_count = np.empty(n2, np.int64)
        self.by_row = _TileHalf(self, blocked["tptr"], blocked["code"], None, br, bc,
                                self.n_cb, ix.thread_bounds(np.ascontiguousarray(
                                    blocked["tptr"][::self.n_cb]), n_threads), sub_rows)
        self.set_y(y)       # fills the transposed layout
        self.by_col = _TileHalf(self, self.tptr_t, self.code_t, self.y_t, bc, br,
                                self.n_rb, ix.thread_bounds(np.ascontiguousarray(
                                    self.tptr_t[::self.n_rb]), n_threads), sub_rows)
        self.row_count = np.diff(op._ptr_r).astype(np.int64, copy=False)
        halves = (self.by_row, self.by_col)
        T = max(h.bounds.shape[0] for h in halves) - 1
        sub = max(h.sub for h in halves)
        self.lwork = int(_steps.eigen_workspace_size(width, self.dtype))
        self.work = np.empty((T, self.kernel.scratch_size(width, sub, self.lwork)),
                             self.dtype)
        self.counts = np.empty((T, max(h.sub + h.n_in for h in halves)), np.int64)

    def set_y(self, y) -> None:
        """Take the measurements y (the operator's order): y in the tiles' order for the
        F half-step and, in the transposed order, for the G half-step."""
        b = self.blocked
        self.y_source = y           # the caller's array (identity: y unchanged)
        y = np.ascontiguousarray(y, dtype=self.dtype)
        self.by_row.y = y if b["pos"] is None else y[b["pos"]]
        n1, n2 = self.op.shape
        br, bc = b["shape"]
        self.kernel.transpose_tiles(b["tptr"], b["code"], self.by_row.y, n1, n2, br, bc,
                                    self.tptr_t, self.code_t, self.y_t, self.col_count,
                                    np.empty(bc + 1, np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes held: the transposed layout, y permuted (a constructed layout only) and
        the per-thread workspaces."""
        extra = 0 if self.blocked["pos"] is None else self.by_row.y.nbytes
        return int(self.tptr_t.nbytes + self.code_t.nbytes + self.y_t.nbytes + extra
                   + self.col_count.nbytes + self.work.nbytes + self.counts.nbytes)


def tile_layout(op, k: int, layout: str):
    """The blocked layout the ALS tile path runs on, or None for the row path.

    ``layout`` is the ALS option: "rows" always None; "blocked" the operator's blocked
    layout for width k (built if needed; ValueError if the operator has none, e.g.
    ``layout="rows"``); "auto" only a from_entries blocked layout (the operator's
    measurement order is the tiles': nothing to build or permute).
    """
    if layout == "rows":
        return None
    if layout == "auto":
        b = op._blocked
        return b if (b is not None and b["pos"] is None) else None
    b = op._blocked_for(k)
    if b is None:
        raise ValueError("ALS option layout='blocked' needs an EntryOperator with a "
                         "blocked layout (EntryOperator.from_entries(..., layout="
                         "'blocked') or layout='blocked'); this one uses the row layout")
    return b


def auto_ridge(damping_scale, relres, gram_scale, fixed, k) -> float:
    """The vanishing ridge of ``damping="auto"`` for the half-step whose fixed factor is
    ``fixed``: damping_scale rho^2 gram_scale ||fixed||_F^2 / k (module docstring), 0 if
    not finite."""
    lam = damping_scale * relres * relres * gram_scale * float(np.vdot(fixed, fixed)) / k
    return lam if np.isfinite(lam) else 0.0


class AlternatingLeastSquares(StepRule):
    """Alternating least squares; see the module docstring for the math and options."""

    name = "als"
    summary = "alternating least squares (row-wise k x k solves for completion, CG otherwise)"
    forms = ("asymmetric",)
    default_step = 1.0
    default_init = "spectral"
    option_defaults = {"damping": "auto", "damping_scale": 1.0, "rcond": None,
                       "cg_tol": None, "cg_max_iter": 100, "layout": "auto"}
    #: the completion half-steps read y, the factors and the residual norm, never z: on
    #: a from_entries blocked operator the driver runs residual-free (no length-m z;
    #: the same loss bits). The CG path (other operators) has no residual-free kernels.
    needs_residual = False

    @classmethod
    def check_options(cls, options):
        opts = super().check_options(options)
        if not (isinstance(opts["damping"], str) and opts["damping"] == "auto"):
            opts["damping"] = check_positive_float(
                opts["damping"], "ALS option damping (the ridge lambda; 0: plain ALS, 'auto' "
                "the default: a ridge that vanishes with the squared relative residual)",
                allow_zero=True)
        opts["damping_scale"] = check_positive_float(
            opts["damping_scale"], "ALS option damping_scale (the c of damping='auto')",
            allow_zero=True)
        for name in ("rcond", "cg_tol"):
            v = opts[name]
            if v is not None and (isinstance(v, (bool, np.bool_))
                                  or not isinstance(v, numbers.Real) or not 0 < v < 1):
                raise ValueError(f"ALS option {name} must be None (default) or a number in "
                                 f"(0, 1), got {v!r}")
        mi = opts["cg_max_iter"]
        if isinstance(mi, (bool, np.bool_)) or not isinstance(mi, numbers.Integral) or mi < 1:
            raise ValueError(f"ALS option cg_max_iter must be a positive integer, got {mi!r}")
        opts["cg_max_iter"] = int(mi)
        if not (isinstance(opts["layout"], str) and opts["layout"] in LAYOUTS):
            raise ValueError(f"ALS option layout must be one of {LAYOUTS}, got "
                             f"{opts['layout']!r}")
        return opts

    @classmethod
    def check_reg(cls, reg, options):
        """reg is the ridge of the half-steps: damping = reg (a different damping: error)."""
        d = options.get("damping")
        if d is not None and not (isinstance(d, numbers.Real) and float(d) == reg):
            raise ValueError(f"ALS got reg={reg!r} and damping={d!r}: both are the ridge "
                             f"lambda of the half-steps; pass only reg")
        options["damping"] = reg
        return options

    def __init__(self, state, step, options, context):
        super().__init__(state, step, options, context)
        s = state
        eps = float(np.finfo(s.dtype).eps)
        if self.options["rcond"] is None:
            self.options["rcond"] = 10.0 * s.k * eps
        if self.options["cg_tol"] is None:
            self.options["cg_tol"] = 1e-10 if s.dtype == np.float64 else 1e-4
        self.singular_rows: list[int] = []
        self.cg_iterations: list[int] = []
        self.ridge: list[float] = []
        self.lam = 0.0
        op = s.operator
        self.rowwise = isinstance(op, _entry_operator_class())
        self.tiles = None
        blocked = tile_layout(op, s.k, self.options["layout"]) if self.rowwise else None
        if blocked is not None:
            # no row layout: the line counts come from the row pointers and the
            # transposed tiles
            self._setup_tiles(blocked)
            self.short_lines = check_line_coverage(
                op, s.k, "als", counts=(self.tiles.row_count, self.tiles.col_count))
        else:
            self.short_lines = check_line_coverage(op, s.k, "als")
            if self.rowwise:
                self._setup_rowwise()
            else:
                self._setup_cg()

    # ------------------------------------------------------------ completion rows
    def _setup_rowwise(self):
        s, op = self.state, self.state.operator
        n1, n2 = s.n1, s.n2
        itype = _index_type(n1, n2, op.m)
        rows = np.asarray(op.rows).astype(itype, copy=False)
        cols = np.asarray(op.cols).astype(itype, copy=False)
        nt = op.n_threads
        self.by_row = RowSolves(rows, cols, n1, itype, s.k, s.dtype, nt)
        self.by_col = RowSolves(cols, rows, n2, itype, s.k, s.dtype, nt)
        self.scale = float(op.scale)
        # E[C_i] = scale^2 p G^T G for uniform sampling (p = m / (n1 n2))
        self.gram_scale = self.scale ** 2 * op.m / (float(n1) * float(n2))
        self.options["ridge_gram_scale"] = self.gram_scale   # resolved, for the record

    def _setup_tiles(self, blocked):
        """The tile path (:class:`TileSolves`): both half-steps over the blocked layout."""
        s, op = self.state, self.state.operator
        self.tiles = TileSolves(op, blocked, s.y, s.k, s.dtype, op.n_threads)
        self.by_row, self.by_col = self.tiles.by_row, self.tiles.by_col
        self.scale = float(op.scale)
        self.gram_scale = self.scale ** 2 * op.m / (float(s.n1) * float(s.n2))
        self.options["ridge_gram_scale"] = self.gram_scale

    def ridge_weight(self, fixed) -> float:
        """lam of the half-step whose fixed factor is ``fixed`` (module docstring)."""
        lam = self.options["damping"]
        if lam != "auto":
            return lam
        s = self.state
        return auto_ridge(self.options["damping_scale"], s.residual_norm / s.y_norm,
                          self.gram_scale, fixed, s.k)

    def _solve(self, solves, other, out) -> int:
        self.lam = self.ridge_weight(other)
        return solves.solve(self.state.y, other, out, self.scale, self.lam,
                            self.options["rcond"])

    # ------------------------------------------------------------ general operators
    def _setup_cg(self):
        s = self.state
        self.gram_scale = 1.0   # near-isotropic operators: A^T A(D G^T) G ~ D G^T G
        self.options["ridge_gram_scale"] = self.gram_scale
        n, k, dt = max(s.n1, s.n2), s.k, s.dtype
        self._cg = {name: np.empty((n, k), dt) for name in ("R", "P", "HP", "other")}
        self._w = np.empty(s.operator.m, dt)

    def _normal_product(self, D, fixed, left, out):
        """out <- A^T(A(D fixed^T)) fixed + lam D (left) or the transposed half-step."""
        op, w = self.state.operator, self._w
        unused = self._cg["other"][:fixed.shape[0]]   # the product this half-step ignores
        if left:   # unknown F = D (n1 x k), fixed G: out = A^T(w) G
            forward_factored_into(op, D, fixed, w)
            adjoint_products_into(op, w, D, fixed, out, unused)
        else:      # unknown G = D (n2 x k), fixed F: out = A^T(w)^T F
            forward_factored_into(op, fixed, D, w)
            adjoint_products_into(op, w, fixed, D, unused, out)
        lam = self.lam
        if lam:
            out += lam * D

    def _cg_half_step(self, X, gradient, fixed, left, out, ridged=False) -> int:
        """out <- argmin over the unknown factor, CG from X; gradient = H(X) - A^T(y) fixed
        (``ridged``: the gradient already holds lam X, the driver's regularized one)."""
        n = X.shape[0]
        R, P, HP = (self._cg[name][:n] for name in ("R", "P", "HP"))
        self.lam = lam = self.ridge_weight(fixed)
        out[...] = X
        np.negative(gradient, out=R)
        if lam and not ridged:
            R -= lam * X
        P[...] = R
        rr = float(np.vdot(R, R))
        stop = (self.options["cg_tol"] ** 2) * rr
        its = 0
        while its < self.options["cg_max_iter"] and rr > stop and rr > 0:
            self._normal_product(P, fixed, left, HP)
            pHp = float(np.vdot(P, HP))
            if not pHp > 0:
                break
            a = rr / pHp
            out += a * P
            R -= a * HP
            rr_new = float(np.vdot(R, R))
            P *= rr_new / rr
            P += R
            rr = rr_new
            its += 1
        if not np.isfinite(rr):
            raise StepFailure("the ALS conjugate-gradient half-step produced non-finite values")
        return its

    # ------------------------------------------------------------------ step
    def step(self) -> None:
        s = self.state
        F_next, G_next = s.F_next, s.G_next
        if self.rowwise:
            n_sing = self._solve(self.by_row, s.G, F_next)
            self.ridge.append(self.lam)
            n_sing += self._solve(self.by_col, F_next, G_next)
            if not (np.isfinite(F_next).all() and np.isfinite(G_next).all()):
                raise StepFailure("an ALS row solve produced non-finite values")
            self.singular_rows.append(n_sing)
        else:
            # the driver's evaluation holds S G at (F, G): the F half-step's gradient
            its = self._cg_half_step(s.F, s.SG, s.G, True, F_next, ridged=bool(s.reg))
            self.ridge.append(self.lam)
            s.residual_gradient(F_next, s.G)          # S^T F_next at (F_next, G)
            its += self._cg_half_step(s.G, s.StF, F_next, False, G_next)
            self.cg_iterations.append(its)
        s.advance()

    def info(self) -> dict:
        out = {"ridge": np.asarray(self.ridge, dtype=np.float64),
               "underdetermined_lines": self.short_lines}
        if self.rowwise:
            out["singular_rows"] = np.asarray(self.singular_rows, dtype=np.int64)
        else:
            out["cg_iterations"] = np.asarray(self.cg_iterations, dtype=np.int64)
        return out

r"""Matrix completion as an estimator: :class:`MatrixCompletion`.

A thin scikit-learn-style layer over :func:`lowrank_core.solve` on an
:class:`~lowrank_core.EntryOperator` with unit scale: it fits rank-k factors F (n1, k),
G (n2, k) to the observed entries Omega of a matrix X by minimizing

    1/2 sum_{(i, j) in Omega} ((F G^T)_ij - X_ij)^2 + reg/2 (||F||_F^2 + ||G||_F^2),

optionally holding out a share of the observations to stop on the validation RMSE, and
completes new rows with G fixed (fold-in). scikit-learn is not needed; when it is
installed the estimator follows its conventions (``get_params``/``set_params``,
``clone``, ``check_estimator``; see docs/estimator.rst for the checks that apply).
"""

from __future__ import annotations

import inspect
import numbers
import warnings

import numpy as np
import scipy.sparse as sp

from . import _kernels
from ._validation import check_random_state
from .driver import solve
from .methods import METHODS
from .methods.als import _index_type
from .operators import EntryOperator

__all__ = ["EFFECTIVE_RANK_RTOL", "BipartiteBiases", "MatrixCompletion", "NotFittedError"]

#: ``effective_rank_`` counts the singular values of F G^T above this times the largest.
EFFECTIVE_RANK_RTOL = 1e-3

#: ``center="biases"`` with ``method="als"`` runs :func:`_biased_als` (row kernel on the
#: augmented factors); False runs ``solve`` on the projected operator (the reference path
#: the tests and benchmarks/center_biases.py compare against).
_FAST_BIASES_ALS = True

#: ``center=True`` with ``method="als"`` runs :func:`_biased_als` too (row kernel at width
#: k, the global mean updated as a third exact block); False runs ``solve`` on the
#: centered operator (its conjugate-gradient half-steps, the reference path).
_FAST_CENTER_ALS = True

#: without centering the training operator is ``EntryOperator.from_entries`` (the
#: observations sorted once into the layout the kernels stream: y and z read in order,
#: tiles at scale, the residual-free and ALS tile paths); False builds it with the
#: constructor (y kept in the user's order; the reference path of
#: benchmarks/estimator_scale.py and the tests)
_FIT_FROM_ENTRIES = True

try:  # scikit-learn's NotFittedError when it is installed (its checks expect that class)
    from sklearn.exceptions import NotFittedError
except ImportError:  # pragma: no cover - depends on the environment
    class NotFittedError(ValueError, AttributeError):
        """The estimator is used before ``fit``."""


# ---------------------------------------------------------------------- input parsing
def _float_dtype(dt, requested):
    """The working dtype: ``requested`` if given, float32 for float32 (and float16) input,
    else float64 (integers, bools, float64)."""
    if requested is not None:
        requested = np.dtype(requested)
        if requested not in (np.float32, np.float64):
            raise TypeError(f"dtype must be None, float32 or float64, got {requested}")
        return requested
    return np.dtype(np.float32) if dt in (np.float16, np.float32) else np.dtype(np.float64)


def _check_values(values, name):
    if np.iscomplexobj(values):
        raise ValueError(f"{name} is complex: Complex data not supported (pass the real "
                         f"part or the modulus)")
    return values


def _observations(X, requested_dtype=None, name="X"):
    """(rows, cols, values, shape) of the observations in X; values in the working dtype.

    X: dense array-like with NaN for missing entries, a scipy.sparse matrix/array (every
    stored entry is an observation, explicit zeros included), or a tuple
    (rows, cols, values, shape).
    """
    if isinstance(X, tuple):
        if len(X) != 4:
            raise ValueError(f"{name} as a tuple must be (rows, cols, values, shape), got a "
                             f"tuple of length {len(X)}")
        rows, cols, values, shape = X
        try:
            n1, n2 = (int(s) for s in shape)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: shape must be a pair (n1, n2), got {shape!r}") from exc
        values = _check_values(np.asarray(values), f"{name} values")
        if values.dtype == object:
            values = values.astype(np.float64)
        dt = _float_dtype(values.dtype, requested_dtype)
        rows, cols = np.asarray(rows), np.asarray(cols)
        if not (rows.ndim == cols.ndim == values.ndim == 1
                and rows.shape == cols.shape == values.shape):
            raise ValueError(f"{name}: rows, cols and values must be 1-D of one length, got "
                             f"shapes {rows.shape}, {cols.shape}, {values.shape}")
        values = values.astype(dt, copy=True)
    elif sp.issparse(X):
        coo = X.tocoo()
        values = _check_values(coo.data, f"{name}.data")
        dt = _float_dtype(values.dtype, requested_dtype)
        rows, cols, values = coo.row, coo.col, values.astype(dt, copy=True)
        n1, n2 = coo.shape
    else:
        if isinstance(X, (str, bytes)) or X is None:
            raise TypeError(f"{name} must be a 2-D array with NaN for missing entries, a "
                            f"scipy.sparse matrix or (rows, cols, values, shape); got "
                            f"{type(X).__name__}")
        arr = _check_values(np.asarray(X), name)
        if arr.dtype == object:
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name} must hold numbers (NaN for missing entries): "
                                f"{exc}") from exc
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (rows x columns, NaN for missing entries), "
                             f"got shape {arr.shape}. Reshape your data: a single row is "
                             f"X.reshape(1, -1)")
        dt = _float_dtype(arr.dtype, requested_dtype)
        arr = arr.astype(dt, copy=False)
        n1, n2 = arr.shape
        observed = ~np.isnan(arr)
        rows, cols = np.nonzero(observed)
        values = np.ascontiguousarray(arr[observed])
    if n1 < 1 or n2 < 1:
        raise ValueError(f"{name} has shape ({n1}, {n2}): it needs at least one row and "
                         f"one column (found array with {n2} feature(s) (shape=({n1}, {n2})) "
                         f"while a minimum of 1 is required)")
    if values.size and not np.isfinite(values).all():
        raise ValueError(f"{name} contains infinity (or NaN as a stored value): only a NaN "
                         f"in a dense array marks a missing entry; replace the infinite "
                         f"values")
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n1 or cols.min() < 0
                      or cols.max() >= n2):
        raise ValueError(f"{name}: row/column indices must lie in [0, {n1}) x [0, {n2})")
    return rows, cols, values, (int(n1), int(n2))


def _check_int(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ------------------------------------------------------------------------- estimator
class MatrixCompletion:
    r"""Low-rank matrix completion with an estimator interface (fit / transform / predict).

    Fits F (n1, k), G (n2, k) minimizing
    1/2 sum_Omega ((F G^T)_ij - X_ij)^2 + reg/2 (||F||_F^2 + ||G||_F^2) over the observed
    entries Omega (the training share of them when ``validation_fraction`` is set) with
    :func:`lowrank_core.solve` on an :class:`~lowrank_core.EntryOperator` of unit scale.

    Parameters
    ----------
    rank : int
        k, the number of factor columns (1 <= k <= min(n1, n2)).
    method : str
        Any method of :func:`lowrank_core.solve` (default "als": exact ridge half-steps,
        one k x k solve per row and column; "softimpute_als": softImpute-ALS, ridge
        half-steps on the filled-in matrix, O(m k) each, with an exact line search,
        :mod:`lowrank_core.methods.softimpute_als`).
    reg : float
        lam >= 0, the ridge weight (``solve(reg=)``); lam > 0 for noisy data.
    center : False, True or "biases"
        True: fit a global mean mu jointly, (F G^T)_ij + mu for every entry (not a
        precomputed mean, which would add a rank to an exactly low-rank matrix).
        mu is eliminated exactly: for fixed factors the best mu is the mean residual,
        so the solver runs on the centered operator C A, C = I - 1 1^T / m, with
        y' = C y (one forward and one adjoint pass per evaluation instead of the fused
        one). ``intercept_`` is mu. ``method="als"`` does not use the centered operator
        (whose half-steps would need conjugate gradients): it alternates exact block
        minimizations over F, G and mu, the compiled row kernel at width k on targets
        y - mu and mu = mean(y - A(F G^T)) after each iteration (:func:`_biased_als`;
        same objective, minimizers, start, stopping rule and history), about the cost
        of ``center=False`` plus one O(m) pass.
        "biases": the model is (F G^T)_ij + mu + b_i + c_j with a row bias b (n1,) and
        a column bias c (n2,) fitted jointly (unregularized) the same way: the solver
        runs on M -> P A(C1 M C2) and P y, P the orthogonal projection onto the
        complement of span{1, row indicators, column indicators} restricted to the
        observations (the bias least squares on the bipartite observation graph,
        solved by Jacobi-preconditioned conjugate gradients at every forward pass, O(m)
        per CG iteration, :class:`BipartiteBiases`) and C1, C2 the centering matrices;
        the biases are recovered from the final residual. Gauge (the split is not
        unique otherwise): the low-rank part is double-centered, the stored factors
        have zero column means (so F G^T has zero row and column means over the whole
        matrix); mean(b) = 0 over the rows with observations and mean(c) = 0 over the
        columns with observations (a line without observations gets bias 0), so
        ``intercept_`` is the mean of mu + b_i + c_j over those lines. The biases are
        not regularized by ``reg``. Every method works; each evaluation costs a few
        more O(m) passes than ``center=False`` (docs/estimator.rst has measurements).
        ``method="als"`` does not use the projected operator: it alternates exact
        block minimizations of the same objective over (F, b) and (G, c), the compiled
        row kernel on the augmented factors [G, 1] and [F, 1] with the bias coordinate
        unpenalized (:func:`_biased_als`; same start, stopping rule, history, result and
        validation early stopping, and the same gauge applied at the end), about the
        cost of ``center=False`` at rank k + 1.
    max_iter : int
        Maximum iterations of the solver.
    tol : float
        Stop (status "converged") when one iteration moves the estimate by less than tol
        relative, ||F_t G_t^T - F_{t-1} G_{t-1}^T||_F <= tol ||F_{t-1} G_{t-1}^T||_F
        (computed from the factors, O((n1 + n2) k^2)), or when the solver's
        relative residual reaches its own default tolerance. This replaces ``solve``'s
        stalled-progress stop (the estimator calls it with ``stall_tol=0``).
    validation_fraction : float in (0, 1), optional
        Hold out this share of the observations (uniformly at random), record their RMSE
        in ``history_["validation_rmse"]``, keep the iterate with the smallest one.
    n_iter_no_change : int
        With validation: stop (status "early_stopped") after this many iterations
        without a new smallest validation RMSE.
    init : None, str, (F, G)
        Initialization of :func:`lowrank_core.solve` (None: the method's own).
    dtype : None, float32 or float64
        Working precision; None follows the input (float32 stays float32, other input
        becomes float64).
    n_threads : int, optional
        OpenMP threads of the kernels.
    random_state : None, int or numpy Generator
        Seeds the validation split and the initialization.
    verbose : bool
        Show the solver's progress (:func:`~lowrank_core.solve`'s ``progress``: a tqdm
        bar, else a stderr line with the iteration and relative residual), on every
        path, the ALS row-kernel paths of ``center=True`` / ``"biases"`` included.
    warm_start : bool
        Start ``fit`` from the previous fit's factors when the shape and rank match.
    keep_observed : bool
        ``transform``/``fit_transform`` return the observed entries as given (True,
        imputation) or replaced by the fit (False).

    Attributes
    ----------
    components_ : ndarray (k, n2)
        G^T, the column factors (``transform`` projects new rows on them).
    row_factors_ : ndarray (n1, k)
        F, the training rows' factors.
    n_iter_ : int
        Iterations done.
    history_ : History
        The solver's history (loss, residual, time) plus ``validation_rmse``.
    result_ : SolveResult
        The solver's result (status "early_stopped" when validation stopped it); its
        factors are the returned (best) iterate.
    best_iteration_ : int
        Iteration of the returned iterate (the best validation one, or the last).
    validation_rmse_ : float
        Validation RMSE of the returned iterate (NaN without validation).
    singular_values_ : ndarray (k,)
        Singular values of F G^T (from thin QRs of F and G and a k x k SVD).
    effective_rank_ : int
        Number of singular values above ``EFFECTIVE_RANK_RTOL`` (1e-3) times the largest:
        the numerical rank of the fit, useful with an over-parameterized rank.
    n_features_in_ : int
        n2.
    intercept_ : float
        The jointly fitted global mean mu (``center=True`` or "biases"), else 0.
    row_bias_ : ndarray (n1,)
        b, the row biases (``center="biases"``, gauge above), else zeros.
    col_bias_ : ndarray (n2,)
        c, the column biases (``center="biases"``), else zeros.
    bias_cg_ : (int, int), only with ``center="biases"``
        Total CG iterations and number of bias least-squares solves of the fit.
    validation_entries_ : (rows, cols, values) or None
        The held-out observations (``validation_fraction``).

    Notes
    -----
    Cost: the solver's per iteration (ALS: about 4 m k (k + 1) + (n1 + n2) k^3 / 3 flops);
    ``predict`` O(k) per entry; ``fold_in`` O(m_new k^2 + n_new k^3).
    """

    def __init__(self, rank=10, method="als", reg=0.0, center=False, max_iter=100,
                 tol=1e-6, validation_fraction=None, n_iter_no_change=10, init=None,
                 dtype=None, n_threads=None, random_state=None, verbose=False,
                 warm_start=False, keep_observed=True):
        self.rank = rank
        self.method = method
        self.reg = reg
        self.center = center
        self.max_iter = max_iter
        self.tol = tol
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.init = init
        self.dtype = dtype
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.keep_observed = keep_observed

    # ------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep=True):
        """The constructor parameters as a dict (scikit-learn's convention)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor parameters; unknown names are a ValueError. Returns self."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for MatrixCompletion; valid "
                                 f"parameters: {', '.join(sorted(valid))}")
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = inspect.signature(type(self).__init__).parameters
        changed = []
        for name in self._param_names():
            value = getattr(self, name)
            default = defaults[name].default
            same = value is default
            if not same:
                try:
                    same = bool(value == default)
                except Exception:
                    same = False
            if not same:
                changed.append(f"{name}={value!r}")
        return f"MatrixCompletion({', '.join(changed)})"

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags
        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags(preserves_dtype=["float64", "float32"]),
                    input_tags=InputTags(allow_nan=True, sparse=True))

    # ------------------------------------------------------------ validation
    def _checked(self):
        if not isinstance(self.method, str) or self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got "
                             f"{self.method!r}")
        rank = _check_int(self.rank, "rank", 1)
        reg = self.reg
        if isinstance(reg, (bool, np.bool_)) or not isinstance(reg, numbers.Real) \
                or not np.isfinite(reg) or reg < 0:
            raise ValueError(f"reg must be a finite number >= 0, got {reg!r}")
        center = self.center
        if isinstance(center, str):
            if center != "biases":
                raise ValueError(f"center must be False, True or 'biases' (global mean "
                                 f"plus row and column biases), got {center!r}")
        elif not isinstance(center, (bool, np.bool_)):
            raise ValueError(f"center must be False, True or 'biases', got {center!r}")
        max_iter = _check_int(self.max_iter, "max_iter", 0)
        tol = self.tol
        if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real) \
                or not 0 < tol < 1:
            raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
        vf = self.validation_fraction
        if vf is not None and (isinstance(vf, (bool, np.bool_))
                               or not isinstance(vf, numbers.Real) or not 0 < vf < 1):
            raise ValueError(f"validation_fraction must be None or in (0, 1), got {vf!r}")
        patience = _check_int(self.n_iter_no_change, "n_iter_no_change", 1)
        return rank, float(reg), max_iter, float(tol), vf, patience

    def _check_fitted(self):
        if not hasattr(self, "components_"):
            raise NotFittedError("this MatrixCompletion instance is not fitted yet; call "
                                 "fit(X) first")

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Fit the factors to the observed entries of X.

        Parameters
        ----------
        X : ndarray (n1, n2) with NaN for missing entries, scipy.sparse matrix (stored
            entries are the observations, explicit zeros included) or
            (rows, cols, values, shape)
        y : ignored

        Returns
        -------
        self
        """
        self._fit(X)
        return self

    def _fit(self, X):
        """:meth:`fit`; returns X's observations (rows, cols, values), all of them
        (validation entries included), for :meth:`fit_transform` to reuse."""
        rank, reg, max_iter, tol, vf, patience = self._checked()
        observations = rows, cols, values, shape = _observations(X, self.dtype)
        n1, n2 = shape
        if rank > min(n1, n2):
            raise ValueError(f"rank={rank} exceeds min(n_rows, n_columns) = {min(n1, n2)} "
                             f"of X with shape {shape} (n_samples = {n1}, n_features = "
                             f"{n2}); pass a smaller rank")
        if values.size == 0:
            raise ValueError("X has no observed entries (all NaN / no stored entries)")
        dt = values.dtype
        rng = check_random_state(self.random_state)
        val = None
        if vf is not None:
            n_val = int(round(vf * values.size))
            if not 1 <= n_val < values.size:
                raise ValueError(f"validation_fraction={vf} of {values.size} observations "
                                 f"holds out {n_val}: need at least one validation and one "
                                 f"training entry")
            perm = rng.permutation(values.size)
            held, kept = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            val = (EntryOperator(rows[held], cols[held], shape, dtype=dt,
                                 n_threads=self.n_threads), values[held])
            rows, cols, values = rows[kept], cols[kept], values[kept]
        offsets = None
        if _FIT_FROM_ENTRIES and not isinstance(self.center, str) and not self.center:
            op, y = EntryOperator.from_entries(rows, cols, values, shape, k=rank,
                                               n_threads=self.n_threads)
        else:
            op = EntryOperator(rows, cols, shape, dtype=dt, n_threads=self.n_threads)
            y = values
        if isinstance(self.center, str):
            op = offsets = _BiasProjectedEntries(op)
            y = op.project(values)
        elif self.center:
            op = offsets = _CenteredEntries(op)
            y = values - values.mean(dtype=np.float64).astype(dt)
        init = self.init
        if self.warm_start and hasattr(self, "components_") \
                and self.row_factors_.shape == (n1, rank) \
                and self.components_.shape == (rank, n2) and self.row_factors_.dtype == dt:
            init = (self.row_factors_.copy(), self.components_.T.copy())

        monitor = _Monitor(val, tol, patience, offsets, values)
        fast = self.method == "als" and (
            (_FAST_BIASES_ALS and isinstance(offsets, _BiasProjectedEntries))
            or (_FAST_CENTER_ALS and isinstance(offsets, _CenteredEntries)
                and not isinstance(offsets, _BiasProjectedEntries)))
        res = solve(op, y, rank, method=self.method, init=init,
                    max_iter=0 if fast else max_iter,
                    record=["loss", "residual", "time"], callback=monitor, seed=rng,
                    n_threads=self.n_threads, progress=bool(self.verbose) and not fast,
                    reg=reg, stall_tol=0.0)  # tol (relative change): the estimator's stop
        if fast:   # solve gave the start (its initialization); iterate on the biased model
            _biased_als(res, offsets, values, reg, max_iter, monitor,
                        verbose=bool(self.verbose))
        monitor.finish(res)
        F, G = res.factors
        if isinstance(offsets, _BiasProjectedEntries):
            F, G = offsets.model_factors(F, G)   # the model's low-rank part F_c G_c^T
            res["F"], res["G"] = F, G
            self.bias_cg_ = (offsets.biases.iterations, offsets.biases.solves)
        self.intercept_ = 0.0
        self.row_bias_, self.col_bias_ = np.zeros(n1, dt), np.zeros(n2, dt)
        if offsets is not None:
            mu, b, c = offsets.offsets(F, G, values)
            self.intercept_ = mu
            if b is not None:
                self.row_bias_, self.col_bias_ = b.astype(dt), c.astype(dt)
        self.row_factors_ = F
        self.components_ = np.ascontiguousarray(G.T)
        self.n_iter_ = int(res.n_iter)
        self.best_iteration_ = monitor.best_iteration
        self.validation_rmse_ = monitor.best_value
        self.history_ = res.history
        self.result_ = res
        self.n_features_in_ = n2
        self.shape_ = shape
        self.singular_values_ = _factored_singular_values(F, G)
        s = self.singular_values_
        self.effective_rank_ = int(np.sum(s > EFFECTIVE_RANK_RTOL * s[0])) if s[0] > 0 else 0
        self.validation_entries_ = None if val is None else \
            (np.asarray(val[0].rows), np.asarray(val[0].cols), val[1])
        return observations[:3]

    # --------------------------------------------------------------- outputs
    def _check_features(self, n2):
        if n2 != self.n_features_in_:
            raise ValueError(f"X has {n2} features, but MatrixCompletion is expecting "
                             f"{self.n_features_in_} features as input")

    def fit_transform(self, X, y=None):
        """Fit, then return the completed training matrix F G^T (n1, n2).

        Observed entries keep their given values when ``keep_observed`` (all of them,
        validation entries included)."""
        rows, cols, values = self._fit(X)   # X parsed once (fit's observations)
        out = self.row_factors_ @ self.components_
        self._add_offsets(out)
        if self.keep_observed:
            out[rows, cols] = values
        return out

    def _biased(self):
        return isinstance(self.center, str) and hasattr(self, "row_bias_")

    def _add_offsets(self, out, row_bias=None):
        """out (n, n2) += mu + b_i + c_j (b: ``row_bias`` or the fitted row biases)."""
        if self.intercept_:
            out += out.dtype.type(self.intercept_)
        if self._biased():
            out += (self.row_bias_ if row_bias is None else row_bias)[:, None]
            out += self.col_bias_[None, :]

    def transform(self, X):
        """Complete the rows of X (n_new, n2) with G fixed: :meth:`fold_in`.

        At a fitted point (F minimizes the objective for its G) ``transform`` of the
        training matrix equals ``fit_transform``'s output."""
        return self.fold_in(X)

    def fold_in(self, X, return_factors=False):
        """Complete new rows with the fitted column factors G held fixed.

        Row i's factor is the ridge least-squares solution over its observed columns O_i,
        f_i = (G_Oi^T G_Oi + reg I)^{-1} G_Oi^T x_Oi (minimal-norm pseudo-inverse solution
        when singular, 0 for a row without observations), computed by the same compiled
        row-solve kernel as alternating least squares (``lowrank_core._als.solve_rows``),
        on x - mu with ``center=True``.

        With ``center="biases"`` the new row's bias b_i is fitted with its factor: the
        ridge least squares with a constant column, unregularized,
        min over (f_i, b_i) of ||G_Oi f_i + b_i 1 - (x_Oi - mu - c_Oi)||^2 + reg ||f_i||^2,
        by the same kernel at width k + 1 on [G, 1] with the last coordinate unpenalized
        (``n_unpenalized=1``; minimal-norm solution when singular, 0 for a row without
        observations); O(n_i k^2 + k^3) for a row with n_i observations.

        Parameters
        ----------
        X : ndarray (n_new, n2) with NaN, scipy.sparse or (rows, cols, values, shape)
        return_factors : bool
            Also return the new rows' factors (n_new, k).

        Returns
        -------
        completed : ndarray (n_new, n2)
            f_i G^T, with the observed entries as given when ``keep_observed``.
        factors : ndarray (n_new, k), only with ``return_factors``
        row_bias : ndarray (n_new,), only with ``return_factors`` and ``center="biases"``
            The new rows' biases b_i.
        """
        self._check_fitted()
        G = np.ascontiguousarray(self.components_.T)
        rows, cols, values, shape = _observations(X, G.dtype)
        self._check_features(shape[1])
        mu = G.dtype.type(self.intercept_)
        target = values - mu if mu else values
        bn = None
        if self._biased():
            Fn, bn = _ridge_rows(rows, cols, target - self.col_bias_[cols], shape[0], G,
                                 float(self.reg), self.n_threads, bias=True)
        else:
            Fn = _ridge_rows(rows, cols, target, shape[0], G, float(self.reg),
                             self.n_threads)
        out = Fn @ self.components_
        self._add_offsets(out, bn)
        if self.keep_observed:
            out[rows, cols] = values
        if not return_factors:
            return out
        return (out, Fn) if bn is None else (out, Fn, bn)

    def predict(self, rows, cols=None):
        """Entries of the fit, (F G^T)[rows, cols], in O(k) each (no matrix formed).

        Plus mu (``center=True``) or mu + b_rows + c_cols (``center="biases"``).
        With one 2-D argument X (n_new, n2) instead: the model's completion of X's rows,
        fold-in with every entry predicted (observed ones replaced by the fit).
        """
        self._check_fitted()
        if cols is None:
            if isinstance(rows, tuple) or sp.issparse(rows) or np.ndim(rows) == 2:
                keep = self.keep_observed
                try:
                    self.keep_observed = False
                    return self.fold_in(rows)
                finally:
                    self.keep_observed = keep
            raise ValueError(f"predict needs (rows, cols) index arrays, or one 2-D matrix "
                             f"of new rows; got a single argument of shape {np.shape(rows)}. "
                             f"Reshape your data: X.reshape(1, -1) for a single row")
        rows = np.asarray(rows)
        cols = np.asarray(cols)
        if rows.shape != cols.shape or rows.ndim != 1 or not (
                np.issubdtype(rows.dtype, np.integer) and np.issubdtype(cols.dtype, np.integer)):
            raise ValueError("rows and cols must be 1-D integer arrays of one length")
        F, G = self.row_factors_, np.ascontiguousarray(self.components_.T)
        n1, n2 = F.shape[0], G.shape[0]
        if rows.size == 0:
            return np.empty(0, F.dtype)
        if rows.min() < 0 or rows.max() >= n1 or cols.min() < 0 or cols.max() >= n2:
            raise ValueError(f"rows and cols must index the fitted {n1} x {n2} matrix")
        op = EntryOperator(rows, cols, (n1, n2), dtype=F.dtype, n_threads=self.n_threads)
        out = op.forward_factored(F, G)
        if self.intercept_:
            out += out.dtype.type(self.intercept_)
        if self._biased():
            out += self.row_bias_[rows]
            out += self.col_bias_[cols]
        return out

    def rmse(self, rows, cols, values):
        """sqrt(mean(((F G^T)[rows, cols] - values)^2)), the RMSE on the given entries."""
        pred = self.predict(rows, cols)
        values = np.asarray(values, dtype=pred.dtype)
        if values.shape != pred.shape:
            raise ValueError("values must have the length of rows and cols")
        diff = pred.astype(np.float64) - values
        return float(np.sqrt(np.mean(diff * diff)))

    def score(self, X, y=None):
        """MINUS the RMSE of the fit on the observed entries of X (greater is better,
        scikit-learn's convention; :meth:`rmse` gives the RMSE itself).

        X is indexed like the training matrix: a (rows, cols, values) or
        (rows, cols, values, shape) tuple, a scipy.sparse matrix or a dense array with
        NaN, of the training shape (e.g. held-out entries)."""
        self._check_fitted()
        if isinstance(X, tuple) and len(X) == 3:
            return -self.rmse(*X)
        rows, cols, values, shape = _observations(X, self.row_factors_.dtype)
        self._check_features(shape[1])
        if shape != self.shape_:
            raise ValueError(f"score(X) compares entries of the fitted matrix: X must have "
                             f"its shape {self.shape_}, got {shape} (for new rows use "
                             f"transform / fold_in)")
        return -self.rmse(rows, cols, values)


# ---------------------------------------------------------------------- helpers
class _Monitor:
    """solve's callback: objective-decrease stopping and the validation early stopping.

    Records the validation RMSE of every iterate it sees, keeps a copy of the best one's
    factors, raises StopIteration (solve's status "callback") on a stop; :meth:`finish`
    turns that into "converged" / "early_stopped" and restores the best iterate.
    """

    def __init__(self, val, tol, patience, offsets=None, values=None):
        self.val, self.tol, self.patience = val, tol, patience
        self.offsets, self.values = offsets, values
        self.scores = {}
        self.best_value = np.nan
        self.best_iteration = None
        self.best = None
        self.previous = None
        self.reason = None

    def _validation(self, F, G):
        op, values = self.val
        F, G = self._model(F, G)
        pred = op.forward_factored(F, G).astype(np.float64)
        if self.offsets is not None:   # the optimal mean / biases for these factors
            mu, b, c = self.offsets.offsets(F, G, self.values)
            pred += mu
            if b is not None:
                pred += b[np.asarray(op.rows)]
                pred += c[np.asarray(op.cols)]
        diff = pred - values
        return float(np.sqrt(np.mean(diff * diff)))

    def _model(self, F, G):
        into = getattr(self.offsets, "model_factors", None)
        return (F, G) if into is None else into(F, G)

    def _see(self, res):
        t = int(res["n_iter"])
        F, G = res["F"], res["G"]
        v = self._validation(F, G)
        self.scores[t] = v
        if self.best_iteration is None or v < self.best_value:
            self.best_value, self.best_iteration = v, t
            self.best = (F.copy(), G.copy(), float(res["loss"]), float(res["residual"]))

    def __call__(self, res):
        t = int(res["n_iter"])
        if self.val is not None:
            self._see(res)
            if t - self.best_iteration >= self.patience:
                self.reason = "early_stopped"
                raise StopIteration
        F, G = self._model(res["F"], res["G"])
        change = self._change(F, G)
        if change is not None and change <= self.tol:
            self.reason = "converged"
            raise StopIteration

    def _change(self, F, G):
        """The relative change from the previous iterate seen (None for the first):
        :func:`_relative_change`, with this iterate's Grams kept for the next call.

        In float64, W = F^T F and V = G^T G of the new iterate and the cross products
        F0^T F, G0^T G (four n k^2 GEMMs; the 2k-wide Grams of _relative_change are
        eight), the previous iterate's Grams reused; below 1e-5 (the cancelling range)
        _relative_change's QR form. O((n1 + n2) k^2)."""
        Fd = F.astype(np.float64, copy=False)
        Gd = G.astype(np.float64, copy=False)
        if not (np.isfinite(Fd).all() and np.isfinite(Gd).all()):
            self.previous = None
            return np.inf
        A11, B11 = Fd.T @ Fd, Gd.T @ Gd
        prev, self.previous = self.previous, (Fd, Gd, A11, B11)
        if prev is None:
            return None
        F0, G0, A00, B00 = prev
        m00 = float(np.sum(A00 * B00))
        m11 = float(np.sum(A11 * B11))
        m01 = float(np.sum((F0.T @ Fd) * (G0.T @ Gd)))
        if m00 > 0:
            ratio2 = (m11 + m00 - 2.0 * m01) / m00
            if ratio2 >= 1e-10:
                return float(np.sqrt(ratio2))
        return _relative_change((F0, G0), (Fd, Gd))

    def finish(self, res):
        t = int(res.n_iter)
        if self.val is not None:
            if t not in self.scores and np.all(np.isfinite(res.factors[0])):
                self._see(res)
            it = np.asarray(res.history["iteration"], dtype=np.int64)
            res.history["validation_rmse"] = np.array(
                [self.scores.get(int(i), np.nan) for i in it], dtype=np.float64)
            if self.best is not None and self.best_iteration != t:
                F, G, loss, residual = self.best
                res["F"], res["G"] = F, G
                res["loss"], res["residual"] = loss, residual
            res["best_iteration"] = self.best_iteration
            res["validation_rmse"] = self.best_value
        else:
            self.best_iteration = t
        if res.status == "callback" and self.reason == "early_stopped":
            res["status"] = "early_stopped"
            res["message"] = (f"early stopped at iteration {t}: no smaller validation RMSE "
                              f"for {self.patience} iterations; returning iterate "
                              f"{self.best_iteration} (validation RMSE "
                              f"{self.best_value:.4g})")
        elif res.status == "callback" and self.reason == "converged":
            res["status"] = "converged"
            res["message"] = (f"converged at iteration {t}: the estimate F G^T moved by "
                              f"less than tol = {self.tol:g} relative")


class _CenteredEntries:
    r"""The operator C A for an EntryOperator A, C = I - 1 1^T / m (mean removal).

    min over mu of 1/2 ||A(F G^T) + mu 1 - y||^2 is 1/2 ||C (A(F G^T) - y)||^2 at
    mu = mean(y - A(F G^T)), so solving with C A and C y fits the global mean jointly
    with the factors. C A(F G^T) is one factored forward pass and a mean; A^T C is the
    adjoint. C is a projection, so A^T(C z) = A^T(z) for a mean-free residual z.
    """

    kind = "entries-centered"

    def __init__(self, base):
        self.base = base
        self.shape, self.m, self.dtype = base.shape, base.m, base.dtype
        self.n_threads = base.n_threads
        self.symmetric = False

    def _forward_factored_into(self, F, G, out):
        self.base._forward_factored_into(F, G, out)
        out -= out.mean(dtype=np.float64).astype(out.dtype)

    def forward_factored(self, F, G):
        out = np.empty(self.m, self.dtype)
        self._forward_factored_into(F, G, out)
        return out

    def _residual_gradient_into(self, F, G, y, z, SG, StF):
        self._forward_factored_into(F, G, z)
        z -= y
        self.base._adjoint_products_into(z, F, G, SG, StF)
        zd = z.astype(np.float64, copy=False)
        return 0.5 * float(np.dot(zd, zd))

    def _adjoint_products_into(self, w, F, G, SG, StF):
        self.base._adjoint_products_into(w - w.mean(dtype=np.float64).astype(w.dtype),
                                         F, G, SG, StF)

    def adjoint_operator(self, z):
        z = np.asarray(z)
        return self.base.adjoint_operator(z - z.mean(dtype=np.float64).astype(z.dtype))

    def spectral_operator(self, y):
        y = np.asarray(y)
        return self.base.spectral_operator(y - y.mean(dtype=np.float64).astype(y.dtype))

    def intercept(self, F, G, values) -> float:
        """mu = mean(values - A(F G^T)), the optimal global mean for these factors."""
        fit = self.base.forward_factored(F, G)
        return float(np.mean(values.astype(np.float64) - fit))

    def offsets(self, F, G, values):
        """(mu, None, None): the optimal global mean, no biases."""
        return self.intercept(F, G, values), None, None


class BipartiteBiases:
    r"""Least squares for row and column biases on the observed entries.

    For observations (r_e, c_e), e = 1..m, of an n1 x n2 matrix and values z (m,):

        min over b (n1,), c (n2,) of  sum_e (b_{r_e} + c_{c_e} - z_e)^2,

    i.e. the least squares with the m x (n1 + n2) design B = [R, C] of row and column
    indicators (the global mean's column 1 = R 1 lies in its span). The normal equations
    B^T B (b; c) = B^T z have the matrix [[D_r, N], [N^T, D_c]] of the bipartite
    observation graph (D_r, D_c the row/column counts, N the n1 x n2 count matrix): PSD
    and singular (null vector (1, -1) per connected component). They are solved by
    conjugate gradients preconditioned by the diagonal (Jacobi) D = diag(D_r, D_c),
    from 0, in float64: one product is a gather t = b_r + c_c and two scatter-adds, one
    fused compiled pass over the entries (``lowrank_core._biases``), O(m + n1 + n2).
    The CG stops when the preconditioned residual norm sqrt(r^T D^{-1} r) is at most
    ``tol`` ||z|| (it starts at most sqrt(2) ||z||); the
    error of the fitted values B (b; c) is then at most that over sqrt(lambda), lambda the
    smallest nonzero eigenvalue of D^{-1/2} B^T B D^{-1/2} (near 1 for well-connected
    uniformly sampled graphs; small for a graph with weakly connected parts).

    ``project(z)`` is P z = z - B (b; c), the orthogonal projection onto the complement
    of span{1, row indicators, column indicators}. ``iterations`` counts CG iterations
    over all solves (``solves`` the solves).

    Parameters
    ----------
    rows, cols : int arrays (m,)
    shape : (n1, n2)
    tol : float
        Relative CG tolerance (default 1e-13).
    max_iter : int, optional
        CG iterations at most (default 10 (n1 + n2) + 100).
    """

    def __init__(self, rows, cols, shape, tol=1e-13, max_iter=None):
        self.rows = np.ascontiguousarray(rows, dtype=np.intp)
        self.cols = np.ascontiguousarray(cols, dtype=np.intp)
        self.n1, self.n2 = (int(n) for n in shape)
        self.tol = float(tol)
        self.max_iter = 10 * (self.n1 + self.n2) + 100 if max_iter is None else max_iter
        dr = np.bincount(self.rows, minlength=self.n1).astype(np.float64)
        dc = np.bincount(self.cols, minlength=self.n2).astype(np.float64)
        self.has_row, self.has_col = dr > 0, dc > 0
        self.inv_dr = np.divide(1.0, dr, out=np.zeros_like(dr), where=dr > 0)
        self.inv_dc = np.divide(1.0, dc, out=np.zeros_like(dc), where=dc > 0)
        self.iterations = 0
        self.solves = 0

    @property
    def _kernel(self):
        return _kernels.load("_biases")   # cached by _kernels; not stored (picklable)

    def n_components(self) -> int:
        """Connected components of the observation graph (lines with observations)."""
        from scipy.sparse.csgraph import connected_components
        n1, n2 = self.n1, self.n2
        ones = np.ones(self.rows.size, np.int8)
        adj = sp.coo_matrix((ones, (self.rows, n1 + self.cols)), shape=(n1 + n2,) * 2)
        keep = np.concatenate([self.has_row, self.has_col])
        adj = adj.tocsr()[keep][:, keep]
        return int(connected_components(adj, directed=False)[0])

    def solve(self, z):
        """(b, c) of the least squares above (a solution; CG from 0)."""
        z = np.ascontiguousarray(z)
        if z.dtype not in (np.float32, np.float64):
            z = z.astype(np.float64)
        kern = self._kernel
        rb, rc = np.empty(self.n1), np.empty(self.n2)
        zz = kern.scatter(self.rows, self.cols, z, rb, rc)
        b, c = np.zeros(self.n1), np.zeros(self.n2)
        qb, qc = np.empty(self.n1), np.empty(self.n2)
        sb, sc = self.inv_dr * rb, self.inv_dc * rc
        rho = float(rb @ sb + rc @ sc)
        stop = self.tol * self.tol * zz
        pb, pc = sb, sc
        its = 0
        while rho > stop and its < self.max_iter:
            kern.normal(self.rows, self.cols, pb, pc, qb, qc)
            pq = float(pb @ qb + pc @ qc)
            if not pq > 0:
                break
            a = rho / pq
            b += a * pb
            c += a * pc
            rb -= a * qb
            rc -= a * qc
            sb, sc = self.inv_dr * rb, self.inv_dc * rc
            rho_new = float(rb @ sb + rc @ sc)
            beta = rho_new / rho
            pb, pc = sb + beta * pb, sc + beta * pc
            rho = rho_new
            its += 1
        self.iterations += its
        self.solves += 1
        return b, c

    def fitted(self, b, c):
        """B (b; c): b_{r_e} + c_{c_e} per observation."""
        return b[self.rows] + c[self.cols]

    def project(self, z, out=None):
        """P z = z - B (b; c) in z's dtype (float32 or float64; into ``out`` if given,
        which may be z)."""
        z = np.ascontiguousarray(z)
        if z.dtype not in (np.float32, np.float64):
            z = z.astype(np.float64)
        b, c = self.solve(z)
        if out is None:
            out = np.empty_like(z)
        self._kernel.subtract(self.rows, self.cols, b, c, z, out)
        return out

    def gauged(self, b, c):
        """(mu, b, c) with the same b_i + c_j + mu on every observation: mean(b) = 0 over
        the rows with observations, mean(c) = 0 over such columns, 0 elsewhere."""
        b, c = b.copy(), c.copy()
        mb = float(b[self.has_row].mean()) if self.has_row.any() else 0.0
        mc = float(c[self.has_col].mean()) if self.has_col.any() else 0.0
        b -= mb
        c -= mc
        b[~self.has_row] = 0.0
        c[~self.has_col] = 0.0
        return mb + mc, b, c


class _BiasProjectedEntries(_CenteredEntries):
    r"""The operator M -> P A(C1 M C2) for an EntryOperator A (``center="biases"``).

    P is the projection of :class:`BipartiteBiases` (onto the complement of the bias
    span on the observations), C1 = I - 1 1^T / n1 and C2 = I - 1 1^T / n2 double-center
    the low-rank part. The model of entry (i, j) is (C1 F G^T C2)_ij + mu + b_i + c_j:

    * min over (mu, b, c) of 1/2 ||A(C1 F G^T C2) + mu + b_r + c_c - y||^2 is
      1/2 ||P (A(C1 F G^T C2) - y)||^2, so solving with this operator and P y fits the
      biases jointly with the factors (recovered from the final residual, ``offsets``);
    * the double centering fixes the split between the low-rank part and the biases:
      L + u 1^T + 1 v^T has the rank of L whenever u lies in L's column space and v in
      its row space, so without it the biases are not identifiable (and ALS's half-steps
      drift along those near-null directions). C1 F G^T C2 = F_c G_c^T with the centered
      factors F_c = C1 F, G_c = C2 G, so the forward pass centers the factors
      (O((n1 + n2) k)) and the adjoint products center theirs: the gradient in F is
      C1 A^T(P w) G_c.

    Every forward pass solves one bias least squares (Jacobi-preconditioned CG, a few
    O(m) products); the adjoint projects w too, which costs one residual check (two
    bincounts, 0 CG iterations) when w is already projected (residuals are).
    """

    kind = "entries-biases"

    def __init__(self, base):
        super().__init__(base)
        self.biases = BipartiteBiases(base.rows, base.cols, base.shape,
                                      tol=1e-13 if base.dtype == np.float64 else 1e-6)
        n_comp = self.biases.n_components()
        if n_comp > 1:
            warnings.warn(f"center='biases': the observation graph has {n_comp} connected "
                          f"components; the biases are determined only up to a shift "
                          f"per component, so predictions between components are not "
                          f"determined by the data", RuntimeWarning, stacklevel=4)

    @staticmethod
    def model_factors(F, G):
        """(C1 F, C2 G): the centered factors, F_c G_c^T the model's low-rank part."""
        return (F - F.mean(axis=0, dtype=np.float64).astype(F.dtype),
                G - G.mean(axis=0, dtype=np.float64).astype(G.dtype))

    def project(self, z):
        return self.biases.project(z)

    def _forward_factored_into(self, F, G, out):
        self.base._forward_factored_into(*self.model_factors(F, G), out)
        if out.flags.c_contiguous:
            self.biases.project(out, out=out)
        else:
            out[...] = self.biases.project(out)

    def _adjoint_products_into(self, w, F, G, SG, StF):
        Fc, Gc = self.model_factors(F, G)
        self.base._adjoint_products_into(self.biases.project(w), Fc, Gc, SG, StF)
        SG -= SG.mean(axis=0, dtype=np.float64).astype(SG.dtype)
        StF -= StF.mean(axis=0, dtype=np.float64).astype(StF.dtype)

    def _residual_gradient_into(self, F, G, y, z, SG, StF):
        self._forward_factored_into(F, G, z)
        z -= y
        self._adjoint_products_into(z, F, G, SG, StF)
        zd = z.astype(np.float64, copy=False)
        return 0.5 * float(np.dot(zd, zd))

    def _double_centered(self, lin):
        from scipy.sparse.linalg import LinearOperator

        def center(v):
            v = np.asarray(v)
            return v - v.mean(axis=0, keepdims=True)

        return LinearOperator(
            lin.shape, dtype=lin.dtype,
            matvec=lambda v: center(lin.matvec(center(v))),
            rmatvec=lambda v: center(lin.rmatvec(center(v))),
            matmat=lambda V: center(lin.matmat(center(V))),
            rmatmat=lambda V: center(lin.rmatmat(center(V))))

    def adjoint_operator(self, z):
        """C1 A^T(P z) C2 as a LinearOperator."""
        return self._double_centered(self.base.adjoint_operator(
            self.biases.project(np.asarray(z))))

    def spectral_operator(self, y):
        return self._double_centered(self.base.spectral_operator(
            self.biases.project(np.asarray(y))))

    def offsets(self, F, G, values):
        """(mu, b, c): the optimal biases for the factors' model, gauged."""
        z = values.astype(np.float64) - self.base.forward_factored(*self.model_factors(F, G))
        return self.biases.gauged(*self.biases.solve(z))


def _biased_als(res, offsets, values, reg, max_iter, monitor, verbose=False):
    r"""ALS on the augmented factors for ``center="biases"``, or with a global mean for
    ``center=True``; updates ``res`` in place.

    The model is (F G^T)_ij + b_i + c_j (mu folded into b while iterating). One
    iteration is two exact block minimizations of

        1/2 sum_Omega ((F G^T)_ij + b_i + c_j - y_ij)^2 + lam/2 (||F||^2 + ||G||^2),

    the row step  (F_i, b_i) = argmin ||[G, 1]_{Omega_i} (f; beta) - (y - c)_{Omega_i}||^2
    + lam ||f||^2 and the column step (G_j, c_j) likewise with [F, 1] and y - b: the
    compiled row kernel (``_als.solve_rows``) at width k + 1 with ``n_unpenalized=1``
    (the bias is not penalized). lam = ``reg``, or with reg = 0 ALS's vanishing ridge
    ``damping="auto"``: c rho^2 p ||fixed||_F^2 / k (c = 1, rho the relative residual,
    p = m / (n1 n2); see :mod:`lowrank_core.methods.als`). Same objective as the
    projected path: for any (F, G, b, c), centering the factor columns moves a u 1^T +
    1 v^T part into the biases and does not increase the penalty, so both have the same
    minimizers up to that gauge; ``fit`` then stores C1 F, C2 G and the gauged optimal
    biases of that model (one bias least squares), as on the projected path.

    Start: ``res`` (``solve(max_iter=0)``: the method's initialization of the projected
    problem) with the optimal biases for it. Stopping: ``monitor`` (the estimator's
    relative-change tol on the model C1 F G^T C2 and the validation early stopping),
    the relative residual ||r|| / ||P y|| below ``res.options["tol"]`` (status
    "converged"), or ``max_iter`` ("max_iter"). ``loss`` is the objective above,
    ``residual`` ||r|| / ||P y|| (the projected path's quantities at its iterates).
    Cost per iteration: the row kernel's 4 m (k + 1)(k + 2) + (n1 + n2)(k + 1)^3 / 3
    flops plus O(m + (n1 + n2) k) for the targets and one forward pass for the residual.

    ``center=True`` (``offsets`` a :class:`_CenteredEntries`): the model is
    (F G^T)_ij + mu and an iteration is three exact block minimizations of
    1/2 sum_Omega ((F G^T)_ij + mu - y_ij)^2 + lam/2 (||F||^2 + ||G||^2): the row step
    and the column step at width k (nothing unpenalized) on the targets y - mu, then
    mu = mean(y - A(F G^T)) from the forward pass the residual needs anyway. Every
    block step does not increase the objective, and a fixed point is a stationary point
    of the joint objective, i.e. of the centered path's 1/2 ||C (A(F G^T) - y)||^2 +
    penalty (mu eliminated); ``residual`` is ||C (A(F G^T) - y)|| / ||C y|| as there.
    Cost: the row kernel at width k (that of ``center=False``) plus O(m) per iteration.

    ``verbose``: the progress display of :func:`~lowrank_core.solve` (``progress=True``:
    a tqdm bar, or without tqdm a throttled "als: iteration t/max_iter residual=..."
    line on stderr), updated after every iteration with ``residual`` above and closed
    with the final iteration.
    """
    import time as _time

    from .methods.als import AlternatingLeastSquares, RowSolves, auto_ridge
    from .recording import Progress
    base = offsets.base
    biased = isinstance(offsets, _BiasProjectedEntries)   # else center=True: mu only
    n1, n2 = base.shape
    m = base.m
    F0, G0 = res.factors
    dt = F0.dtype
    k = F0.shape[1]
    K = k + 1 if biased else k
    itype = _index_type(n1, n2, m)
    rows = np.asarray(base.rows).astype(itype, copy=False)
    cols = np.asarray(base.cols).astype(itype, copy=False)
    nt = base.n_threads
    by_row = RowSolves(rows, cols, n1, itype, K, dt, nt)
    by_col = RowSolves(cols, rows, n2, itype, K, dt, nt)
    opts = AlternatingLeastSquares.check_options({})
    rcond = 10.0 * K * float(np.finfo(dt).eps)
    gram_scale = m / (float(n1) * float(n2))
    tol = float(res.options.get("tol", 0.0) or 0.0)

    y = np.ascontiguousarray(values, dtype=dt)
    rowsi, colsi = np.asarray(base.rows, dtype=np.intp), np.asarray(base.cols, dtype=np.intp)
    yd = y.astype(np.float64)
    y_norm = float(np.linalg.norm(offsets.project(y).astype(np.float64) if biased
                                  else yd - yd.mean()))
    # the augmented factors [F, 1], [G, 1] (the fixed features of the other half-step)
    # and the biases b (n1,), c (n2,) kept apart; center=True: F, G and mu
    Fa, Ga = np.ones((n1, K), dt), np.ones((n2, K), dt)
    Fa[:, :k], Ga[:, :k] = F0, G0
    if biased:   # the optimal biases for the start (b absorbs mu)
        b0, c0 = offsets.biases.solve(yd - base.forward_factored(F0, G0))
        bias = {"row": b0.astype(dt), "col": c0.astype(dt)}
    else:        # mu: set to the optimal mean by every evaluate()
        bias = {"mu": 0.0}
    target = np.empty(m, dt)
    fit = np.empty(m, dt)

    def evaluate():
        base._forward_factored_into(np.ascontiguousarray(Fa[:, :k]),
                                    np.ascontiguousarray(Ga[:, :k]), fit)
        if biased:
            r = fit.astype(np.float64) + bias["row"][rowsi] + bias["col"][colsi] - y
        else:    # the mu block step: the mean residual, then r has zero mean
            r = fit.astype(np.float64) - yd
            mu = -float(r.mean())
            bias["mu"] = mu
            r += mu
        rr = float(r @ r)
        pen = float(np.vdot(Fa[:, :k], Fa[:, :k]) + np.vdot(Ga[:, :k], Ga[:, :k]))
        return 0.5 * rr + 0.5 * reg * pen, (np.sqrt(rr) / y_norm if y_norm > 0 else 0.0)

    loss, relres = evaluate()
    progress = Progress(verbose, max_iter, "als")
    progress.update(0, relres)
    hist = {name: list(np.asarray(v)) for name, v in res.history.items()}
    ridge, singular = [], []
    status, message = "max_iter", f"reached max_iter = {max_iter}"
    t0 = _time.perf_counter()
    t_start = float(hist["time"][-1]) if hist.get("time") else 0.0
    it = 0
    if tol and relres <= tol:
        status, message = "converged", "the start already fits to tol"
    else:
        for it in range(1, max_iter + 1):
            n_sing = 0
            last = (Fa.copy(), Ga.copy(), dict(bias))   # O((n1 + n2) k)
            # row step: unknown [F, b], fixed [G, 1], targets y - c; then the columns
            for solves, mine, other, lines, side, other_side in (
                    (by_row, Fa, Ga, colsi, "row", "col"),
                    (by_col, Ga, Fa, rowsi, "col", "row")):
                # reg, or ALS's damping="auto" (the vanishing ridge)
                lam = reg if reg else auto_ridge(opts["damping_scale"], relres, gram_scale,
                                                 other[:, :k], k)
                if biased:
                    np.subtract(y, bias[other_side][lines], out=target)
                else:
                    np.subtract(y, dt.type(bias["mu"]), out=target)
                n_sing += solves.solve(target, other, mine, 1.0, lam, rcond,
                                       n_unpenalized=int(biased))
                if biased:
                    bias[side] = mine[:, k].copy()
                    mine[:, k] = 1
                if side == "row":
                    ridge.append(float(lam))
            singular.append(n_sing)
            loss, relres = evaluate()
            if not np.isfinite(loss):   # return the last finite iterate
                Fa[...], Ga[...] = last[0], last[1]
                bias.clear()
                bias.update(last[2])
                loss, relres = evaluate()
                it -= 1
                status, message = "diverged", (f"non-finite objective at iteration "
                                               f"{it + 1}; iterate {it} returned")
                break
            progress.update(it, relres)
            now = t_start + _time.perf_counter() - t0
            for name, v in (("iteration", it), ("step", 1.0), ("step_G", 1.0),
                            ("loss", loss), ("residual", relres), ("time", now)):
                if name in hist:
                    hist[name].append(v)
            state = {"n_iter": it, "F": Fa[:, :k].copy(),   # copies: Fa is updated
                     "G": Ga[:, :k].copy(), "loss": loss,          # in place (K == k)
                     "residual": relres, "status": "running"}
            try:
                monitor(state)
            except StopIteration:
                status, message = "callback", "stopped by the estimator's monitor"
                break
            if tol and relres <= tol:
                status, message = "converged", (f"relative residual {relres:.3g} <= tol = "
                                                f"{tol:g} at iteration {it}")
                break
    progress.close(it, relres)
    for name, v in hist.items():
        res.history[name] = np.asarray(v, dtype=np.float64)
    res["F"], res["G"] = Fa[:, :k].copy(), Ga[:, :k].copy()
    res["n_iter"], res["loss"], res["residual"] = it, loss, relres
    res["status"], res["message"] = status, message
    res["time"] = t_start + _time.perf_counter() - t0
    res["ridge"], res["singular_rows"] = ridge, singular
    res["n_evaluations"] = int(res.get("n_evaluations", 0)) + it
    res.options["max_iter"] = max_iter
    res.options["biases_fast_path" if biased else "center_fast_path"] = True


def _relative_change(old, new):
    """||F1 G1^T - F0 G0^T||_F / ||F0 G0^T||_F from the factors, O((n1 + n2) k^2).

    With W = [F0, F1], V = [G0, G1] (float64) and the 2k x 2k Grams W^T W, V^T V, every
    term of ||F1 G1^T - F0 G0^T||^2 = ||M1||^2 + ||M0||^2 - 2 <M0, M1> is a trace of a
    product of k x k blocks (<Fa Ga^T, Fb Gb^T> = sum((Fa^T Fb) * (Ga^T Gb))): two GEMMs
    and O(k^2). That sum cancels when the change is tiny (its absolute rounding is
    about eps ||M0||^2), so below a relative change of 1e-5 the exact form is used:
    F1 G1^T - F0 G0^T = [F1, -F0] [G1, G0]^T, so with thin QRs [F1, -F0] = Qa Ra,
    [G1, G0] = Qb Rb its norm is ||Ra Rb^T||_F (accurate to rounding of the factors);
    the denominator likewise from F0 = Qc Rc, G0 = Qd Rd."""
    (F0, G0), (F1, G1) = old, new
    k = F0.shape[1]
    W = np.hstack([F0, F1]).astype(np.float64, copy=False)
    V = np.hstack([G0, G1]).astype(np.float64, copy=False)
    if not (np.isfinite(W).all() and np.isfinite(V).all()):
        return np.inf
    A, B = W.T @ W, V.T @ V
    m00 = float(np.sum(A[:k, :k] * B[:k, :k]))
    m11 = float(np.sum(A[k:, k:] * B[k:, k:]))
    m01 = float(np.sum(A[:k, k:] * B[:k, k:]))
    if m00 > 0:
        ratio2 = (m11 + m00 - 2.0 * m01) / m00
        if ratio2 >= 1e-10:
            return float(np.sqrt(ratio2))
    F0, G0, F1, G1 = W[:, :k], V[:, :k], W[:, k:], V[:, k:]
    Ra = np.linalg.qr(np.hstack([F1, -F0]), mode="r")
    Rb = np.linalg.qr(np.hstack([G1, G0]), mode="r")
    Rc = np.linalg.qr(F0, mode="r")
    Rd = np.linalg.qr(G0, mode="r")
    base = float(np.linalg.norm(Rc @ Rd.T))
    return float(np.linalg.norm(Ra @ Rb.T)) / base if base > 0 else np.inf


def _factored_singular_values(F, G):
    """Singular values of F G^T from thin QRs F = Qf Rf, G = Qg Rg: svd(Rf Rg^T)."""
    Rf = np.linalg.qr(F.astype(np.float64), mode="r")
    Rg = np.linalg.qr(G.astype(np.float64), mode="r")
    return np.linalg.svd(Rf @ Rg.T, compute_uv=False)


def _ridge_rows(rows, cols, values, n_rows, G, reg, n_threads, bias=False):
    """Row factors f_i = (G_Oi^T G_Oi + reg I)^{-1} G_Oi^T x_Oi through the compiled ALS
    row-solve kernel (minimal-norm solution when singular; 0 for empty rows).

    ``bias``: also a per-row intercept b_i, not penalized: (f_i, b_i) = argmin
    ||G_Oi f + b 1 - x_Oi||^2 + reg ||f||^2, the kernel at width k + 1 on [G, 1] with
    ``n_unpenalized=1``; returns (F, b)."""
    from ._threads import resolve_n_threads
    from .methods.als import RowSolves
    if bias:
        G = np.hstack([G, np.ones((G.shape[0], 1), G.dtype)])
    k, dt = G.shape[1], G.dtype
    itype = _index_type(n_rows, G.shape[0], max(1, values.size))
    solves = RowSolves(rows.astype(itype), cols.astype(itype), n_rows, itype, k, dt,
                       resolve_n_threads(n_threads))
    F = np.zeros((n_rows, k), dt)
    y = np.ascontiguousarray(values, dtype=dt)
    if y.size:
        rcond = 10.0 * k * float(np.finfo(dt).eps)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solves.solve(y, G, F, 1.0, reg, rcond, n_unpenalized=int(bias))
    return (np.ascontiguousarray(F[:, :-1]), F[:, -1].copy()) if bias else F

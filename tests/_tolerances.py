"""Named tolerances for numerical tests, each with the reason for its size."""

#: Algebraic identities computed two ways in double precision.
EXACT = dict(rtol=1e-12, atol=0.0)
#: Identities that pass through a Cholesky / matrix inverse of moderately conditioned
#: T x T blocks (T <= 20): a few hundred ulps of accumulated rounding.
LINALG = dict(rtol=1e-10, atol=1e-13)
#: Closed-form results against R printed with >= 10 significant digits.
CLOSED_FORM_REF = dict(rtol=1e-8, atol=0.0)
#: Iterative fits (REML/ML/GEE) against R: both optimisers stop at ~1e-8 in the
#: objective, which moves parameters by ~1e-6 relative.
ITERATIVE = dict(rtol=1e-5, atol=0.0)
#: Monte-Carlo checks: allowed deviation in units of the Monte-Carlo standard error.
MC_K = 4.0
#: GEE against geepack / statsmodels with both solvers run to ~1e-10 in the coefficients
#: and the same moment estimators: agreement is ~1e-9, so 1e-6 leaves ample margin.
GEE_REF = dict(rtol=1e-6, atol=0.0)
#: geeCRT vignette numbers (published-cases A5): geeCRT stops at epsilon = 1e-3, so its
#: printed coefficients are within ~5e-4 (absolute) and its SEs ~2e-4 (relative) of a
#: fully converged fit at the same correlation parameters.
GEECRT_BETA_ATOL = 5e-4
GEECRT_SE = dict(rtol=2e-4, atol=0.0)
#: geeCRT quantities that depend on its loosely converged correlation estimates (alpha
#: steps stop at 1e-3): correlations ~1.3e-3 relative; model-based SEs and SEs after
#: re-estimating alpha ~1e-3.
GEECRT_ALPHA = dict(rtol=2e-3, atol=0.0)
GEECRT_LOOSE = dict(rtol=1e-3, atol=0.0)
#: A moment estimator evaluated once more at a converged GEE solution (tol 1e-10): the
#: fixed point holds to ~1e-9.
GEE_FIXED_POINT = dict(rtol=1e-8, atol=0.0)
#: Sandwiches that contain a central-difference Jacobian (step ~1e-6 relative) computed in
#: both implementations: truncation error ~1e-9, cancellation ~1e-10; 1e-6 is safe.
NUM_JACOBIAN = dict(rtol=1e-6, atol=0.0)
#: GLMM estimates against glmmTMB after Newton-polishing its optimum in R (gradient ~1e-12):
#: both optima agree to ~1e-9 relative; the brief's 1e-5 is the contract.
GLMM_EST = dict(rtol=1e-5, atol=0.0)
#: GLMM standard errors against glmmTMB's sdreport: ours come from forward differences
#: (step 1e-6) of the exact Laplace gradient, ~1e-5 relative at worst.
GLMM_SE = dict(rtol=1e-4, atol=0.0)
#: GLMM log-likelihoods (absolute, nats): both at the same optimum to ~1e-10.
GLMM_LOGLIK_ATOL = 1e-6
#: lme4::glmer optima (bobyqa, rhoend 1e-10) sit ~1e-5 relative from the exact optimum in
#: the worst coefficient; compare in units of the standard error.
GLMER_EST_SE_UNITS = 2e-4
#: glmer's vcov comes from its own finite-difference Hessian (deriv12, step 1e-4) in (theta, beta):
#: ~1e-3 relative from the exact Hessian.
GLMER_SE = dict(rtol=3e-3, atol=0.0)
#: glmer log-likelihood at its (slightly suboptimal) optimum: within 1e-5 nats of ours.
GLMER_LOGLIK_ATOL = 1e-5
#: clubSandwich's full CR covariance and Satterthwaite p-values: the off-diagonal entries
#: are sums with cancellation (relative error ~1e-8 / correlation) and a t tail amplifies a
#: relative error in t by ~t^2 (~10), so 1e-7 where the SEs agree to 1e-8.
CLUBSANDWICH_VCOV_REL = 1e-7
#: clubSandwich on a glm with aliased (NA) coefficients: R's bread is glm's cov.unscaled from
#: the working weights of its last IRLS iteration, which for the treatment x period model
#: differs from the inverse information at the final fitted values by ~3e-6 (checked in R:
#: clubSandwich's CR0 equals the same formula at the final fit only to 1.6e-7).
CLUBSANDWICH_ALIASED = dict(rtol=1e-6, atol=0.0)

# --------------------------------------------------------------------------------------
# Scalars for ``pytest.approx(rel=, abs=)`` and for composing ``rtol=`` / ``atol=``.
# Double-precision epsilon is 2.2e-16; "ulp" below means one unit in the last place.
# A bare ``0`` / ``0.0`` in a test means "exactly" and needs no name.
# --------------------------------------------------------------------------------------

#: One correctly rounded operation (e.g. ``1 / n``): within 1 ulp, 2.2e-16 relative.
ONE_OP_REL = 1e-15
#: The same number after a handful of elementary operations (``exp`` of a stored value, a
#: mean recomputed, a copy through a DataFrame): tens of ulps.
ULP_REL = 1e-14
#: The same algebra computed two ways in double precision (== ``EXACT["rtol"]``).
EXACT_REL = 1e-12
#: Through a Cholesky / inverse / QR / eigen-decomposition of small, moderately conditioned
#: matrices, ours against another implementation (numpy, R's ``lm``) on the same inputs
#: stored with 17 digits (== ``LINALG["rtol"]``).
LINALG_REL = 1e-10
#: A structured computation (closed form, Woodbury, block-wise GLS, sparse normal
#: equations) against a brute-force dense one of the same model: explicit inverses of
#: N x N covariances (N ~ 50-500) or dummy-coded normal equations, whose condition numbers
#: (~1e3-1e5) amplify rounding to ~1e-11; 1e-9 leaves margin.
DENSE_REL = 1e-9
#: Two linear-algebra routes to the same result on badly scaled matrices: council-period
#: counts in the thousands (entries ~1e7, so a null eigenvalue rounds to ~1e-9), or
#: hypothesis-drawn designs with random cluster sizes (1-30), cohort churn and
#: near-singular information (condition numbers ~1e7): eps x cond ~1e-9.
ILL_SCALED_REL = 1e-8
#: Two IRLS fits of the same model in different parameterisations (a contrast of
#: per-period effects against the coefficient of the reparameterised model): each stops
#: at its own convergence tolerance, ~1e-9 relative in the parameters.
REPARAMETERISED_REL = 1e-8
#: Closed forms against R (or a published worked example) printed with >= 9-10
#: significant digits: about one unit in the ninth digit (== ``CLOSED_FORM_REF["rtol"]``);
#: also a closed form evaluated by another library at the same parameters (statsmodels'
#: log-likelihood), which carries its own ~1e-10 rounding.
CLOSED_FORM_REL = 1e-8
#: The covariance of a GLS estimate in the brute-force dense route: a second inversion,
#: ``inv(X' V^-1 X)``, after the N x N one (and for a dense sandwich, an eigen-root of
#: ``I - H`` per cluster), compounds ``DENSE_REL``'s amplification.
DENSE_COV_REL = 1e-8
#: A reference that solves near-singular normal equations (R, condition number squared)
#: against our SVD pseudo-inverse (e.g. ~1,700 nearly collinear regressors): observed
#: ~3e-8 relative, so 1e-6.
ILL_CONDITIONED_REF_REL = 1e-6
#: A mean or sum over thousands of terms accumulated in another order: ~sqrt(n) to n ulps,
#: ~1e-13 to 1e-12; 1e-10.
LONG_SUM_REL = 1e-10
#: A negative binomial with dispersion 1e12 against its Poisson limit: the working
#: variances differ by mu / theta <= 1e-10 relative.
POISSON_LIMIT_REL = 1e-9
#: A score the test rounds to 10 decimals (so that ties are exact): within 5e-11 of the
#: unrounded one plus the rounding of scores up to ~1e3; 1e-9.
ROUNDED_SCORE_ATOL = 1e-9
#: A variance component that R estimates as exactly zero (on the boundary): our optimiser
#: stops ~1e-8 from the optimum in the criterion, within ~1e-6 of the boundary.
BOUNDARY_VARIANCE_ATOL = 1e-6
#: Cluster-period against individual-level simulation with sigma2 = 1e-12 (same seed):
#: the rows add individual noise of SD 1e-6, so cell means differ by ~1e-6; 1e-4 is over
#: 100 SDs yet far below any structural difference (cluster effects of SD 1).
TINY_SIGMA_ATOL = 1e-4
#: A value printed with 7 significant digits (swdpwr's output): one unit in the seventh
#: significant digit is at most 1e-6 relative.
PRINTED_7_DIGITS_REL = 1e-6
#: Closed forms against numbers printed with >= 12 significant digits (computed once by an
#: independent implementation and pasted into the test).
PRINTED_12_DIGITS_REL = 1e-10
#: Iterative fits against R's iterative fits, both stopped ~1e-8 in the objective
#: (== ``ITERATIVE["rtol"]``): ~1e-6 relative in the parameters.
ITERATIVE_REL = 1e-5
#: The same iterative fit run twice on the same data presented differently (relabelled
#: factor levels, reordered columns): both optimiser paths agree up to rounding, so the
#: coefficients agree to ~1e-11, while quantities that depend on the converged variance
#: parameters (standard errors; the optimiser stops at ~1e-8 in the criterion) to ~1e-8.
REFIT_REL = 1e-9
REFIT_SE_REL = 1e-7
#: The same optimiser on the same sufficient statistics through two code paths (the fast
#: cluster-period LMM against ``sw.fit``): the paths differ in the order of the additions,
#: which moves the stopping point of a 1e-8-tolerance optimiser by ~1e-7 relative.
SAME_OPTIMISER = dict(rtol=1e-6, atol=1e-10)
#: scipy's special-function inverses (beta quantiles from boost's root finder) against a
#: closed form: accurate to ~1e-13, so 1e-10.
SPECIAL_FUNCTION_REL = 1e-10
#: A scipy distribution function evaluated at its own computed quantile: the quantile's
#: ~1e-12 error is amplified by density / tail (up to ~1e3 in a binomial tail).
QUANTILE_ROUND_TRIP_REL = 1e-8


def printed(decimals: int) -> float:
    """Half a unit in the last printed digit of a number printed with ``decimals`` decimals.

    A reference printed as ``-0.0797`` (4 decimals) is the true value rounded, so the true
    value lies within ``printed(4) = 5e-5`` of it.
    """
    return 0.5 * 10.0**-decimals


# ----------------------------------------------------------------- finite differences
#: Central differences (step 1e-6) of a deviance of size ~10-1000: truncation ~h^2 f''' is
#: ~1e-12 but cancellation eps |f| / h is ~1e-8 to 1e-7; compared with an analytic
#: gradient of size ~1 this gives 1e-5 relative with a 1e-6 absolute floor.
CENTRAL_DIFF_GRADIENT = dict(rtol=1e-5, atol=1e-6)
#: Central differences (step 1e-6 or 1e-5 relative) of a smooth quantity of order one
#: (a covariance matrix, an analytic gradient, a delta-method mean): truncation ~h^2 ~1e-12,
#: cancellation eps / h ~2e-10 relative, amplified by the products that follow: 1e-6.
CENTRAL_DIFF_REL = 1e-6
#: Absolute floor for entries of such finite-difference products that are zero in exact
#: arithmetic: their cancellation residue, eps |V| / h ~2e-10 for entries of order one.
CENTRAL_DIFF_ATOL = 1e-9
#: Floor for a central-difference Hessian relative to its largest entry: rounding of the
#: differenced gradients, eps |g| / h with h ~1e-5 |phi|, is ~1e-8 of the Hessian scale.
CENTRAL_DIFF_HESS_FLOOR = 1e-7

# ----------------------------------------------------------------- absolute floors
# Floors for entries that are zero in exact arithmetic (a base period normalised to zero, a
# structural zero of a covariance, a contrast that cancels), where a relative tolerance
# means nothing: the computed value is rounding residue, eps x the size of the terms that
# cancelled x their number.  Each floor is >= 10x that residue for the comparisons that
# use it (the terms range from ~1e-4 for small covariances to ~10 for sums of squares), and
# is named by its size so a reader sees how tight it is.  They also serve as absolute
# tolerances for quantities of order one that may be near zero (differences of means,
# weights that sum to one or zero), compared at that same rounding level.
ZERO_ATOL_1E9 = 1e-9
ZERO_ATOL_1E10 = 1e-10
ZERO_ATOL_1E12 = 1e-12
ZERO_ATOL_1E13 = 1e-13
ZERO_ATOL_1E14 = 1e-14
ZERO_ATOL_1E15 = 1e-15
ZERO_ATOL_1E16 = 1e-16
#: Within-cell sums of squares of rows ``scale * (100 + N(0, 1))``: the floor
#: ``SS_ROUNDING * scale**2 * n_rows`` only matters for cells whose sum of squares is exactly
#: zero (one row) and is far below one ulp of the squared data (~1e4 scale**2), so those
#: cells must come out exactly zero, at every data scale.
SS_ROUNDING = 1e-20

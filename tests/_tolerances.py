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
#: GLMM standard errors against glmmTMB's sdreport: ours come from the closed-form Laplace
#: Hessian (``_core.laplace_hessian``; ~1e-8 of central differences), the NB log-size column
#: and AGQ fits from forward differences (step 1e-6) of the exact gradient, ~1e-5 relative.
GLMM_SE = dict(rtol=1e-4, atol=0.0)
#: GLMM log-likelihoods (absolute, nats): both at the same optimum to ~1e-10.
GLMM_LOGLIK_ATOL = 1e-6
#: Two Laplace fits of the same data, one holding a variance parameter at the other's optimum
#: (``fit_glmm_core(fixed=)``): both stop at the same Newton criterion, measured to agree to
#: ~1e-7 absolute in the parameters (SDs 0.1-0.3, atanh r ~1.7, log-rate betas ~1).
PROFILE_AT_MLE_ATOL = 1e-6
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

# ----------------------------------------------------------------- optimisers and fits
#: A standard deviation (~1e-3) of values that themselves agree only to 1e-12 absolute:
#: ~1e-9 relative.
SD_OF_CLOSE_VALUES_REL = 1e-9
#: scipy's NNLS (active set, its own tolerance scaled by the data) recovering the exact
#: simplex weights of a noise-free convex combination: ~1e-10; 1e-8.
NNLS_RECOVERY_ATOL = 1e-8
#: A contrast built from weights a QP solver recovered (SLSQP / NNLS, ~1e-8 in the weights,
#: outcomes of order one): 1e-6.
QP_RECOVERY_ATOL = 1e-6
#: Synthetic-control weights from our solver against scipy's SLSQP (ftol 1e-14) on the same
#: strictly convex problem: both at the unique optimum to ~1e-11.
QP_SOLVERS_REL = 1e-9
#: An estimator's linear coefficients recovered by unit perturbations of the data: each is a
#: difference of two estimates of the size of the data, so cancellation leaves ~1e-10 relative
#: error in the coefficients and in a standard error built from them; 1e-7.
UNIT_PERTURBATION_REL = 1e-7
#: The relative stopping tolerance the tests hand to the permutation-interval inverter (an
#: input of the routine, far below the Monte-Carlo resolution of any interval end).
INVERTER_RTOL = 1e-9
#: Two GLMM fits of one likelihood surface (a refit with theta * x in the offset against the
#: original): each optimiser stops at its own tolerance, ~1e-5 apart in the estimate.
TWO_OPTIMISER_STOPS_ATOL = 2e-5
#: The same likelihood surface maximised from two data layouts (rows vs cells): both
#: optimiser runs stop within ~1e-8 of the maximum, ~1e-6 apart in the parameters and the
#: log-likelihood.
SAME_SURFACE_ATOL = 1e-6
#: The same objective maximised twice (AGQ with one node is the Laplace approximation):
#: parameters ~1e-8 apart, log-likelihoods ~1e-10 nats.
SAME_OBJECTIVE = dict(rtol=1e-7, atol=1e-9)
SAME_OBJECTIVE_LOGLIK_ATOL = 1e-9
#: The same objective from an equivalent input (exposure = E against offset = log E): the
#: optimiser takes the same path up to rounding.
EQUIVALENT_INPUT_REL = 1e-9
#: GLMM 0/1 rows against events/trials (likelihoods equal up to sum log choose(n, y)): the
#: same optimum to ~1e-9 (cluster model) or ~1e-8 (nested + decay, flatter surface).
ROWS_VS_AGGREGATE = dict(rtol=1e-8, atol=1e-10)
ROWS_VS_AGGREGATE_DECAY_REL = 1e-7
#: Log-likelihoods at the same (Newton-polished) optimum, or differing by a known constant.
LOGLIK_SAME_OPTIMUM_ATOL = 1e-8
ROWS_VS_AGGREGATE_LOGLIK_ATOL = 1e-7
#: R's log-likelihood difference between two separately optimised glmer fits (rows and
#: aggregated, bobyqa): each stops ~1e-5 nats from its optimum.
GLMER_LOGLIK_DIFF_ATOL = 1e-4
#: Our log-likelihood against scipy's adaptive quadrature (epsrel 1e-12) summed over
#: clusters: ~1e-10 nats; 1e-8.
QUADRATURE_LOGLIK_ATOL = 1e-8
#: A singular GLMM fit (both variances at 0) against the logistic GLM by IRLS (tol 1e-12):
#: our optimiser stops ~1e-8 from the optimum in the criterion (~1e-6 in the estimate) and
#: our SEs come from a finite-difference Hessian (~1e-5).
GLM_LIMIT_EST_REL = 1e-6
GLM_LIMIT_SE_REL = 1e-5
#: A negative binomial whose size runs to its upper bound (1e6) against the Poisson fit:
#: the working variances differ by mu / 1e6, so the estimates agree to 1e-4 of an SE.
POISSON_LIMIT_SE_UNITS = 1e-4
#: A decay model whose correlation runs to r = 1 against the cluster model it then is:
#: the same optimum up to the optimisers' stops (log-likelihood 1e-6 nats, estimate 1e-5).
BOUNDARY_MODEL_LOGLIK_ATOL = 1e-6
BOUNDARY_MODEL_REL = 1e-5
#: ... and one stopped at r > 0.9999 (not exactly 1): the log-likelihoods differ by the
#: remaining decay, < 1e-3 nats.
NEAR_BOUNDARY_LOGLIK_ATOL = 1e-3
#: An unrelated (independent) covariate added to a fit moves the treatment estimate by
#: about its own noise, < 0.05 on the log scale for the reference data set.
UNRELATED_COVARIATE_ATOL = 0.05
#: A Wald limit mapped back and forth through log/exp or atanh/tanh: atanh near 1
#: amplifies rounding by 1 / (1 - r^2) (~1e3 at r = 0.999).
TRANSFORM_ROUND_TRIP_REL = 1e-9
#: The decay GLMM against glmmTMB at the same Laplace optimum (Newton-polished): estimate
#: and SE ~1e-7 relative; the variance parameters sit on a flat ridge in (gamma2, r)
#: (glmmTMB's optimum is 2e-10 nats lower and 4e-6 away in r): 1e-4; a zero tau2 to 1e-8.
GLMMTMB_DECAY_REL = 1e-6
FLAT_LIKELIHOOD_VC_REL = 1e-4
BOUNDARY_TAU2_ATOL = 1e-8
#: A direct (dense, scipy-optimised) REML/ML fit against ours: both optimisers stop ~1e-8
#: in the criterion, ~1e-7 relative in the variance parameters; 1e-6.
DIRECT_FIT_REL = 1e-6
#: Variance components and decay against glmmTMB (both optima Newton-polished to gradients
#: < 1e-6 nats per unit parameter; agreement is ~1e-7 relative, the issue's contract is 1e-4).
GLMMTMB_COMPONENTS = dict(rtol=1e-4, atol=1e-10)
#: ... for a fit whose NB size is not identified (the likelihood rises by 2.6e-6 nats from
#: our cap to glmmTMB's stop, tau2 moves 1e-4 and the decay 7e-4 relative): 1e-3; the size
#: of an identified NB fit is estimated less sharply (small curvature): also 1e-3.
GLMMTMB_FLAT = dict(rtol=1e-3, atol=1e-10)
#: ... and its log-likelihood (the flat direction costs 2.6e-6 nats): 1e-5 nats.
GLMMTMB_FLAT_LOGLIK_ATOL = 1e-5
GLMMTMB_NB_SIZE_REL = 1e-3
#: Our REML variance components against lmer's (bobyqa, rhoend 1e-12): both optimisers
#: stop within ~1e-7 relative of the optimum (achieved 3e-7); 1e-5 is the ITERATIVE contract.
LMER_VC_APPROX = dict(rel=1e-5)
#: Fixed effects against lmer at its slightly different optimum: ~1e-7 relative; 1e-6.
LMER_BETA_REL = 1e-6
#: The same sandwich computed two ways in double precision (cells vs dense rows).
SANDWICH_TWO_WAYS = dict(rtol=1e-9, atol=0.0)
#: GLMM coefficients and variance against R's Newton-polished optimum (gradient ~3e-8):
#: ~1e-8 apart absolute, ~1e-7 relative in the variance.
GLMM_R_BETA_ATOL = 1e-7
GLMM_R_VC_REL = 1e-6
#: Per-cluster Laplace gradients batched against one cluster at a time: each path re-solves
#: the modes to 1e-10, so the gradients agree to ~1e-10.
BATCHED_MODES = dict(rtol=1e-9, atol=1e-9)
#: Per-cluster scores by central differences of per-cluster Laplace values (step 1e-5, modes
#: re-solved to 1e-10): truncation ~1e-10, cancellation ~1e-16 * |l_i| / h ~ 1e-9 relative;
#: the sandwich built from them agrees with the exact-gradient one to ~1e-8.
GLMM_FD = dict(rtol=1e-6, atol=0.0)
#: A marginal (population-averaged) quantity by adaptive quadrature (epsabs 1e-13) against
#: ours (Gauss-Hermite): ~1e-10; 1e-8.  Its SE through central differences (step 1e-5)
#: of that quadrature functional: ~1e-6; 1e-5.
QUADRATURE_REL = 1e-8
CENTRAL_DIFF_QUAD_REL = 1e-5
#: Central differences (step 1e-6) of a Laplace / AGQ value whose inner modes are solved to
#: 1e-10 to 1e-12: differencing error ~1e-7 to ~1e-6 (relative and absolute, gradients of
#: order one); the decay models' modes are solved less tightly (1e-10): 1e-5.
CENTRAL_DIFF_LAPLACE = dict(rtol=1e-6, atol=1e-6)
CENTRAL_DIFF_LAPLACE_DECAY = dict(rtol=1e-5, atol=1e-5)
#: Central differences (step 1e-6 in atanh r) of the closed-form AR(1) Cholesky factor:
#: truncation ~h^2 ~1e-12, rounding ~eps / h ~2e-10; irregular times: 1e-8 absolute.
CENTRAL_DIFF_AR1 = dict(rtol=1e-7, atol=1e-9)
CENTRAL_DIFF_AR1_ATOL = 1e-8
#: A 2-D trapezoid rule on 2001 nodes of a kernel with a kink on the diagonal: error
#: O(h^2) with h = x / 2000 <= 1.5e-3, ~1e-7 relative; 1e-6.
TRAPEZOID_REL = 1e-6
#: The report's numbers against a fresh ``sw.fit`` of the same data: deterministic up to
#: BLAS threading (~1e-12); quantities through a tail probability or ``exp`` (p-values,
#: achieved power, ratios) amplify that by ~z^2: 1e-10 and 1e-8.
REFIT_SAME_DATA_REL = 1e-10
REFIT_SAME_DATA_TAIL_REL = 1e-8
#: A marginal (population-averaged) estimand by Gauss-Hermite quadrature against the
#: conditional one where the two coincide: the ratio cancels to ~1e-12 (1e-10), while its
#: SE adds the variance-parameter part of the influence, which cancels only up to the
#: forward-difference Hessian of the Laplace fit (~1e-7): 1e-6.
MARGINAL_EST_REL = 1e-10
MARGINAL_SE_REL = 1e-6
#: The variance components' SDs against glmer / glmmTMB: ~1e-4 relative at interior optima;
#: a boundary fit is exactly 0 here and ~1e-5 in R (bobyqa stops short of the boundary).
RE_SD = dict(rtol=2e-4, atol=1e-4)
#: glmmTMB's NB size at its optimum: the size is estimated less sharply than the other
#: parameters (small curvature): 1e-4.
NB_SIZE_REL = 1e-4

# ----------------------------------------------------------------- moved from test modules
#: R package ``staggered`` on identical inputs: deterministic linear algebra by different
#: algorithms (R: normal equations with LDLT and an SVD ginv; ours: an SVD pinv and an
#: eigen-decomposition): ~1e-12 in practice.
R_SAME_ALGEBRA_REL = 1e-8
#: lme4 and our optimiser both stop within ~1e-8 of the optimum of the (RE)ML criterion;
#: fixed effects and log-likelihoods then agree to ~1e-7 relative, the variances to ~1e-6,
#: and what depends on the variances through derivatives (Kenward-Roger df, SE, p-value
#: and adjusted covariance; pbkrtest differentiates numerically) to ~1e-5.
LME4_FIXEF_REL = 1e-6
LME4_LOGLIK_REL = 1e-6
LME4_VARCOMP_REL = 1e-4
LME4_DF_REL = 1e-4
#: Power against swCRTdesign / SteppedPower, which compute the same GLS variance: floating
#: point only (~1e-12 observed); 1e-6 absolute on the power is the issue's contract.
PEER_POWER_ATOL = 1e-6
#: Central difference with step 1e-5 of a log-likelihood of size ~1e3 whose modes are solved
#: to 1e-13: truncation ~1e-10 x third derivative, rounding ~1e-16 x 1e3 / 1e-5 = 1e-8
#: relative to the score; 1e-6 leaves a wide margin and still catches any missing term
#: (the log-determinant part alone is ~1e-2 of the score).
SCORE_FD = dict(rtol=1e-6, atol=0.0)
#: A one-step (Newton from no effect) estimate against the fitted GLMM estimate: the step
#: ignores the change in curvature over the effect (0.13 on the log scale), ~1e-4 here;
#: 5e-3 is the documented closeness.
ONE_STEP_ESTIMATE_ATOL = 5e-3
#: an average of powers recomputed one by one: rounding only (power is O(1))
POWER_MEAN_ATOL = 1e-12
#: Variance components, the decay r and the NB size against glmmTMB: both optima are
#: Newton-polished to gradients ~1e-10, where they agree to ~1e-7 relative; 1e-4 is the contract.
GLMMTMB_DECAY_VC_REL = 1e-4
#: Wald SEs of the variance components on the working scale (log variance, atanh r, log k):
#: ours from forward differences (step 1e-6) of the exact gradient, glmmTMB's from its exact
#: Hessian, so ~1e-5 relative; 1e-3 allows for the delta-method products.
GLMMTMB_DECAY_VC_SE_REL = 1e-3
#: Sandwich matrices against R at lmer's slightly different optimum: the variance components
#: differ by ~3e-7 relative, which moves the covariances by ~6e-8 (achieved); 1e-6 relative
#: to the largest entry is the brief's contract.
SANDWICH_REF_RTOL = 1e-6
#: Sum of per-cluster fixed-effect Hessians (forward differences, step 1e-5) against the
#: fit's Hessian (closed form; forward differences, step 1e-6, for the NB log-size and AGQ):
#: the O(h) error of the differences, ~1e-5 relative (achieved ~2e-6); 1e-4 leaves room.
GLMM_HESS_RTOL = 1e-4
#: The fitter's forward-difference variance columns (step 1e-6 of the exact gradient, modes
#: re-solved to 1e-10 from an O(h^2) start) against the closed-form ones, relative to each
#: column's largest entry: the tau-tau entry is off by ~1e-4 (measured 8e-5 to 2e-4 on ten
#: audit points; the other columns <= 1e-5), so 1e-3.
FORWARD_VAR_HESS_REL = 1e-3
#: Closed-form per-cluster fixed-effect Hessians against central differences (step 1e-4) of
#: the exact per-cluster gradients: truncation O(h^2) ~ 1e-8 relative, cancellation
#: ~1e-16 |g| / h; achieved ~2e-10 on both cases below.
GLMM_CLUSTER_HESS_RTOL = 1e-6
#: R's per-cluster Laplace scores (numDeriv jacobian of a hand-coded Laplace likelihood at a
#: Newton-polished optimum, gradient ~3e-8) and our exact ones agree closely, but both breads
#: contain finite-difference Hessian columns (numDeriv Richardson in R, forward step 1e-6 for
#: the variance parameter here): ~1e-6 relative (achieved 1.5e-6 Poisson, 4e-6 binomial).
GLMM_R_RTOL = 1e-5
#: Profile-likelihood interval ends of estimate_variance against glmmTMB's profile (uniroot,
#: tol 1e-9, on refits polished to gradients < 1e-9): our root finder stops within 1e-4 of
#: the cutoff in sqrt(D) (~1e-4 standard errors), both optima agree to ~1e-7 relative;
#: measured agreement <= 6e-6 relative, 3.1e-5 for the NB size's upper end (a flat
#: profile): 1e-4 leaves margin.
PROFILE_ENDS = dict(rtol=1e-4, atol=1e-10)
#: 2 (loglik_max - profile loglik) at an end against the chi2_1 cutoff: the root finder's
#: 1e-4 in sqrt(D) is 2 sqrt(cutoff) 1e-4 ~ 3e-4 in D, plus the refits' ~1e-8 nats: 1e-3.
PROFILE_CUTOFF_ATOL = 1e-3

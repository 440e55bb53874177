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
#: clubSandwich on a glm with aliased (NA) coefficients: R's bread is glm's cov.unscaled from
#: the working weights of its last IRLS iteration, which for the treatment x period model
#: differs from the inverse information at the final fitted values by ~3e-6 (checked in R:
#: clubSandwich's CR0 equals the same formula at the final fit only to 1.6e-7).
CLUBSANDWICH_ALIASED = dict(rtol=1e-6, atol=0.0)

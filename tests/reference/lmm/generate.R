# Generate tests/reference/lmm/cases.json (Gaussian LMM reference numbers).
# Usage (from this directory):  python make_data.py && Rscript generate.R
# See README.md for the R / package versions used for the committed file.

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(script)) dirname(normalizePath(script)) else getwd()
source(file.path(here, "lmm_helpers.R"))

data_dir <- file.path(here, "data")

NESTED <- "(1|cluster) + (1|cluster:period)"
CLUSTER <- "(1|cluster)"

spec <- function(name, dataset, random, method, rhs_fixed, rhs_random,
                 time = "categorical", effect = "immediate", individual = FALSE,
                 covariates = NULL, note = NULL) {
  list(name = name, dataset = dataset, data_dir = data_dir, random = random, time = time,
       effect = effect, method = method, individual = individual, covariates = covariates,
       r_formula = paste("y ~", rhs_fixed, "+", rhs_random), note = note)
}

IT <- "factor(period) + treatment"
specs <- list(
  # 1. balanced, nested / Hussey-Hughes, REML / ML
  spec("nested_balanced_reml", "balanced.csv", "nested", "reml", IT, NESTED),
  spec("nested_balanced_ml", "balanced.csv", "nested", "ml", IT, NESTED),
  spec("cluster_balanced_reml", "balanced.csv", "cluster", "reml", IT, CLUSTER),
  spec("cluster_balanced_ml", "balanced.csv", "cluster", "ml", IT, CLUSTER),
  spec("nested_balanced_linear_reml", "balanced.csv", "nested", "reml",
       "period + treatment", NESTED, time = "linear"),
  spec("nested_balanced_covariates_reml", "balanced.csv", "nested", "reml",
       "factor(period) + treatment + x1 + x2", NESTED, covariates = "x1 + x2"),
  # 2. unbalanced cell sizes with empty cells
  spec("nested_unbalanced_reml", "unbalanced.csv", "nested", "reml", IT, NESTED),
  spec("nested_unbalanced_ml", "unbalanced.csv", "nested", "ml", IT, NESTED),
  spec("cluster_unbalanced_reml", "unbalanced.csv", "cluster", "reml", IT, CLUSTER),
  spec("cluster_unbalanced_ml", "unbalanced.csv", "cluster", "ml", IT, CLUSTER),
  spec("nested_unbalanced_linear_ml", "unbalanced.csv", "nested", "ml",
       "period + treatment", NESTED, time = "linear"),
  spec("nested_unbalanced_covariates_reml", "unbalanced.csv", "nested", "reml",
       "factor(period) + treatment + x1 + x2", NESTED, covariates = "x1 + x2"),
  # 3. boundary: gamma2 estimate exactly 0 (singular fit); equals the cluster-only fit
  spec("nested_boundary_reml", "boundary.csv", "nested", "reml", IT, NESTED,
       note = "singular fit: gamma2 estimate = 0; all estimates equal cluster_boundary_reml"),
  spec("nested_boundary_ml", "boundary.csv", "nested", "ml", IT, NESTED,
       note = "singular fit: gamma2 estimate = 0; all estimates equal cluster_boundary_ml"),
  spec("cluster_boundary_reml", "boundary.csv", "cluster", "reml", IT, CLUSTER),
  spec("cluster_boundary_ml", "boundary.csv", "cluster", "ml", IT, CLUSTER),
  # 4. closed cohort: individual random intercept on top of nested
  spec("nested_cohort_reml", "cohort.csv", "nested", "reml", IT,
       paste(NESTED, "+ (1|individual)"), individual = TRUE),
  spec("nested_cohort_ml", "cohort.csv", "nested", "ml", IT,
       paste(NESTED, "+ (1|individual)"), individual = TRUE),
  # 5. exposure-time indicators, TATE over all observed exposure times (equal weights)
  spec("eti_nested_reml", "eti.csv", "nested", "reml",
       "factor(period) + factor(exposure_time)", NESTED, effect = "eti"),
  spec("eti_nested_ml", "eti.csv", "nested", "ml",
       "factor(period) + factor(exposure_time)", NESTED, effect = "eti"),
  spec("it_on_eti_nested_reml", "eti.csv", "nested", "reml", IT, NESTED,
       note = "immediate-treatment model fitted to the ETI data (misspecified on purpose)"),
  # 7. random treatment effect per cluster
  spec("random_slope_corr_reml", "random_slope.csv", "random-slope-corr", "reml", IT,
       "(1 + treatment|cluster)"),
  spec("random_slope_corr_ml", "random_slope.csv", "random-slope-corr", "ml", IT,
       "(1 + treatment|cluster)"),
  spec("random_slope_reml", "random_slope.csv", "random-slope", "reml", IT,
       "(1|cluster) + (0 + treatment|cluster)")
)

decay_specs <- list(
  spec("decay_reml", "decay.csv", "decay", "reml", IT, "ar1(factor(period) + 0 | cluster)",
       note = "glmmTMB; gamma2 = ar1 variance, decay = ar1 lag-1 correlation, tau2 = null"),
  spec("decay_ml", "decay.csv", "decay", "ml", IT, "ar1(factor(period) + 0 | cluster)",
       note = "glmmTMB; gamma2 = ar1 variance, decay = ar1 lag-1 correlation, tau2 = null")
)

cases <- list()
for (s in specs) {
  message("fitting ", s$name)
  cases[[length(cases) + 1]] <- fit_lmer_case(s)
}
for (s in decay_specs) {
  message("fitting ", s$name)
  cases[[length(cases) + 1]] <- fit_decay_case(s)
}

write_cases(cases, file.path(here, "cases.json"))
writeLines(toJSON(versions(), auto_unbox = TRUE, pretty = TRUE), file.path(here, "versions.json"))

# one-line summary per case (copied into README.md)
for (cs in cases) {
  vc <- cs$varcomp
  fmt <- function(x) if (is.null(x)) "-" else formatC(x, digits = 4, format = "g")
  cat(sprintf("%-34s est=%.6f se=%.6f ll=%.4f tau2=%s gamma2=%s sigma2=%s decay=%s eta2=%s rho=%s psi2=%s singular=%s conv=%s dtheta=%s\n",
              cs$name, cs$estimate, cs$se, cs$loglik, fmt(vc$tau2), fmt(vc$gamma2),
              fmt(vc$sigma2), fmt(vc$decay), fmt(vc$eta2), fmt(vc$rho), fmt(vc$psi2),
              cs$singular, cs$convergence$converged,
              if (!is.null(cs$optimum_check$max_abs_diff_theta))
                formatC(cs$optimum_check$max_abs_diff_theta, digits = 2, format = "e")
              else formatC(cs$optimum_check$loglik_diff, digits = 2, format = "e")))
}

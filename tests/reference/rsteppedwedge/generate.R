# Generate tests/reference/rsteppedwedge/cases.json: lme4 (REML) analyses of R steppedwedge's
# example data `sw_data_example` (continuous outcome), in the LMM fixture contract format.
# Usage (from this directory):  python make_rsteppedwedge_data.py && Rscript generate.R

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(script)) dirname(normalizePath(script)) else getwd()
source(file.path(here, "..", "lmm", "lmm_helpers.R"))

data_dir <- file.path(here, "data")
DS <- "sw_data_example_lmm.csv"
NESTED <- "(1|cluster) + (1|cluster:period)"
CLUSTER <- "(1|cluster)"

spec <- function(name, random, method, rhs_fixed, rhs_random, effect = "immediate", note = NULL) {
  list(name = name, dataset = DS, data_dir = data_dir, random = random, time = "categorical",
       effect = effect, method = method, individual = FALSE, covariates = NULL,
       r_formula = paste("y ~", rhs_fixed, "+", rhs_random), note = note)
}
IT <- "factor(period) + treatment"
ETI <- "factor(period) + factor(exposure_time)"
specs <- list(
  spec("rsw_it_nested_reml", "nested", "reml", IT, NESTED,
       note = "steppedwedge::analyze(method='mixed', exp_time='IT', re=c('clust','time'))"),
  spec("rsw_eti_nested_reml", "nested", "reml", ETI, NESTED, effect = "eti",
       note = "steppedwedge::analyze(method='mixed', estimand_type='TATE', exp_time='ETI', re=c('clust','time')); TATE over exposure times 1..5"),
  spec("rsw_it_cluster_reml", "cluster", "reml", IT, CLUSTER,
       note = "steppedwedge::analyze(method='mixed', exp_time='IT', re='clust')"),
  spec("rsw_eti_cluster_reml", "cluster", "reml", ETI, CLUSTER, effect = "eti",
       note = "steppedwedge::analyze(method='mixed', exp_time='ETI', re='clust'); TATE over exposure times 1..5")
)
# ML fits of the nested model are not included: on this data the ML estimate of gamma2 is on
# the boundary (0) and lme4 flags the Hessian check, so they are poor reference numbers.

cases <- lapply(specs, function(s) { message("fitting ", s$name); fit_lmer_case(s) })
write_cases(cases, file.path(here, "cases.json"))
writeLines(toJSON(versions(), auto_unbox = TRUE, pretty = TRUE), file.path(here, "versions.json"))

for (cs in cases) {
  vc <- cs$varcomp
  fmt <- function(x) if (is.null(x)) "-" else formatC(x, digits = 4, format = "g")
  ci <- cs$estimate + c(-1, 1) * qnorm(0.975) * cs$se
  cat(sprintf("%-22s est=%.6f se=%.6f Wald95=(%.4f, %.4f) ll=%.4f tau2=%s gamma2=%s sigma2=%s singular=%s df_satt=%.3f df_kr=%s\n",
              cs$name, cs$estimate, cs$se, ci[1], ci[2], cs$loglik, fmt(vc$tau2), fmt(vc$gamma2),
              fmt(vc$sigma2), cs$singular, cs$satterthwaite$df,
              if (is.null(cs$kenward_roger)) "-" else sprintf("%.3f", cs$kenward_roger$df)))
}

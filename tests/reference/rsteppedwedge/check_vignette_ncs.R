# Reproduce the one continuous-outcome number printed in R steppedwedge's vignette
# ("Basic package workflow": analyze(dat_cont, method = "mixed", estimand_type = "TATE",
# exp_time = "NCS", family = gaussian) -> "Treatment effect estimate: 0.526",
# "95% confidence interval: 0.329, 0.723") with plain lme4, to confirm that
# data/sw_data_example_lmm.csv is the vignette's data and that the package's mixed model is
# lme4 REML with (1|cluster) + (1|cluster:period).
# Model (as documented for steppedwedge's NCS option, n_knots_exp = 4): natural cubic spline in
# exposure time with intercept, knots at seq(0, S, length.out = 4) (boundary 0 and S = max
# exposure time), basis columns multiplied by treatment; TATE = mean of the spline effect curve
# at exposure times 1..S; Wald CI estimate +/- 1.96 SE.
# Usage (from this directory): Rscript check_vignette_ncs.R   (writes vignette_ncs.json)
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
d <- read.csv("data/sw_data_example_lmm.csv")
S <- max(d$exposure_time)
kn <- seq(0, S, length.out = 4)
basis <- function(x) splines::ns(x, knots = kn[2:3], intercept = TRUE, Boundary.knots = kn[c(1, 4)])
Bd <- basis(d$exposure_time) * d$treatment
for (i in 1:4) d[[paste0("b", i)]] <- Bd[, i]
fit <- lmer(y ~ factor(period) + b1 + b2 + b3 + b4 + (1|cluster) + (1|cluster:period), data = d,
            control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5, rhoend = 1e-10)))
bn <- paste0("b", 1:4)
B <- as.matrix(basis(1:S))
w <- rep(1 / S, S)
est <- sum(w * (B %*% fixef(fit)[bn]))
se <- sqrt(drop(t(w) %*% B %*% as.matrix(vcov(fit))[bn, bn] %*% t(B) %*% w))
out <- list(
  source = "steppedwedge vignette 'Basic package workflow' (articles/steppedwedge.md), analysis_6",
  printed = list(estimate = 0.526, ci = c(0.329, 0.723)),
  lme4 = list(estimate = est, se = se, ci = est + c(-1.96, 1.96) * se,
              loglik_reml = as.numeric(logLik(fit)), exposure_times = 1:S,
              r_formula = "y ~ factor(period) + b1 + b2 + b3 + b4 + (1|cluster) + (1|cluster:period)")
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "vignette_ncs.json")
cat(sprintf("NCS TATE(1..%d): %.6f (SE %.6f), 95%% CI (%.4f, %.4f); printed 0.526 (0.329, 0.723)\n",
            S, est, se, est - 1.96 * se, est + 1.96 * se))

# Cross-engine check (not part of cases.json): refit the nested cases with glmmTMB and print
# the differences from lme4. Usage (from this directory): Rscript cross_check_glmmTMB.R
source("lmm_helpers.R")
for (ds in c("balanced", "unbalanced", "eti")) for (reml in c(TRUE, FALSE)) {
  d <- read.csv(file.path("data", paste0(ds, ".csv")))
  fx <- if (ds == "eti") "y ~ factor(period) + factor(exposure_time)" else "y ~ factor(period) + treatment"
  f <- as.formula(paste(fx, "+ (1|cluster) + (1|cluster:period)"))
  a <- lmer(f, d, REML = reml, control = CTRL_MAIN)
  b <- glmmTMB(f, d, REML = reml,
               control = glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4)))
  va <- as.data.frame(VarCorr(a))$vcov   # cluster:period, cluster, residual
  vb <- c(VarCorr(b)$cond[["cluster:period"]][1], VarCorr(b)$cond$cluster[1], sigma(b)^2)
  cat(sprintf("%-10s REML=%-5s logLik(lme4)-logLik(glmmTMB)=% .2e  max rel diff fixef %.1e  variances %.1e\n",
              ds, reml, as.numeric(logLik(a)) - as.numeric(logLik(b)),
              max(abs(fixef(a) - fixef(b)$cond) / abs(fixef(a))), max(abs(va - vb) / va)))
}

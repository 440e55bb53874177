# Imputation estimator (Borusyak, Jaravel & Spiess 2024) on sw_small.csv, computed the direct
# way: OLS of the outcome on unit and period dummies over the untreated cells (lm), predicted
# untreated outcomes for the treated cells, then averages.  The conservative variance
# (BJS Theorem 3) is built from the explicit design matrices:
#   v_1 = w, v_0 = -Z0 (Z0'Z0)^- Z1' w,  var = sum_i (sum_t v_it e_it)^2
# with e the untreated residuals and, on treated cells, tau_it minus its cohort-period mean.
# Run from this folder: Rscript make_imputation_reference.R  -> imputation_reference.json
suppressPackageStartupMessages(library(jsonlite))
d <- read.csv("sw_small.csv")
d$treated <- as.integer(d$period >= d$first_trained)
gmax <- max(d$first_trained)
d <- d[d$period < gmax, ]                       # periods with an untreated cell
untr <- d[d$treated == 0, ]
fit <- lm(complaints ~ 0 + factor(uid) + factor(period), data = untr)
tr <- d[d$treated == 1, ]
tr$tau <- tr$complaints - predict(fit, newdata = tr)
tr$e <- tr$period - tr$first_trained
N_g <- tapply(d$uid, d$first_trained, function(u) length(unique(u)))

estimate_and_se <- function(w) {
  # w: weight of each treated row (sums to 1)
  est <- sum(w * tr$tau)
  Z <- model.matrix(~ 0 + factor(uid) + factor(period), data = d)
  Z0 <- Z[d$treated == 0, ]; Z1 <- Z[d$treated == 1, ]
  v0 <- -Z0 %*% MASS::ginv(crossprod(Z0)) %*% crossprod(Z1, w)
  cellmean <- ave(tr$tau, tr$first_trained, tr$period)
  e1 <- tr$tau - cellmean
  e0 <- residuals(fit)
  contrib <- tapply(c(w * e1, v0 * e0), c(tr$uid, untr$uid), sum)
  c(estimate = est, se = sqrt(sum(contrib^2)))
}
out <- list()
out$simple <- as.list(estimate_and_se(rep(1 / nrow(tr), nrow(tr))))
# cohort: mean over each cohort's periods, weighted by cohort size
n_per <- ave(tr$tau, tr$first_trained, FUN = length) / N_g[as.character(tr$first_trained)]
ng <- N_g[as.character(tr$first_trained)]
elig <- sum(N_g[names(N_g) != as.character(gmax)])
out$cohort <- as.list(estimate_and_se(as.numeric(ng / elig / (n_per * ng))))
for (e in 0:3) {
  w <- ifelse(tr$e == e, 1, 0); w <- w / sum(w)
  out[[paste0("event_", e)]] <- as.list(estimate_and_se(w))
}
write_json(out, "imputation_reference.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)

# GLMM reference for tests/test_sandwich_mixed.py: cluster-robust sandwich of the Laplace
# likelihood, computed in R independently of steppedwedge.
# Usage (from this directory):  Rscript generate_glmm.R
# Writes sw_glmm.csv and sandwich_glmm.json (15 significant digits).
#
# Model: y_ij ~ Poisson(pop_ij exp(b0 + period_j + theta trt_ij + a_i)), a_i ~ N(0, sigma^2)
# (and the binomial analogue with events out of trials). glmmTMB finds the optimum; the
# per-cluster Laplace log-likelihood is coded here by hand (mode of a_i by Newton, then
# f(a) + log(2 pi)/2 - log(-f''(a))/2), the optimum is polished by Newton steps on it, and
# numDeriv gives the per-cluster scores (jacobian) and Hessians in (beta, log sigma).
# The fixed-effect block of the sandwich does not depend on how sigma is parametrised.
suppressPackageStartupMessages({
  library(glmmTMB)
  library(numDeriv)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(script)) dirname(normalizePath(script)) else getwd()

set.seed(20261202)
I <- 15; Tn <- 6
start <- rep(1:5, each = 3)
dat <- expand.grid(period = 0:(Tn - 1), cluster = 0:(I - 1))[, c("cluster", "period")]
dat$treatment <- as.numeric(dat$period >= start[dat$cluster + 1])
a <- rnorm(I, 0, 0.3)
cp <- rnorm(nrow(dat), 0, 0.15)          # extra cell-level variation: misspecified model
dat$pop <- sample(15000:30000, nrow(dat), replace = TRUE)
dat$y <- rpois(nrow(dat), dat$pop * 1e-3 * exp(a[dat$cluster + 1] + cp + 0.05 * dat$period -
                                              0.2 * dat$treatment))
dat$n <- 300
dat$events <- rbinom(nrow(dat), dat$n, plogis(-1.2 + a[dat$cluster + 1] + cp - 0.3 * dat$treatment))
write.csv(dat, file.path(here, "sw_glmm.csv"), row.names = FALSE)
dat <- read.csv(file.path(here, "sw_glmm.csv"))
dat$period_f <- factor(dat$period)

X <- model.matrix(~ period_f + treatment, dat)
cl <- dat$cluster

cluster_ll <- function(par, family) {
  p <- ncol(X); beta <- par[1:p]; s <- exp(par[p + 1])
  eta0 <- as.numeric(X %*% beta)
  out <- numeric(I)
  for (g in 0:(I - 1)) {
    idx <- which(cl == g)
    f <- function(b) {
      eta <- eta0[idx] + b
      ll <- if (family == "poisson") {
        sum(dpois(dat$y[idx], dat$pop[idx] * exp(eta), log = TRUE))
      } else {
        sum(dbinom(dat$events[idx], dat$n[idx], plogis(eta), log = TRUE))
      }
      ll + dnorm(b, 0, s, log = TRUE)
    }
    d2 <- function(b) {
      eta <- eta0[idx] + b
      w <- if (family == "poisson") dat$pop[idx] * exp(eta) else dat$n[idx] * plogis(eta) * (1 - plogis(eta))
      -sum(w) - 1 / s^2
    }
    d1 <- function(b) {
      eta <- eta0[idx] + b
      r <- if (family == "poisson") dat$y[idx] - dat$pop[idx] * exp(eta) else dat$events[idx] - dat$n[idx] * plogis(eta)
      sum(r) - b / s^2
    }
    b <- 0
    for (it in 1:100) { step <- -d1(b) / d2(b); b <- b + step; if (abs(step) < 1e-14) break }
    out[g + 1] <- f(b) + 0.5 * log(2 * pi) - 0.5 * log(-d2(b))
  }
  out
}

one <- function(family) {
  fit <- if (family == "poisson") {
    glmmTMB(y ~ period_f + treatment + offset(log(pop)) + (1 | cluster), family = poisson, data = dat)
  } else {
    glmmTMB(cbind(events, n - events) ~ period_f + treatment + (1 | cluster), family = binomial, data = dat)
  }
  par <- c(fixef(fit)$cond, log(sqrt(VarCorr(fit)$cond$cluster[1, 1])))
  tot <- function(q) sum(cluster_ll(q, family))
  for (k in 1:5) {                       # Newton polish on the hand-coded Laplace likelihood
    g <- grad(tot, par); H <- hessian(tot, par)
    par <- par - solve(H, g)
  }
  G <- jacobian(function(q) cluster_ll(q, family), par)          # I x P per-cluster scores
  H <- -hessian(tot, par)
  B <- solve(H)
  p <- ncol(X)
  cr0 <- B %*% crossprod(G) %*% B
  # MD with the fixed-effect block of each cluster's own Hessian as leverage
  meat_md <- matrix(0, p + 1, p + 1)
  for (g in 1:I) {
    Hi <- -hessian(function(q) cluster_ll(q, family)[g], par)
    Hi[(p + 1), ] <- 0; Hi[, (p + 1)] <- 0
    u <- solve(diag(p + 1) - Hi %*% B, G[g, ])
    meat_md <- meat_md + u %*% t(u)
  }
  md <- B %*% meat_md %*% B
  mat <- function(m) unname(lapply(seq_len(p), function(r) as.numeric(m[r, 1:p])))
  list(family = family, beta = unname(par[1:p]), sigma2 = exp(2 * par[p + 1]),
       loglik = tot(par), max_abs_grad = max(abs(grad(tot, par))),
       glmmTMB_beta = unname(fixef(fit)$cond),
       vcov_model = mat(B), cr0 = mat(cr0), md = mat(md))
}
out <- list(
  versions = list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                  numDeriv = as.character(packageVersion("numDeriv"))),
  cases = list(one("poisson"), one("binomial"))
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           file.path(here, "sandwich_glmm.json"))

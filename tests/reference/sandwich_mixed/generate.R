# Reference numbers for tests/test_sandwich_mixed.py (cluster-robust variance of LMM fixed effects).
# Usage (from this directory):  Rscript generate.R
# Writes sw_lmm.csv (the simulated data) and sandwich_mixed.json (15 significant digits).
#
# * lmer (REML, bobyqa with rhoend 1e-12) fits (and a closed-cohort fit of
#   ../lmm/data/cohort.csv with (1|cluster:individual)) of a stepped-wedge data set whose true
#   correlation decays with the lag between periods (so both working models are misspecified):
#   nested (1|cluster) + (1|cluster:period), cluster-only (1|cluster), and nested with an
#   individual-level covariate `age`.
# * clubSandwich::vcovCR(fit, type = "CR0" / "CR2" / "CR3") with its defaults for lmerMod
#   (target = the fitted marginal covariance, inverse-variance weights).
# * A hand computation from the fitted marginal covariance V_i = sigma^2 (Z_i Lambda Lambda' Z_i' + I):
#   Kauermann-Carroll with the principal square root of the non-symmetric I - H_ii
#   (H_ii = X_i B X_i' V_i^-1, via its eigen-decomposition), Mancl-DeRouen with (I - H_ii)^-1,
#   and Morel-Bokossa-Neerchal as SAS PROC GLIMMIX EMPIRICAL=MBN (d = 2, r = 1).
suppressPackageStartupMessages({
  library(lme4)
  library(clubSandwich)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(script)) dirname(normalizePath(script)) else getwd()

# ---------------------------------------------------------------- data
set.seed(20261201)
n_clusters <- 12; n_periods <- 5
start <- rep(2:5, each = 3)            # first treated period of each cluster (4 sequences x 3)
decay <- 0.6; sd_cp <- 0.5             # cluster-period effects with AR(1) correlation 0.6^lag
rows <- list()
for (i in seq_len(n_clusters)) {
  a <- rnorm(1, 0, 0.3)
  cp <- as.numeric(arima.sim(list(ar = decay), n = n_periods, sd = sd_cp * sqrt(1 - decay^2)))
  for (j in seq_len(n_periods)) {
    m <- sample(4:14, 1)
    trt <- as.numeric(j >= start[i])
    age <- round(rnorm(m, 0, 1), 3)
    y <- 1 + 0.1 * j + 0.4 * trt + 0.2 * age + a + cp[j] + rnorm(m)
    rows[[length(rows) + 1]] <- data.frame(cluster = i, period = j, treatment = trt,
                                           age = age, y = round(y, 6))
  }
}
dat <- do.call(rbind, rows)
write.csv(dat, file.path(here, "sw_lmm.csv"), row.names = FALSE)
dat <- read.csv(file.path(here, "sw_lmm.csv"))   # exactly the committed numbers

cohort <- read.csv(file.path(here, "..", "lmm", "data", "cohort.csv"))
cohort <- cohort[order(cohort$cluster), ]   # rows grouped by cluster, as the hand computation needs

CTRL <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5, rhoend = 1e-12))

mat <- function(m) unname(lapply(seq_len(nrow(m)), function(r) as.numeric(m[r, ])))

hand <- function(fit, d) {
  X <- getME(fit, "X"); y <- getME(fit, "y"); Z <- getME(fit, "Z")
  L <- getME(fit, "Lambda"); s2 <- sigma(fit)^2
  cl <- d$cluster
  beta <- fixef(fit)
  e <- as.numeric(y - X %*% beta)
  Vs <- list(); Vinv <- list()
  info <- matrix(0, ncol(X), ncol(X))
  for (g in unique(cl)) {
    idx <- which(cl == g)
    Zi <- Z[idx, , drop = FALSE]
    Vi <- as.matrix(s2 * (Zi %*% L %*% t(L) %*% t(Zi) + Diagonal(length(idx))))
    Vs[[g]] <- Vi; Vinv[[g]] <- solve(Vi)
    info <- info + t(X[idx, ]) %*% Vinv[[g]] %*% X[idx, ]
  }
  B <- solve(info)
  meat <- list(cr0 = 0, kc = 0, md = 0)
  for (g in unique(cl)) {
    idx <- which(cl == g)
    Xi <- X[idx, , drop = FALSE]; ei <- e[idx]; Wi <- Vinv[[g]]
    Hii <- Xi %*% B %*% t(Xi) %*% Wi
    IH <- diag(length(idx)) - Hii
    ev <- eigen(IH)
    Q <- Re(ev$vectors); lam <- Re(ev$values)
    A_kc <- Q %*% diag(1 / sqrt(lam)) %*% solve(Q)
    A_md <- solve(IH)
    for (nm in c("cr0", "kc", "md")) {
      A <- switch(nm, cr0 = diag(length(idx)), kc = A_kc, md = A_md)
      u <- t(Xi) %*% Wi %*% A %*% ei
      meat[[nm]] <- meat[[nm]] + u %*% t(u)
    }
  }
  out <- lapply(meat, function(M) B %*% M %*% B)
  # MBN (SAS GLIMMIX EMPIRICAL=MBN, d = 2, r = 1)
  k <- ncol(X); m <- length(unique(cl)); N <- nrow(X)
  M <- meat$cr0
  phi <- max(1, sum(diag(B %*% M)) / k)
  delta <- if (m > 3 * k) k / (m - k) else 1 / 2
  cc <- (N - 1) / (N - k) * m / (m - 1)
  out$mbn <- cc * B %*% M %*% B + delta * phi * B
  out$model <- B
  out
}

one <- function(name, formula, d = dat) {
  fit <- lmer(formula, data = d, REML = TRUE, control = CTRL)
  vc <- as.data.frame(VarCorr(fit))
  comps <- list()
  for (k in seq_len(nrow(vc))) {
    nm <- switch(vc$grp[k], "Residual" = "sigma2", "cluster:period" = "gamma2", "cluster" = "tau2",
                 "cluster:individual" = "psi2")
    comps[[nm]] <- vc$vcov[k]
  }
  h <- hand(fit, d)
  cs <- lapply(c(CR0 = "CR0", CR2 = "CR2", CR3 = "CR3"),
               function(t) as.matrix(vcovCR(fit, cluster = d$cluster, type = t)))
  list(name = name, formula = deparse(formula), reml_criterion = as.numeric(REMLcrit(fit)),
       variance_components = comps, beta = unname(fixef(fit)), terms = names(fixef(fit)),
       vcov_model = mat(as.matrix(vcov(fit))),
       clubsandwich = lapply(cs, mat),
       hand = lapply(h, mat))
}

cases <- list(
  one("nested", y ~ factor(period) + treatment + (1 | cluster) + (1 | cluster:period)),
  one("cluster", y ~ factor(period) + treatment + (1 | cluster)),
  one("nested_age", y ~ factor(period) + treatment + age + (1 | cluster) + (1 | cluster:period)),
  # closed cohort (tests/reference/lmm/data/cohort.csv): individual effects cross the cells
  one("nested_cohort", y ~ factor(period) + treatment + (1 | cluster) + (1 | cluster:period) +
        (1 | cluster:individual), d = cohort)
)
out <- list(
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  clubSandwich = as.character(packageVersion("clubSandwich"))),
  cases = cases
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           file.path(here, "sandwich_mixed.json"))

# Reference values for steppedwedge's GEE against geepack (and a dense, per-cluster
# implementation of the bias-corrected sandwiches written here, independent of the
# package's p-dimensional reduction).
#
# Run from this folder:  Rscript generate.R
# Writes: sw_gaussian.csv, sw_binary.csv, sw_count.csv (simulated stepped-wedge data) and
#         geepack_reference.json (one entry per case, keyed by its inputs).
suppressPackageStartupMessages({library(geepack); library(jsonlite)})
set.seed(20261126)

I <- 10; T <- 5
seq_of <- rep(1:(T - 1), length.out = I)               # standard SW, 4 sequences
trt_of <- function(i, t) as.integer(t > seq_of[i])

# ---- individual-level Gaussian and binary data: nested exchangeable truth ------------
rows <- list()
for (i in 1:I) {
  a <- rnorm(1, 0, 0.4)
  for (t in 1:T) {
    g <- rnorm(1, 0, 0.25)
    m <- sample(3:9, 1)
    age <- round(rnorm(m, 50, 10))
    x <- trt_of(i, t)
    eta <- 0.2 * t + 0.5 * x + a + g
    y_con <- eta + 0.02 * (age - 50) + rnorm(m)
    p <- plogis(-0.7 + 0.15 * t + 0.6 * x + a + g)
    y_bin <- rbinom(m, 1, p)
    rows[[length(rows) + 1]] <- data.frame(cluster = i, period = t, treatment = x,
                                           age = age, y_con = y_con, y_bin = y_bin)
  }
}
ind <- do.call(rbind, rows)
ind <- ind[order(ind$cluster, ind$period), ]
write.csv(ind[, c("cluster", "period", "treatment", "age", "y_con")], "sw_gaussian.csv", row.names = FALSE)
write.csv(ind[, c("cluster", "period", "treatment", "y_bin")], "sw_binary.csv", row.names = FALSE)

# ---- cluster-period counts with an exposure (population) -------------------------------
crow <- list()
for (i in 1:I) {
  a <- rnorm(1, 0, 0.3)
  pop <- round(runif(1, 2000, 8000))
  for (t in 1:T) {
    x <- trt_of(i, t)
    popt <- pop + round(rnorm(1, 0, 100))
    mu <- popt / 1000 * exp(1.0 + 0.05 * t - 0.3 * x + a + rnorm(1, 0, 0.1))
    crow[[length(crow) + 1]] <- data.frame(cluster = i, period = t, treatment = x,
                                           population = popt, count = rpois(1, mu))
  }
}
cnt <- do.call(rbind, crow)
write.csv(cnt, "sw_count.csv", row.names = FALSE)

# ---- dense sandwiches from a geeglm fit (formulas of methods.md section 7.2) ------------
dense_sandwiches <- function(fit, data, corstr, family) {
  X <- model.matrix(fit)
  beta <- coef(fit)
  eta <- as.vector(X %*% beta) + (if (is.null(fit$offset)) 0 else fit$offset)
  mu <- family$linkinv(eta)
  dmu <- family$mu.eta(eta)
  v <- family$variance(mu)
  y <- fit$y
  phi <- as.numeric(summary(fit)$dispersion$Estimate)
  alpha <- if (corstr == "independence") 0 else as.numeric(summary(fit)$corr$Estimate)
  id <- data$cluster
  p <- ncol(X)
  parts <- lapply(split(seq_along(y), id), function(ix) {
    n <- length(ix)
    R <- switch(corstr,
      independence = diag(n),
      exchangeable = (1 - alpha) * diag(n) + alpha * matrix(1, n, n),
      ar1 = alpha^abs(outer(1:n, 1:n, "-")))
    A <- diag(sqrt(v[ix]), n)
    V <- phi * A %*% R %*% A
    D <- X[ix, , drop = FALSE] * dmu[ix]
    Vi <- solve(V)
    list(D = D, Vi = Vi, e = y[ix] - mu[ix], n = n)
  })
  Omega <- Reduce(`+`, lapply(parts, function(q) t(q$D) %*% q$Vi %*% q$D))
  Oi <- solve(Omega)
  m0 <- m1 <- m2 <- m3 <- matrix(0, p, p)
  for (q in parts) {
    u <- t(q$D) %*% q$Vi %*% q$e
    H <- q$D %*% Oi %*% t(q$D) %*% q$Vi
    umd <- t(q$D) %*% q$Vi %*% solve(diag(q$n) - H, q$e)
    Q <- t(q$D) %*% q$Vi %*% q$D %*% Oi
    C <- diag(1 / sqrt(1 - pmin(0.75, diag(Q))), p)
    m0 <- m0 + u %*% t(u)
    m1 <- m1 + (umd %*% t(u) + u %*% t(umd)) / 2
    m2 <- m2 + umd %*% t(umd)
    m3 <- m3 + C %*% u %*% t(u) %*% C
  }
  se <- function(M) sqrt(diag(Oi %*% M %*% Oi))
  list(model = sqrt(diag(Oi)), robust = se(m0), kc = se(m1), md = se(m2), fg = se(m3))
}

fit_case <- function(name, formula, data, family, corstr, offset = NULL) {
  data$.off <- if (is.null(offset)) 0 else offset
  fit <- geeglm(formula, id = cluster, data = data, family = family, corstr = corstr,
                offset = .off, control = geese.control(epsilon = 1e-12, maxit = 200))
  s <- summary(fit)
  dense <- dense_sandwiches(fit, data, corstr, family)
  list(name = name, formula = deparse(formula), family = family$family, link = family$link,
       corstr = corstr,
       terms = names(coef(fit)), coef = unname(coef(fit)),
       se_geepack_robust = unname(s$coefficients[, "Std.err"]),
       se_geepack_model = unname(sqrt(diag(fit$geese$vbeta.naiv))),
       alpha = if (corstr == "independence") NULL else as.numeric(s$corr$Estimate),
       phi = as.numeric(s$dispersion$Estimate),
       se_dense = lapply(dense, unname),
       n_iter = fit$geese$iterations)
}

cases <- list(
  fit_case("gaussian_exchangeable", y_con ~ factor(period) + treatment, ind, gaussian(), "exchangeable"),
  fit_case("gaussian_independence", y_con ~ factor(period) + treatment, ind, gaussian(), "independence"),
  fit_case("gaussian_exchangeable_age", y_con ~ factor(period) + treatment + age, ind, gaussian(), "exchangeable"),
  fit_case("binary_exchangeable", y_bin ~ factor(period) + treatment, ind, binomial(), "exchangeable"),
  fit_case("binary_independence", y_bin ~ factor(period) + treatment, ind, binomial(), "independence"),
  fit_case("count_exchangeable", count ~ factor(period) + treatment, cnt, poisson(), "exchangeable",
           offset = log(cnt$population)),
  fit_case("count_ar1", count ~ factor(period) + treatment, cnt, poisson(), "ar1",
           offset = log(cnt$population)),
  fit_case("count_independence", count ~ factor(period) + treatment, cnt, poisson(), "independence",
           offset = log(cnt$population))
)
names(cases) <- vapply(cases, function(x) x$name, "")
meta <- list(R = R.version.string, geepack = as.character(packageVersion("geepack")),
             seed = 20261126)
writeLines(toJSON(list(meta = meta, cases = cases), digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "geepack_reference.json")

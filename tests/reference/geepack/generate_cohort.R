# Closed-cohort reference for the block-exchangeable working correlation
# (alpha0: same period, different people; alpha1: different periods, different people;
#  alpha2: same person, different periods), fitted with geepack's user-defined
# correlation design (zcor with three pair-type indicators, identity correlation link).
#
# Run from this folder: Rscript generate_cohort.R
# Writes sw_cohort.csv and geepack_cohort_reference.json.
suppressPackageStartupMessages({library(geepack); library(jsonlite)})
set.seed(20261127)
I <- 9; T <- 4
seq_of <- rep(1:(T - 1), length.out = I)
rows <- list()
for (i in 1:I) {
  a <- rnorm(1, 0, 0.4)
  K <- sample(4:7, 1)
  pid <- paste0("c", i, "p", 1:K)
  b <- rnorm(K, 0, 0.6)
  for (t in 1:T) {
    g <- rnorm(1, 0, 0.2)
    x <- as.integer(t > seq_of[i])
    present <- if (t == 2 && i == 1) 1:(K - 1) else 1:K   # one person misses a period
    for (k in present) {
      y <- 0.1 * t + 0.5 * x + a + g + b[k] + rnorm(1)
      rows[[length(rows) + 1]] <- data.frame(cluster = i, period = t, person = pid[k],
                                             treatment = x, y = y)
    }
  }
}
d <- do.call(rbind, rows)
d <- d[order(d$cluster, d$period, d$person), ]
write.csv(d, "sw_cohort.csv", row.names = FALSE)

# pair-type design in geepack's pair order (for each cluster: (1,2), (1,3), ..., (2,3), ...)
z <- list()
for (i in unique(d$cluster)) {
  di <- d[d$cluster == i, ]
  n <- nrow(di)
  for (j in 1:(n - 1)) for (k in (j + 1):n) {
    sp <- di$period[j] == di$period[k]; si <- di$person[j] == di$person[k]
    z[[length(z) + 1]] <- c(as.numeric(sp & !si), as.numeric(!sp & !si), as.numeric(!sp & si))
  }
}
zcor <- do.call(rbind, z)
fit <- geeglm(y ~ factor(period) + treatment, id = cluster, data = d, family = gaussian(),
              corstr = "userdefined", zcor = zcor,
              control = geese.control(epsilon = 1e-12, maxit = 200))
s <- summary(fit)
out <- list(
  meta = list(R = R.version.string, geepack = as.character(packageVersion("geepack"))),
  terms = names(coef(fit)), coef = unname(coef(fit)),
  se_robust = unname(s$coefficients[, "Std.err"]),
  se_model = unname(sqrt(diag(fit$geese$vbeta.naiv))),
  alpha = unname(as.numeric(fit$geese$alpha)),
  phi = as.numeric(s$dispersion$Estimate))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "geepack_cohort_reference.json")

# Reference numbers for steppedwedge.inference.pooling.pool (Rubin's rules, Barnard-Rubin df).
# Run from this folder:  Rscript generate.R   (writes mice_pool.json)
# R 4.2, mice 3.15.0, jsonlite.  Numbers are written with 15 significant digits (jsonlite maximum).
suppressPackageStartupMessages({library(mice); library(jsonlite)})

scalar_cases <- list(
  list(name = "dfcom_120", Q = c(0.10, 0.14, 0.12, 0.09, 0.15),
       U = c(0.05, 0.052, 0.049, 0.051, 0.05)^2, n = 125, k = 5),
  list(name = "dfcom_inf", Q = c(1.2, 0.8, 1.1, 0.95, 1.3, 1.05, 0.9, 1.0, 1.15, 0.85),
       U = rep(0.04, 10), n = Inf, k = 1),
  list(name = "tiny_between", Q = c(2.0, 2.000001, 1.999999), U = c(0.5, 0.51, 0.49), n = 30, k = 4),
  list(name = "large_between", Q = c(-0.3, 0.4, 0.1, -0.2), U = c(0.01, 0.012, 0.011, 0.009), n = 50, k = 6)
)
scalar <- lapply(scalar_cases, function(cs) {
  r <- pool.scalar(cs$Q, cs$U, n = cs$n, k = cs$k)
  list(name = cs$name, Q = cs$Q, U = cs$U, dfcom = if (is.finite(cs$n)) cs$n - cs$k else "Inf",
       qbar = r$qbar, ubar = r$ubar, b = r$b, t = r$t, df = r$df, riv = r$r, fmi = r$fmi)
})

# mice on its own nhanes data, then lm and logistic glm on each completed dataset
imp <- mice(nhanes, m = 5, seed = 20261126, printFlag = FALSE)
fits <- list(
  lm = with(imp, lm(chl ~ age + bmi)),
  glm = with(imp, glm(I(hyp == 2) ~ age + bmi, family = binomial))
)
models <- lapply(names(fits), function(nm) {
  f <- fits[[nm]]
  per <- lapply(f$analyses, function(a) {
    s <- summary(a)$coefficients
    list(estimate = unname(s[, 1]), std_error = unname(s[, 2]))
  })
  p <- pool(f)
  pp <- p$pooled
  sm <- summary(p, conf.int = TRUE)
  list(name = nm, terms = as.character(pp$term), dfcom = pp$dfcom[1],
       estimates = lapply(per, `[[`, "estimate"), std_errors = lapply(per, `[[`, "std_error"),
       pooled = list(estimate = pp$estimate, ubar = pp$ubar, b = pp$b, t = pp$t, df = pp$df,
                     riv = pp$riv, lambda = pp$lambda, fmi = pp$fmi,
                     std_error = sm$std.error, p_value = sm$p.value,
                     conf_low = sm$`2.5 %`, conf_high = sm$`97.5 %`))
})

out <- list(generated_with = list(R = R.version.string, mice = as.character(packageVersion("mice"))),
            scalar = scalar, models = models)
write_json(out, "mice_pool.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)

# glmmTMB reference fits of the DfE council panel for steppedwedge.estimate_variance.
# Run from this directory:  Rscript generate.R   (reads the panel bundled with the package)
# Writes cases.json (one object per case) and versions.json; prints one line per case.
suppressMessages({library(glmmTMB); library(jsonlite)})

panel <- read.csv("../../../src/steppedwedge/datasets/data/dfe_la_children_social_care_panel.csv")
# the rows estimate_variance uses by default: councils with a boundary change dropped (every
# row of such a council), then rows with a missing (suppressed) outcome or population dropped
panel <- panel[!(panel$la_code %in% unique(panel$la_code[panel$boundary_change %in% c(TRUE, "True")])), ]

tmb_ctrl <- glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = 1e-12))
cases <- list()

# theta: (1 | la_code) SD first when present, then (1 | la_code:year) SD or the ar1 block (log SD, t);
# glmmTMB's ar1 correlation is r = t / sqrt(1 + t^2)
add <- function(name, outcome, structure, family, years = NULL, trials = NULL) {
  d <- if (is.null(trials)) {
    panel[!is.na(panel[[outcome]]) & !is.na(panel$population_0_17), ]
  } else {
    panel[!is.na(panel[[outcome]]) & !is.na(panel[[trials]]), ]
  }
  if (!is.null(years)) d <- d[d$year %in% years, ]
  d$y <- d[[outcome]]; d$yf <- factor(d$year); d$la_code <- factor(d$la_code)
  gaussian_case <- identical(family, gaussian)
  if (gaussian_case) d$y <- log((d[[outcome]] + 0.5) / d$population_0_17)  # a log rate
  rhs <- switch(structure,
    "cluster" = "(1 | la_code)",
    "nested" = "(1 | la_code) + (1 | la_code:yf)",
    "decay" = "ar1(yf + 0 | la_code)",
    "nested+decay" = "(1 | la_code) + ar1(yf + 0 | la_code)")
  f <- as.formula(paste("y ~ yf + offset(log(population_0_17)) +", rhs))
  if (gaussian_case) f <- as.formula(paste("y ~ yf +", rhs))
  if (!is.null(trials)) {
    d$n <- d[[trials]]
    f <- as.formula(paste("cbind(y, n - y) ~ yf +", rhs))
  }
  elapsed <- system.time(m <- glmmTMB(f, family = family, data = d, control = tmb_ctrl))[["elapsed"]]
  # polish nlminb's optimum: Newton steps on TMB's exact gradient (Hessian by optimHess of it)
  obj <- m$obj; par <- m$fit$par
  for (k in 1:8) {
    g <- as.numeric(obj$gr(par))
    if (max(abs(g)) < 1e-10) break
    H <- optimHess(par, obj$fn, obj$gr)
    par <- par - solve(H, g)
  }
  ll <- -obj$fn(par)
  th <- par[names(par) == "theta"]
  persistent <- structure != "decay"
  tau2 <- if (persistent) exp(2 * th[1]) else 0
  if (structure %in% c("decay", "nested+decay")) {
    k_t <- length(th); gamma2 <- exp(2 * th[k_t - 1]); decay <- th[k_t] / sqrt(1 + th[k_t]^2)
  } else if (structure == "nested") {
    gamma2 <- exp(2 * th[2]); decay <- NA
  } else {
    gamma2 <- 0; decay <- NA
  }
  size <- if (stats::family(m)$family == "nbinom2") exp(par[names(par) == "betad"]) else NA
  fam <- switch(stats::family(m)$family, nbinom2 = "negative_binomial", binomial = "binomial",
                gaussian = "gaussian", "poisson")
  sigma2 <- NA
  if (gaussian_case) {
    # glmmTMB's gaussian dispersion parameter betad is log(sigma^2); checked against sigma(m)
    bd <- par[names(par) == "betad"]
    stopifnot(abs(exp(bd / 2) - sigma(m)) < 1e-4 * sigma(m))
    sigma2 <- exp(bd)
  }
  conv <- max(abs(obj$gr(par))) < 1e-6
  case <- list(name = name, outcome = outcome, trials = if (is.null(trials)) NA else trials,
               structure = structure, family = fam,
               years = if (is.null(years)) NULL else years,
               n_obs = nrow(d), n_clusters = nlevels(d$la_code), n_periods = nlevels(d$yf),
               fixef = unname(par[names(par) == "beta"]), loglik = ll, aic = 2 * length(par) - 2 * ll,
               n_par = length(par), tau2 = tau2, gamma2 = gamma2, decay = decay, nb_size = size,
               sigma2 = sigma2,
               converged = conv, elapsed = elapsed,
               note = sprintf("glmmTMB optimum Newton-polished (max |shift| %.1e, max |grad| %.1e)",
                              max(abs(par - m$fit$par)), max(abs(obj$gr(par)))))
  cases[[length(cases) + 1]] <<- case
  cat(sprintf("%-28s n %d ll %.6f tau2 %.6g gamma2 %.6g r %s k %s (%.2f s)\n", name, nrow(d), ll,
              tau2, gamma2, format(decay, digits = 6), format(size, digits = 6), elapsed))
}

# entries into care (published 2021-2025 only)
for (s in c("cluster", "nested", "decay", "nested+decay")) {
  add(paste0("entries_pois_", s), "cla_started_in_year", s, poisson)
}
add("entries_nb_nested+decay", "cla_started_in_year", "nested+decay", nbinom2)
add("entries_nb_decay", "cla_started_in_year", "decay", nbinom2)
# children on child protection plans, 13 years (the speed case: ~1,900 council-years)
add("cpp_pois_nested", "cpp_31_march", "nested", poisson)
add("cpp_pois_nested+decay", "cpp_31_march", "nested+decay", poisson)
add("cpp_nb_nested+decay", "cpp_31_march", "nested+decay", nbinom2)
# binomial: the share of children in need who are on a protection plan (log choose(n, y) included)
add("cpp_share_binom_nested+decay", "cpp_31_march", "nested+decay", binomial, trials = "cin_31_march")
# Gaussian: the log rate log((cpp + 0.5) / population) as the outcome (ML, dispersion = residual)
for (s in c("cluster", "decay", "nested+decay")) {
  add(paste0("cpp_lograte_gauss_", s), "cpp_31_march", s, gaussian)
}

writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"), "cases.json")
writeLines(toJSON(list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                       TMB = as.character(packageVersion("TMB"))), auto_unbox = TRUE, pretty = TRUE),
           "versions.json")

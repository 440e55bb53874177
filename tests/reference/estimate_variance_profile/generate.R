# Profile-likelihood intervals of glmmTMB fits of the DfE council panel, for the profile
# intervals of steppedwedge.estimate_variance (intervals="profile").
# Run from this directory:  Rscript generate.R   (reads the panel bundled with the package)
# Writes cases.json and versions.json; prints one line per interval end.
#
# Independent of steppedwedge's root finder: each end is the root, by uniroot (tol 1e-9), of
#   2 (loglik_max - loglik_profile(u)) - qchisq(level, 1)
# where loglik_profile(u) refits the model with glmmTMB holding one parameter at u (`map` and
# `start`) and maximising over all the others, fixed effects included; every fit is polished
# by Newton steps on TMB's exact gradient.  u is glmmTMB's own working parameter (log SD;
# t with ar1 correlation r = t / sqrt(1 + t^2); log NB size), so the ends are reported after
# the map to the variance / correlation / size (the interval is invariant to the scale).
suppressMessages({library(glmmTMB); library(jsonlite)})

panel <- read.csv("../../../src/steppedwedge/datasets/data/dfe_la_children_social_care_panel.csv")
panel <- panel[!(panel$la_code %in% unique(panel$la_code[panel$boundary_change %in% c(TRUE, "True")])), ]
tmb_ctrl <- glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = 1e-12))

polish <- function(obj, par) {
  for (k in 1:8) {
    g <- as.numeric(obj$gr(par))
    if (max(abs(g)) < 1e-9) break
    H <- optimHess(par, obj$fn, obj$gr)
    par <- par - solve(H, g)
  }
  list(par = par, ll = -obj$fn(par), grad = max(abs(obj$gr(par))))
}

fit_at <- function(f, family, d, start = NULL, map = NULL) {
  m <- glmmTMB(f, family = family, data = d, control = tmb_ctrl, start = start, map = map)
  polish(m$obj, m$fit$par)
}

cases <- list()
add <- function(name, outcome, structure, family, level, gaussian_case = FALSE) {
  d <- panel[!is.na(panel[[outcome]]) & !is.na(panel$population_0_17), ]
  d$y <- d[[outcome]]; d$yf <- factor(d$year); d$la_code <- factor(d$la_code)
  if (gaussian_case) d$y <- log((d[[outcome]] + 0.5) / d$population_0_17)
  rhs <- switch(structure,
    "nested" = "(1 | la_code) + (1 | la_code:yf)",
    "decay" = "ar1(yf + 0 | la_code)",
    "nested+decay" = "(1 | la_code) + ar1(yf + 0 | la_code)")
  f <- as.formula(paste("y ~ yf + offset(log(population_0_17)) +", rhs))
  if (gaussian_case) f <- as.formula(paste("y ~ yf +", rhs))
  m <- glmmTMB(f, family = family, data = d, control = tmb_ctrl)
  best <- polish(m$obj, m$fit$par)
  par <- best$par
  th <- par[names(par) == "theta"]
  has_bd <- any(names(par) == "betad") && !gaussian_case
  # the parameters profiled: (component name, glmmTMB block, index in block, map to report)
  terms <- list()
  if (structure != "decay") terms[["tau2"]] <- list("theta", 1, function(u) exp(2 * u))
  k_g <- if (structure == "decay") 1 else 2
  terms[["gamma2"]] <- list("theta", k_g, function(u) exp(2 * u))
  if (structure != "nested") terms[["decay"]] <- list("theta", k_g + 1, function(u) u / sqrt(1 + u^2))
  if (has_bd) terms[["nb_size"]] <- list("betad", 1, function(u) exp(u))
  cut <- qchisq(level, 1)
  out <- list()
  for (nm in names(terms)) {
    blk <- terms[[nm]][[1]]; j <- terms[[nm]][[2]]; rep <- terms[[nm]][[3]]
    u_hat <- par[names(par) == blk][j]
    n_eval <- 0
    g <- function(u) {
      st <- list(beta = unname(par[names(par) == "beta"]), theta = unname(th))
      if (has_bd) st$betad <- unname(par[names(par) == "betad"])
      vals <- st[[blk]]; vals[j] <- u; st[[blk]] <- vals
      mp <- list(); idx <- seq_along(st[[blk]]); idx[j] <- NA; mp[[blk]] <- factor(idx)
      fit <- fit_at(f, family, d, start = st, map = mp)
      n_eval <<- n_eval + 1
      2 * (best$ll - fit$ll) - cut
    }
    step <- 0.3
    lo <- uniroot(g, c(u_hat - step, u_hat - 1e-4), extendInt = "downX", tol = 1e-9)$root
    hi <- uniroot(g, c(u_hat + 1e-4, u_hat + step), extendInt = "upX", tol = 1e-9)$root
    out[[nm]] <- list(estimate = rep(u_hat), low = rep(lo), high = rep(hi), n_eval = n_eval)
    cat(sprintf("%-36s %-7s level %.2f estimate %.6g interval %.6g %.6g (%d fits)\n", name, nm,
                level, rep(u_hat), rep(lo), rep(hi), n_eval))
  }
  cases[[length(cases) + 1]] <<- list(
    name = name, outcome = outcome, structure = structure,
    family = if (gaussian_case) "gaussian" else if (has_bd) "negative_binomial" else "poisson",
    level = level, n_obs = nrow(d), loglik = best$ll, max_grad = best$grad, intervals = out)
}

add("entries_pois_nested+decay_90", "cla_started_in_year", "nested+decay", poisson, 0.90)
add("entries_pois_nested_95", "cla_started_in_year", "nested", poisson, 0.95)
add("entries_nb_decay_90", "cla_started_in_year", "decay", nbinom2, 0.90)
add("cpp_lograte_gauss_nested+decay_90", "cpp_31_march", "nested+decay", gaussian, 0.90,
    gaussian_case = TRUE)

writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"), "cases.json")
writeLines(toJSON(list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                       TMB = as.character(packageVersion("TMB"))), auto_unbox = TRUE, pretty = TRUE),
           "versions.json")

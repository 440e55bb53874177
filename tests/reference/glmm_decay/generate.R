# glmmTMB reference fits with a decaying (AR(1)) council-period effect, for steppedwedge.
# Run from this directory after `python make_data.py`:  Rscript generate.R
# Writes cases.json (one object per case) and versions.json; prints one line per case.
suppressMessages({library(glmmTMB); library(jsonlite)})

tmb_ctrl <- glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = 1e-12))
cases <- list()
kwa <- function(base, ...) modifyList(base, list(...))

# glmmTMB's ar1: theta = (log SD, t) with correlation r = t / sqrt(1 + t^2)
add <- function(name, formula, family, data, data_name, kwargs, persistent, note = "",
                treatment_term = "treatment", contrast = NULL) {
  elapsed <- system.time(m <- glmmTMB(formula, family = family, data = data, control = tmb_ctrl))[["elapsed"]]
  # polish nlminb's optimum: Newton steps on TMB's exact gradient (Hessian by optimHess of it)
  obj <- m$obj; par <- m$fit$par
  for (k in 1:8) {
    g <- as.numeric(obj$gr(par))
    if (max(abs(g)) < 1e-10) break
    H <- optimHess(par, obj$fn, obj$gr)
    par <- par - solve(H, g)
  }
  ll <- -obj$fn(par)
  sdr <- TMB::sdreport(obj, par.fixed = par)
  fx <- summary(sdr, "fixed")
  isb <- rownames(fx) == "beta"
  fe <- setNames(fx[isb, 1], names(fixef(m)$cond)); se <- setNames(fx[isb, 2], names(fe))
  vb <- unname(sdr$cov.fixed[isb, isb])
  ith <- which(names(par) == "theta")
  th <- par[ith]
  # theta order: (1 | council) first when present, then the ar1 block (log SD, t)
  k_t <- length(th)
  rho <- th[k_t] / sqrt(1 + th[k_t]^2)
  tau <- if (persistent) exp(th[1]) else 0
  gam <- exp(th[k_t - 1])
  # check against VarCorr
  vcs <- unlist(lapply(VarCorr(m)$cond, function(v) attr(v, "stddev")[1]))
  stopifnot(abs(sort(unname(vcs)) - sort(c(if (persistent) tau, gam))) < 1e-6 * max(vcs) + 1e-4)
  # Wald SEs of (log tau2, log gamma2, atanh r) by the delta method from cov.fixed
  V <- sdr$cov.fixed[ith, ith, drop = FALSE]
  J <- diag(k_t)
  for (j in seq_len(k_t - 1)) J[j, j] <- 2                              # log var = 2 log SD
  J[k_t, k_t] <- (1 + th[k_t]^2)^(-1.5) / (1 - rho^2)                   # d atanh(r) / d t
  Vw <- J %*% V %*% t(J)
  disp <- if (stats::family(m)$family == "nbinom2") exp(par[names(par) == "betad"]) else NA
  se_log_size <- if (is.na(disp)) NA else sqrt(sdr$cov.fixed[names(par) == "betad", names(par) == "betad"])
  conv <- sdr$pdHess && max(abs(obj$gr(par))) < 1e-6
  shift <- max(abs(par - m$fit$par))
  note <- paste0(note, if (nchar(note)) "; " else "",
                 sprintf("glmmTMB optimum Newton-polished (max |shift| %.1e, max |grad| %.1e)",
                         shift, max(abs(obj$gr(par)))))
  case <- list(name = name, dataset = data_name, kwargs = kwargs,
               fixef_names = names(fe), fixef = unname(fe), fixef_se = unname(se), vcov = vb,
               treatment_term = treatment_term,
               estimate = unname(fe[treatment_term]), se = unname(se[treatment_term]),
               loglik = ll, loglik_nlminb = -m$fit$objective,
               tau2 = tau^2, gamma2 = gam^2, decay = rho,
               se_log_tau2 = if (persistent) sqrt(Vw[1, 1]) else NA,
               se_log_gamma2 = sqrt(Vw[k_t - 1, k_t - 1]), se_atanh_decay = sqrt(Vw[k_t, k_t]),
               nb_size = disp, se_log_nb_size = se_log_size,
               converged = conv, elapsed = elapsed, note = note)
  if (!is.null(contrast)) {
    case$contrast <- list(weights = contrast, estimate = sum(contrast * fe),
                          se = sqrt(drop(t(contrast) %*% vb %*% contrast)))
  }
  cases[[length(cases) + 1]] <<- case
  cat(sprintf("%-22s est % .8f se %.8f ll %.6f tau2 %.6g gamma2 %.6g r %.6f k %s (%.2f s)\n", name,
              case$estimate, case$se, ll, tau^2, gam^2, rho, format(disp, digits = 6), elapsed))
}

# ---------------------------------------------------------------- simulated council counts
cc <- read.csv("data/council_decay.csv"); cc$qf <- factor(cc$quarter)
kw <- list(outcome = "count", cluster = "council", period = "quarter", treatment = "treatment",
           family = "poisson", exposure = "pop")
f_nd <- count ~ qf + treatment + offset(log(pop)) + (1 | council) + ar1(qf + 0 | council)
f_d <- count ~ qf + treatment + offset(log(pop)) + ar1(qf + 0 | council)
add("pois_nested_decay", f_nd, poisson, cc, "council_decay", kwa(kw, random = "nested+decay"), TRUE)
add("pois_decay", f_d, poisson, cc, "council_decay", kwa(kw, random = "decay"), FALSE)
kw_nb <- kwa(kw, outcome = "count_nb", family = "negative_binomial")
add("nb_nested_decay", update(f_nd, count_nb ~ .), nbinom2, cc, "council_decay",
    kwa(kw_nb, random = "nested+decay"), TRUE)
add("nb_decay", update(f_d, count_nb ~ .), nbinom2, cc, "council_decay", kwa(kw_nb, random = "decay"), FALSE)
# exposure-time indicators (ETI) with nested+decay; TATE = mean over exposure times 1..L
cc$etime <- ave(cc$treatment, cc$council, FUN = cumsum); cc$ef <- factor(cc$etime)
L <- max(cc$etime)
add("pois_nested_decay_tate", count ~ qf + ef + offset(log(pop)) + (1 | council) + ar1(qf + 0 | council),
    poisson, cc, "council_decay", kwa(kw, random = "nested+decay", effect = "tate"), TRUE,
    treatment_term = "ef1", contrast = c(rep(0, 20), rep(1 / L, L)))

# ---------------------------------------------------------------- real DfE panel, pseudo treatment
ne <- read.csv("data/dfe_north_east.csv"); ne$yf <- factor(ne$year)
kwd <- list(outcome = "cpp", cluster = "council", period = "year", treatment = "treatment",
            family = "poisson", exposure = "pop")
g_nd <- cpp ~ yf + treatment + offset(log(pop)) + (1 | council) + ar1(yf + 0 | council)
g_d <- cpp ~ yf + treatment + offset(log(pop)) + ar1(yf + 0 | council)
add("dfe_pois_nested_decay", g_nd, poisson, ne, "dfe_north_east", kwa(kwd, random = "nested+decay"), TRUE,
    note = "real DfE panel, pseudo (placebo) stepped-wedge treatment")
add("dfe_pois_decay", g_d, poisson, ne, "dfe_north_east", kwa(kwd, random = "decay"), FALSE)
add("dfe_nb_nested_decay", g_nd, nbinom2, ne, "dfe_north_east",
    kwa(kwd, family = "negative_binomial", random = "nested+decay"), TRUE)
add("dfe_nb_decay", g_d, nbinom2, ne, "dfe_north_east", kwa(kwd, family = "negative_binomial", random = "decay"),
    FALSE)

# ---------------------------------------------------------------- binary: 0/1 rows and events/trials
bt <- read.csv("data/binary_decay.csv"); bt$pf <- factor(bt$period)
ag <- aggregate(cbind(events = y, trials = 1) ~ cluster + period + treatment, data = bt, FUN = sum)
ag$pf <- factor(ag$period)
kb <- list(outcome = "y", cluster = "cluster", period = "period", treatment = "treatment", family = "binomial")
kba <- list(outcome = "events", trials = "trials", cluster = "cluster", period = "period",
            treatment = "treatment", family = "binomial")
add("bin_rows_nested_decay", y ~ pf + treatment + (1 | cluster) + ar1(pf + 0 | cluster), binomial, bt,
    "binary_decay", kwa(kb, random = "nested+decay"), TRUE, note = "0/1 rows: no binomial coefficient")
add("bin_agg_nested_decay", cbind(events, trials - events) ~ pf + treatment + (1 | cluster) + ar1(pf + 0 | cluster),
    binomial, ag, "binary_decay_agg", kwa(kba, random = "nested+decay"), TRUE,
    note = "events/trials: includes log choose(n, y)")
add("bin_agg_decay", cbind(events, trials - events) ~ pf + treatment + ar1(pf + 0 | cluster),
    binomial, ag, "binary_decay_agg", kwa(kba, random = "decay"), FALSE)

writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"), "cases.json")
writeLines(toJSON(list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                       TMB = as.character(packageVersion("TMB"))), auto_unbox = TRUE, pretty = TRUE),
           "versions.json")

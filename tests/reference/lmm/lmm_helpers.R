# Shared fitting/extraction helpers for the Gaussian LMM reference fixtures.
# Sourced by tests/reference/lmm/generate.R and tests/reference/rsteppedwedge/generate.R.
# Every number is written with jsonlite::toJSON(digits = NA) (15 significant digits).

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)   # masks lme4::lmer; fits are lmerModLmerTest (a subclass of lmerMod)
  library(pbkrtest)
  library(glmmTMB)
  library(jsonlite)
})

# Primary optimiser: bobyqa with a tight trust-region end radius.
CTRL_MAIN <- lmerControl(optimizer = "bobyqa",
                         optCtrl = list(maxfun = 1e5, rhoend = 1e-10))
# Independent re-fit used only to measure how well the optimum is determined (NLopt's own
# BOBYQA implementation; Nelder-Mead was tried first but can stop on the theta = 0 boundary
# when a variance is small but positive, e.g. the rsteppedwedge data).
CTRL_CHECK <- lmerControl(optimizer = "nloptwrap",
                          optCtrl = list(algorithm = "NLOPT_LN_BOBYQA",
                                         xtol_rel = 1e-13, ftol_rel = 1e-15,
                                         ftol_abs = 1e-15, xtol_abs = 1e-13,
                                         maxeval = 1e5))

versions <- function() {
  pk <- c("lme4", "lmerTest", "pbkrtest", "glmmTMB", "TMB", "Matrix", "minqa", "nloptr", "jsonlite")
  c(list(R = R.version.string),
    setNames(lapply(pk, function(p) as.character(packageVersion(p))), pk))
}

# Map lme4 VarCorr to the contract's variance-component names.
# null = not a parameter of the fitted model (the component is fixed at 0 there).
varcomp_lmer <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  out <- list(tau2 = NULL, gamma2 = NULL, sigma2 = NULL, decay = NULL,
              eta2 = NULL, rho = NULL, psi2 = NULL)
  for (k in seq_len(nrow(vc))) {
    g <- vc$grp[k]; v1 <- vc$var1[k]; v2 <- vc$var2[k]
    if (g == "Residual") {
      out$sigma2 <- vc$vcov[k]
    } else if (g == "cluster:period") {
      out$gamma2 <- vc$vcov[k]
    } else if (g == "individual") {
      out$psi2 <- vc$vcov[k]
    } else if (startsWith(g, "cluster")) {
      if (!is.na(v2)) {
        out$rho <- vc$sdcor[k]             # correlation (intercept, treatment)
      } else if (v1 == "(Intercept)") {
        out$tau2 <- vc$vcov[k]
      } else if (v1 == "treatment") {
        out$eta2 <- vc$vcov[k]
      } else stop("unexpected VarCorr row ", g, " ", v1)
    } else stop("unexpected grouping factor ", g)
  }
  out
}

conv_info <- function(fit) {
  msgs <- c(fit@optinfo$conv$lme4$messages, fit@optinfo$warnings)
  list(
    optimizer = fit@optinfo$optimizer,
    optimizer_code = fit@optinfo$conv$opt,
    lme4_messages = I(if (length(msgs)) as.character(unlist(msgs)) else character(0)),
    converged = (fit@optinfo$conv$opt == 0) &&
      !any(grepl("failed to converge|degenerate|unable to evaluate", unlist(msgs)))
  )
}

# Contrast helpers ----------------------------------------------------------

kr_block <- function(fit, L) {
  # pbkrtest: adjusted covariance, ddf, and the F test of L beta = 0
  Vadj <- as.matrix(vcovAdj(fit))
  Lm <- matrix(L, nrow = 1)
  se <- sqrt(drop(Lm %*% Vadj %*% t(Lm)))
  ddf <- get_Lb_ddf(fit, Lm)
  krm <- KRmodcomp(fit, Lm)$stats
  lt <- contest(fit, L, ddf = "Kenward-Roger", joint = FALSE)
  est <- sum(L * fixef(fit))
  list(
    block = list(df = ddf, se = se, F = krm$Fstat, pvalue = krm$p.value,
                 t = est / se, F_scaling = krm$F.scaling, ddf_KRmodcomp = krm$ddf,
                 df_lmerTest = lt$df, se_lmerTest = lt[["Std. Error"]],
                 t_lmerTest = lt[["t value"]], pvalue_lmerTest = lt[["Pr(>|t|)"]]),
    vcov_kr = unname(Vadj)
  )
}

satt_block <- function(fit, L) {
  ct <- contest(fit, L, ddf = "Satterthwaite", joint = FALSE)
  list(df = ct$df, t = ct[["t value"]], pvalue = ct[["Pr(>|t|)"]],
       estimate = ct$Estimate, se = ct[["Std. Error"]])
}

# Main case builder for lme4 fits ------------------------------------------

# spec: list(name, dataset, data_dir, random, time, effect, method, individual, covariates,
#            r_formula, note)
fit_lmer_case <- function(spec) {
  d <- read.csv(file.path(spec$data_dir, spec$dataset))
  reml <- spec$method == "reml"
  f <- as.formula(spec$r_formula)
  fit <- lmer(f, data = d, REML = reml, control = CTRL_MAIN)
  fit_chk <- lmer(f, data = d, REML = reml, control = CTRL_CHECK)

  beta <- fixef(fit)
  p <- length(beta)
  nm <- names(beta)
  V <- as.matrix(vcov(fit))

  if (spec$effect == "eti") {
    et_terms <- grep("^factor\\(exposure_time\\)", nm, value = TRUE)
    L <- as.numeric(nm %in% et_terms) / length(et_terms)
    treatment_term <- et_terms
  } else {
    L <- as.numeric(nm == "treatment")
    treatment_term <- "treatment"
  }
  stopifnot(sum(L != 0) >= 1)

  # Satterthwaite for the treatment coefficient from summary(); for ETI from contest()
  if (spec$effect == "eti") {
    sat <- satt_block(fit, L)
  } else {
    row <- coef(summary(fit, ddf = "Satterthwaite"))["treatment", ]
    sat <- list(df = unname(row["df"]), t = unname(row["t value"]),
                pvalue = unname(row["Pr(>|t|)"]))
  }

  kr <- NULL; vcov_kr <- NULL
  if (reml) {
    krb <- kr_block(fit, L)
    kr <- krb$block; vcov_kr <- krb$vcov_kr
  }

  est <- sum(L * beta)
  se <- sqrt(drop(t(L) %*% V %*% L))
  tate <- NULL
  if (spec$effect == "eti") {
    tate <- list(estimate = est, se = se,
                 df_kr = if (reml) kr$df else NULL,
                 se_kr = if (reml) kr$se else NULL,
                 df_satt = sat$df,
                 exposure_times = as.integer(sub("^factor\\(exposure_time\\)", "", treatment_term)),
                 weights = rep(1 / length(treatment_term), length(treatment_term)))
  }

  # optimum precision: compare with an independent Nelder-Mead refit
  chk <- list(
    alt_optimizer = "nloptwrap NLOPT_LN_BOBYQA (xtol_rel 1e-13, ftol_abs 1e-15)",
    max_abs_diff_theta = max(abs(getME(fit, "theta") - getME(fit_chk, "theta"))),
    max_rel_diff_fixef = max(abs(fixef(fit) - fixef(fit_chk)) / pmax(abs(fixef(fit)), 1e-8)),
    loglik_diff = as.numeric(logLik(fit)) - as.numeric(logLik(fit_chk))
  )

  list(
    name = spec$name,
    dataset = spec$dataset,
    random = spec$random,
    time = spec$time,
    effect = spec$effect,
    method = spec$method,
    REML = reml,
    individual = isTRUE(spec$individual),
    covariates = spec$covariates,
    r_formula = spec$r_formula,
    engine = "lme4::lmer (lmerTest)",
    nobs = nobs(fit),
    n_clusters = length(unique(d$cluster)),
    fixef_names = nm,
    fixef = unname(beta),
    fixef_se = unname(sqrt(diag(V))),
    vcov = unname(V),
    loglik = as.numeric(logLik(fit)),
    varcomp = varcomp_lmer(fit),
    theta = I(unname(getME(fit, "theta"))),
    singular = isSingular(fit, tol = 1e-4),
    convergence = conv_info(fit),
    optimum_check = chk,
    treatment_term = treatment_term,
    contrast = L,
    estimate = est,
    se = se,
    satterthwaite = sat,
    kenward_roger = kr,
    vcov_kr = vcov_kr,
    tate = tate,
    note = spec$note
  )
}

# glmmTMB AR(1) decay model -------------------------------------------------

# Exact Gaussian (RE)ML log-likelihood for y = X b + v_{cluster,period} + e with
# Cov(v_i) = g2 * r^|j-k| and Var(e) = s2.  Returns loglik, GLS beta and (X'V^-1X)^-1.
direct_ar1 <- function(d, X, g2, r, s2, reml) {
  n <- nrow(X); p <- ncol(X)
  XtVX <- matrix(0, p, p); XtVy <- numeric(p); logdet <- 0
  blocks <- split(seq_len(n), d$cluster)
  Vinv_list <- list()
  for (b in names(blocks)) {
    idx <- blocks[[b]]
    per <- d$period[idx]
    Vi <- g2 * r^abs(outer(per, per, "-")) + diag(s2, length(idx))
    R <- chol(Vi)
    logdet <- logdet + 2 * sum(log(diag(R)))
    Vinv <- chol2inv(R)
    Vinv_list[[b]] <- Vinv
    XtVX <- XtVX + t(X[idx, , drop = FALSE]) %*% Vinv %*% X[idx, , drop = FALSE]
    XtVy <- XtVy + drop(t(X[idx, , drop = FALSE]) %*% Vinv %*% d$y[idx])
  }
  cov_beta <- solve(XtVX)
  beta <- drop(cov_beta %*% XtVy)
  quad <- 0
  for (b in names(blocks)) {
    idx <- blocks[[b]]
    res <- d$y[idx] - drop(X[idx, , drop = FALSE] %*% beta)
    quad <- quad + sum(res * (Vinv_list[[b]] %*% res))
  }
  if (reml) {
    ll <- -0.5 * ((n - p) * log(2 * pi) + logdet +
                  as.numeric(determinant(XtVX, logarithm = TRUE)$modulus) + quad)
  } else {
    ll <- -0.5 * (n * log(2 * pi) + logdet + quad)
  }
  list(loglik = ll, beta = beta, cov_beta = cov_beta)
}

fit_decay_case <- function(spec) {
  d <- read.csv(file.path(spec$data_dir, spec$dataset))
  d <- d[order(d$cluster, d$period), ]
  reml <- spec$method == "reml"
  f <- as.formula(spec$r_formula)
  ctl <- glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4))
  fit <- glmmTMB(f, data = d, REML = reml, control = ctl)
  # nlminb stops on relative function change; for ML (beta among the outer parameters) it can
  # stop with |gradient| ~ 1e-3.  Restart from the optimum while that improves the objective.
  n_restarts <- 0
  while (max(abs(fit$sdr$gradient.fixed)) > 1e-5 && n_restarts < 5) {
    pr <- fit$fit$par
    st <- list(beta = unname(pr[names(pr) == "beta"]), theta = unname(pr[names(pr) == "theta"]),
               betad = unname(pr[names(pr) == "betad"]))
    fit2 <- glmmTMB(f, data = d, REML = reml, control = ctl, start = st)
    n_restarts <- n_restarts + 1
    if (as.numeric(logLik(fit2)) <= as.numeric(logLik(fit))) break
    fit <- fit2
  }
  beta <- fixef(fit)$cond
  nm <- names(beta)
  V <- as.matrix(vcov(fit)$cond)
  vc <- VarCorr(fit)$cond$cluster
  g2 <- unname(attr(vc, "stddev")[1])^2
  r <- unname(attr(vc, "correlation")[1, 2])
  s2 <- sigma(fit)^2
  L <- as.numeric(nm == "treatment")
  X <- model.matrix(~ factor(period) + treatment, data = d)
  stopifnot(identical(colnames(X), nm))
  dir_at <- direct_ar1(d, X, g2, r, s2, reml)

  # independent maximisation of the same likelihood with optim (BFGS then Nelder-Mead polish)
  nll <- function(par) -direct_ar1(d, X, exp(par[1]), tanh(par[2]), exp(par[3]), reml)$loglik
  start <- c(log(g2), atanh(r), log(s2))
  o <- optim(start * 0.9, nll, method = "BFGS", control = list(reltol = 1e-15, maxit = 1e4))
  o <- optim(o$par, nll, method = "Nelder-Mead", control = list(reltol = 1e-15, maxit = 1e4))
  at_opt <- direct_ar1(d, X, exp(o$par[1]), tanh(o$par[2]), exp(o$par[3]), reml)
  dir_opt <- list(gamma2 = exp(o$par[1]), decay = tanh(o$par[2]), sigma2 = exp(o$par[3]),
                  loglik = -o$value, convergence = o$convergence,
                  fixef = unname(at_opt$beta), vcov_gls = unname(at_opt$cov_beta))

  theta_int <- unname(fit$fit$par[names(fit$fit$par) == "theta"])
  list(
    name = spec$name,
    dataset = spec$dataset,
    random = spec$random,
    time = spec$time,
    effect = spec$effect,
    method = spec$method,
    REML = reml,
    individual = FALSE,
    covariates = spec$covariates,
    r_formula = spec$r_formula,
    engine = "glmmTMB",
    nobs = nrow(d),
    n_clusters = length(unique(d$cluster)),
    fixef_names = nm,
    fixef = unname(beta),
    fixef_se = unname(sqrt(diag(V))),
    vcov = unname(V),
    vcov_gls = unname(dir_at$cov_beta),
    loglik = as.numeric(logLik(fit)),
    loglik_direct = dir_at$loglik,
    varcomp = list(tau2 = NULL, gamma2 = g2, sigma2 = s2, decay = r,
                   eta2 = NULL, rho = NULL, psi2 = NULL),
    glmmTMB_internal = list(theta = theta_int,
                            betad = unname(fit$fit$par[names(fit$fit$par) == "betad"]),
                            note = paste("ar1 theta = (log sd, phi) with rho = phi/sqrt(1+phi^2);",
                                         "betad = log(sigma^2) for gaussian")),
    singular = !(g2 > 1e-6 && abs(r) < 1 - 1e-6),
    convergence = list(optimizer = "nlminb", optimizer_code = fit$fit$convergence,
                       message = fit$fit$message, pdHess = fit$sdr$pdHess,
                       max_abs_gradient = max(abs(fit$sdr$gradient.fixed)),
                       n_restarts = n_restarts,
                       converged = fit$fit$convergence == 0 && isTRUE(fit$sdr$pdHess)),
    optimum_check = list(alt_optimizer = "optim BFGS + Nelder-Mead on the exact (RE)ML likelihood",
                         direct = dir_opt,
                         loglik_diff = as.numeric(logLik(fit)) - dir_opt$loglik),
    treatment_term = "treatment",
    contrast = L,
    estimate = sum(L * beta),
    se = sqrt(drop(t(L) %*% V %*% L)),
    satterthwaite = NULL,
    kenward_roger = NULL,
    vcov_kr = NULL,
    tate = NULL,
    note = spec$note
  )
}

write_cases <- function(cases, path, extra = list()) {
  # 'cases.json' is a plain list of case objects (the contract); versions go to a sidecar file
  txt <- toJSON(cases, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
                pretty = TRUE)
  writeLines(txt, path)
}

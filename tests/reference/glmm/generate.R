# GLMM reference fits for steppedwedge (lme4::glmer and glmmTMB).
# Run from this directory after `python make_data.py`:  Rscript generate.R
# Writes cases.json (one object per case) and versions.json.
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
# also needs numDeriv (children_cov_glmer)

tmb_ctrl <- glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = 1e-12))
glmer_ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5, rhoend = 1e-10),
                           tolPwrss = 1e-12, check.conv.grad = "ignore")

# saturated log-likelihood of the rows glmer sees: lme4's logLik for nAGQ > 1 is
# (-deviance / 2) with the deviance from deviance residuals, i.e. it omits this sum
sat_ll <- function(family, y, n = NULL) {
  if (family == "poisson") return(sum(dpois(y, y, log = TRUE)))
  if (is.null(n)) return(0)  # 0/1 rows: saturated likelihood is 1
  sum(dbinom(y, n, y / n, log = TRUE))
}

cases <- list()
kwa <- function(base, ...) modifyList(base, list(...))
add <- function(name, m, engine, data_name, kwargs, nAGQ = 1, loglik_correction = 0, note = "",
                treatment_term = "treatment") {
  if (engine == "glmmTMB") {
    # polish nlminb's optimum with Newton steps on TMB's exact gradient (optimHess of it),
    # then report estimates, sdreport SEs (joint Hessian in beta, theta) and logLik there
    obj <- m$obj; par <- m$fit$par
    for (k in 1:6) {
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
    th <- par[names(par) == "theta"]
    sds <- setNames(exp(th), names(unlist(lapply(VarCorr(m)$cond, function(v) attr(v, "stddev")))))
    disp <- if (family(m)$family == "nbinom2") exp(par[names(par) == "betad"]) else NA
    conv <- sdr$pdHess && max(abs(obj$gr(par))) < 1e-6
    polish_shift <- max(abs(par - m$fit$par))
    note <- paste0(note, if (nchar(note)) "; " else "", sprintf("glmmTMB optimum Newton-polished (max |shift| %.1e, max |grad| %.1e)",
                   polish_shift, max(abs(obj$gr(par)))))
  } else {
    fe <- fixef(m); se <- sqrt(diag(as.matrix(vcov(m)))); vb <- unname(as.matrix(vcov(m)))
    vc <- VarCorr(m)
    sds <- unlist(lapply(vc, function(v) attr(v, "stddev")))
    disp <- NA
    conv <- is.null(m@optinfo$conv$lme4$messages)
    ll <- as.numeric(logLik(m)) + loglik_correction
  }
  case <- list(name = name, engine = engine, dataset = data_name, nAGQ = nAGQ, kwargs = kwargs,
               fixef_names = names(fe), fixef = unname(fe), fixef_se = unname(se), vcov = vb,
               treatment_term = treatment_term,
               estimate = unname(fe[treatment_term]), se = unname(se[treatment_term]),
               loglik = ll, loglik_raw = as.numeric(logLik(m)), loglik_correction = loglik_correction,
               re_sd = as.list(sds), nb_size = disp, converged = conv, note = note)
  cases[[length(cases) + 1]] <<- case
  cat(sprintf("%-34s est % .8f se %.8f ll %.6f sd %s\n", name, case$estimate, case$se, ll,
              paste(signif(sds, 6), collapse = ",")))
}

# ---------------------------------------------------------------- council counts (Poisson)
cc <- read.csv("data/council_counts.csv")
cc$period <- factor(cc$quarter); cc$cp <- interaction(cc$council, cc$quarter)
kw <- list(outcome = "count", cluster = "council", period = "quarter", treatment = "treatment",
           family = "poisson", exposure = "pop")
f_c <- count ~ period + treatment + offset(log(pop)) + (1 | council)
f_n <- count ~ period + treatment + offset(log(pop)) + (1 | council) + (1 | cp)
add("pois_cluster_tmb", glmmTMB(f_c, family = poisson, data = cc, control = tmb_ctrl), "glmmTMB",
    "council_counts", kwa(kw, random = "cluster"))
add("pois_olre_tmb", glmmTMB(f_n, family = poisson, data = cc, control = tmb_ctrl), "glmmTMB",
    "council_counts", kwa(kw, random = "nested"),
    note = "one row per council-quarter: the council-quarter effect is an observation-level random effect")
add("pois_nb2_tmb", glmmTMB(f_c, family = nbinom2, data = cc, control = tmb_ctrl), "glmmTMB",
    "council_counts", kwa(kw, family = "negative_binomial", random = "cluster"))
f_s <- count ~ period + treatment + offset(log(pop)) + (1 | council) + (0 + treatment | council)
add("pois_slope_tmb", glmmTMB(f_s, family = poisson, data = cc, control = tmb_ctrl), "glmmTMB",
    "council_counts", kwa(kw, random = "random-slope"))
f_ns <- count ~ period + treatment + offset(log(pop)) + (1 | council) + (0 + treatment | council) + (1 | cp)
add("pois_nested_slope_tmb", glmmTMB(f_ns, family = poisson, data = cc, control = tmb_ctrl), "glmmTMB",
    "council_counts", kwa(kw, random = "nested+random-slope"))
add("pois_cluster_glmer", glmer(f_c, family = poisson, data = cc, nAGQ = 1, control = glmer_ctrl), "glmer",
    "council_counts", kwa(kw, random = "cluster"))
sat <- sat_ll("poisson", cc$count)
add("pois_cluster_glmer_agq9", glmer(f_c, family = poisson, data = cc, nAGQ = 9, control = glmer_ctrl), "glmer",
    "council_counts", kwa(kw, random = "cluster", method = "agq", n_quadrature = 9), nAGQ = 9,
    loglik_correction = sat, note = "loglik = logLik(glmer) + saturated log-likelihood (omitted by lme4 for nAGQ > 1)")
# offset given on the log scale (same model)
cc$logpop <- log(cc$pop)
kw_off <- kw; kw_off$exposure <- NULL; kw_off$offset <- "logpop"
add("pois_offset_tmb", glmmTMB(count ~ period + treatment + offset(logpop) + (1 | council), family = poisson,
                               data = cc, control = tmb_ctrl), "glmmTMB", "council_counts",
    kwa(kw_off, random = "cluster"), note = "offset column logpop = log(pop), added by the test")
# exposure-time effects (ETI), Poisson + OLRE; TATE over exposure times 1..L
cc$etime <- ave(cc$treatment, cc$council, FUN = cumsum)
cc$ef <- factor(cc$etime)
m_eti <- glmmTMB(count ~ period + ef + offset(log(pop)) + (1 | council) + (1 | cp), family = poisson,
                 data = cc, control = tmb_ctrl)
L <- max(cc$etime)
cvec <- c(rep(0, 12), rep(1 / L, L))
add("pois_eti_olre_tmb", m_eti, "glmmTMB", "council_counts", kwa(kw, random = "nested", effect = "tate"),
    treatment_term = "ef1")
fe <- cases[[length(cases)]]$fixef; V <- cases[[length(cases)]]$vcov
cases[[length(cases)]]$tate <- list(estimate = sum(cvec * fe), se = sqrt(drop(t(cvec) %*% V %*% cvec)), L = L)

add("pois_cov_olre_tmb", glmmTMB(count ~ period + treatment + deprivation + offset(log(pop)) + (1 | council) + (1 | cp),
                                 family = poisson, data = cc, control = tmb_ctrl), "glmmTMB", "council_counts",
    kwa(kw, random = "nested", covariates = "deprivation"))

# ---------------------------------------------------------------- NB counts
nb <- read.csv("data/council_nb.csv"); nb$period <- factor(nb$quarter)
kw_nb <- list(outcome = "count", cluster = "council", period = "quarter", treatment = "treatment",
              family = "negative_binomial", exposure = "pop", random = "cluster")
add("nb2_cluster_tmb", glmmTMB(count ~ period + treatment + offset(log(pop)) + (1 | council), family = nbinom2,
                               data = nb, control = tmb_ctrl), "glmmTMB", "council_nb", kw_nb)

# ---------------------------------------------------------------- binary trial
bt <- read.csv("data/binary_trial.csv"); bt$pf <- factor(bt$period)
bt$cp <- interaction(bt$cluster, bt$period)
ag <- aggregate(cbind(events = y, trials = 1) ~ cluster + period + treatment, data = bt, FUN = sum)
ag$pf <- factor(ag$period); ag$cp <- interaction(ag$cluster, ag$period)
kb <- list(outcome = "y", cluster = "cluster", period = "period", treatment = "treatment", family = "binomial")
kba <- list(outcome = "events", trials = "trials", cluster = "cluster", period = "period", treatment = "treatment",
            family = "binomial")
add("bin_cluster_glmer_rows", glmer(y ~ pf + treatment + (1 | cluster), family = binomial, data = bt,
                                    control = glmer_ctrl), "glmer", "binary_trial", kwa(kb, random = "cluster"),
    note = "0/1 rows: no binomial coefficient in the log-likelihood")
add("bin_cluster_glmer_agg", glmer(cbind(events, trials - events) ~ pf + treatment + (1 | cluster),
                                   family = binomial, data = ag, control = glmer_ctrl), "glmer",
    "binary_trial_agg", kwa(kba, random = "cluster"), note = "cbind(events, trials - events): includes log choose(n, y)")
add("bin_nested_tmb", glmmTMB(y ~ pf + treatment + (1 | cluster) + (1 | cp), family = binomial, data = bt,
                              control = tmb_ctrl), "glmmTMB", "binary_trial", kwa(kb, random = "nested"))
add("bin_nested_glmer", glmer(y ~ pf + treatment + (1 | cluster) + (1 | cp), family = binomial, data = bt,
                              control = glmer_ctrl), "glmer", "binary_trial", kwa(kb, random = "nested"))
add("bin_cov_tmb", glmmTMB(y ~ pf + treatment + age + (1 | cluster) + (1 | cp), family = binomial, data = bt,
                           control = tmb_ctrl), "glmmTMB", "binary_trial", kwa(kb, random = "nested", covariates = "age"),
    note = "individual covariate: rows grouped by (cell, age)")
add("bin_probit_tmb", glmmTMB(y ~ pf + treatment + (1 | cluster) + (1 | cp), family = binomial(link = "probit"),
                              data = bt, control = tmb_ctrl), "glmmTMB", "binary_trial",
    kwa(kb, random = "nested", link = "probit"))
add("bin_cloglog_tmb", glmmTMB(y ~ pf + treatment + (1 | cluster), family = binomial(link = "cloglog"),
                               data = bt, control = tmb_ctrl), "glmmTMB", "binary_trial",
    kwa(kb, random = "cluster", link = "cloglog"))
add("bin_slope_tmb", glmmTMB(y ~ pf + treatment + (1 | cluster) + (0 + treatment | cluster), family = binomial,
                             data = bt, control = tmb_ctrl), "glmmTMB", "binary_trial", kwa(kb, random = "random-slope"))

# ---------------------------------------------------------------- 30,000 children, 5 covariates (glmer)
# Logistic GLMM, council random intercept, period effects, five child-level covariates (two
# continuous: no aggregation possible).  glmer's optimum is Newton-polished on its own Laplace
# deviance (devFunOnly, a function of c(theta, beta)) with numDeriv's Richardson gradient and
# Hessian; SEs from that Hessian (lme4's own vcov uses a cruder finite-difference Hessian).
ch <- read.csv("data/children_covariates.csv"); ch$pf <- factor(ch$period)
f_ch <- y ~ pf + treatment + age + sex + disability + imd + prior_referral + (1 | council)
glmer_elapsed <- system.time(glmer(f_ch, family = binomial, data = ch))[["elapsed"]]
tight_elapsed <- system.time(m_ch <- glmer(f_ch, family = binomial, data = ch, control = glmer_ctrl))[["elapsed"]]
dev_ch <- glmer(f_ch, family = binomial, data = ch, control = glmer_ctrl, devFunOnly = TRUE)
par0 <- c(getME(m_ch, "theta"), fixef(m_ch)); par <- par0
for (k in 1:4) {
  g <- numDeriv::grad(dev_ch, par)
  if (max(abs(g)) < 1e-9) break
  H <- numDeriv::hessian(dev_ch, par)
  par <- par - solve(H, g)
}
g <- numDeriv::grad(dev_ch, par)
H <- numDeriv::hessian(dev_ch, par)
nth <- length(getME(m_ch, "theta"))
V <- solve(H / 2)
vb <- V[-seq_len(nth), -seq_len(nth)]
fe <- setNames(par[-seq_len(nth)], names(fixef(m_ch))); se <- setNames(sqrt(diag(vb)), names(fe))
ll_ch <- -dev_ch(par) / 2
case <- list(name = "children_cov_glmer", engine = "glmer", dataset = "children_covariates", nAGQ = 1,
             kwargs = list(outcome = "y", cluster = "council", period = "period", treatment = "treatment",
                           family = "binomial", random = "cluster",
                           covariates = "age + sex + disability + imd + prior_referral"),
             fixef_names = names(fe), fixef = unname(fe), fixef_se = unname(se), vcov = unname(vb),
             treatment_term = "treatment", estimate = unname(fe["treatment"]), se = unname(se["treatment"]),
             loglik = ll_ch, loglik_raw = as.numeric(logLik(m_ch)), loglik_correction = 0,
             re_sd = list(council = unname(par[1])), nb_size = NA, converged = TRUE,
             polished = TRUE, glmer_vcov_se = unname(sqrt(diag(as.matrix(vcov(m_ch))))),
             elapsed_glmer_default = glmer_elapsed, elapsed_glmer_tight = tight_elapsed,
             note = sprintf(paste0("glmer optimum Newton-polished on its Laplace deviance with numDeriv ",
                                   "(max |shift| %.1e, max |grad| %.1e); SEs from the numDeriv Hessian; ",
                                   "glmer elapsed %.2f s (default control), %.2f s (tight control)"),
                            max(abs(par - par0)), max(abs(g)), glmer_elapsed, tight_elapsed))
cases[[length(cases) + 1]] <- case
cat(sprintf("%-34s est % .8f se %.8f ll %.6f sd %.6f (glmer %.2f s)\n", case$name, case$estimate, case$se,
            ll_ch, par[1], glmer_elapsed))
# the same model in glmmTMB: exact (AD) Hessian, so SEs free of finite-difference noise
tmb_elapsed <- system.time(m_cht <- glmmTMB(f_ch, family = binomial, data = ch, control = tmb_ctrl))[["elapsed"]]
add("children_cov_tmb", m_cht, "glmmTMB", "children_covariates", case$kwargs,
    note = sprintf("glmmTMB elapsed %.2f s", tmb_elapsed))

# ---------------------------------------------------------------- AGQ on a small binary trial
bs <- read.csv("data/binary_small.csv"); bs$pf <- factor(bs$period)
kbs <- kwa(kb, random = "cluster")
for (q in c(1, 5, 11)) {
  kq <- if (q == 1) kbs else kwa(kbs, method = "agq", n_quadrature = q)
  add(sprintf("bin_small_glmer_agq%d", q), glmer(y ~ pf + treatment + (1 | cluster), family = binomial, data = bs,
                                                 nAGQ = q, control = glmer_ctrl), "glmer", "binary_small", kq,
      nAGQ = q, note = "0/1 rows: saturated log-likelihood is 0, so no correction")
}
bsa <- aggregate(cbind(events = y, trials = 1) ~ cluster + period + treatment, data = bs, FUN = sum)
bsa$pf <- factor(bsa$period)
add("bin_small_agg_glmer_agq11", glmer(cbind(events, trials - events) ~ pf + treatment + (1 | cluster),
                                       family = binomial, data = bsa, nAGQ = 11, control = glmer_ctrl), "glmer",
    "binary_small_agg", kwa(kba, random = "cluster", method = "agq", n_quadrature = 11), nAGQ = 11,
    loglik_correction = sat_ll("binomial", bsa$events, bsa$trials),
    note = "loglik = logLik(glmer) + saturated binomial log-likelihood of the cells")

# ---------------------------------------------------------------- R steppedwedge binary example
rb <- read.csv("data/rsteppedwedge_sw_data_example_binom.csv"); rb$pf <- factor(rb$period)
rb$cp <- interaction(rb$cluster, rb$period)
kr <- list(outcome = "numerator", trials = "denominator", cluster = "cluster", period = "period", treatment = "trt",
           family = "binomial")
add("rsw_binom_nested_glmer", glmer(cbind(numerator, denominator - numerator) ~ pf + trt + (1 | cluster) + (1 | cp),
                                    family = binomial, data = rb, control = glmer_ctrl), "glmer",
    "rsteppedwedge_binom", kwa(kr, random = "nested"), treatment_term = "trt",
    note = "steppedwedge::analyze(family = binomial, re = c('clust','time')) model")
add("rsw_binom_cluster_glmer", glmer(cbind(numerator, denominator - numerator) ~ pf + trt + (1 | cluster),
                                     family = binomial, data = rb, control = glmer_ctrl), "glmer",
    "rsteppedwedge_binom", kwa(kr, random = "cluster"), treatment_term = "trt")
add("rsw_binom_nested_tmb", glmmTMB(cbind(numerator, denominator - numerator) ~ pf + trt + (1 | cluster) + (1 | cp),
                                    family = binomial, data = rb, control = tmb_ctrl), "glmmTMB",
    "rsteppedwedge_binom", kwa(kr, random = "nested"), treatment_term = "trt")

writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"), "cases.json")
vers <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
             glmmTMB = as.character(packageVersion("glmmTMB")), TMB = as.character(packageVersion("TMB")),
             Matrix = as.character(packageVersion("Matrix")), jsonlite = as.character(packageVersion("jsonlite")))
writeLines(toJSON(vers, auto_unbox = TRUE, pretty = TRUE), "versions.json")

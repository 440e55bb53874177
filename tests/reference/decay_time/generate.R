# glmmTMB reference fit with continuous-time (Ornstein-Uhlenbeck) cluster-period effects,
# for steppedwedge's decay_scale="time" GLMM.  Run from this directory: Rscript generate.R
# Reads poisson_counts.csv (made by make_data.py), writes ou_poisson.json.
suppressMessages({library(glmmTMB); library(jsonlite)})
d <- read.csv("poisson_counts.csv", stringsAsFactors = FALSE)
d$period <- factor(d$period, levels = sort(unique(d$period)))  # ISO dates: sorts in time
d$times <- numFactor(d$time)
d$cluster <- factor(d$cluster)
ctrl <- glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = 1e-12))
out <- list()
for (rand in c("decay", "nested+decay")) {
  f <- if (rand == "decay") {
    outcome ~ period + treatment + offset(log(population)) + ou(times + 0 | cluster)
  } else {
    outcome ~ period + treatment + offset(log(population)) + (1 | cluster) +
      ou(times + 0 | cluster)
  }
  m <- glmmTMB(f, family = poisson, data = d, control = ctrl)
  obj <- m$obj; par <- m$fit$par
  for (k in 1:8) {  # Newton polish on TMB's exact gradient
    g <- as.numeric(obj$gr(par)); if (max(abs(g)) < 1e-10) break
    par <- par - solve(optimHess(par, obj$fn, obj$gr), g)
  }
  sdr <- TMB::sdreport(obj, par.fixed = par)
  fx <- summary(sdr, "fixed"); isb <- rownames(fx) == "beta"
  vc <- VarCorr(m)$cond
  ou_block <- vc[[length(vc)]]
  cm <- attr(ou_block, "correlation")
  tt <- sort(unique(d$time))
  # correlation one year apart, from the first two periods: r = corr^(1 / (t2 - t1))
  r <- cm[1, 2]^(1 / (tt[2] - tt[1]))
  out[[rand]] <- list(
    loglik = -obj$fn(par),
    beta = unname(fx[isb, 1]), beta_names = names(fixef(m)$cond), se = unname(fx[isb, 2]),
    gamma2 = unname(attr(ou_block, "stddev")[1]^2),
    tau2 = if (rand == "decay") 0 else unname(attr(vc[[1]], "stddev")^2),
    decay = r, corr = unname(cm), max_gradient = max(abs(obj$gr(par))))
  cat(rand, "loglik", out[[rand]]$loglik, "decay", r, "\n")
}
out$versions <- list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "ou_poisson.json")

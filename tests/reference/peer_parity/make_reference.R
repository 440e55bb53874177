# Peer-parity reference numbers for steppedwedge.power (issue 14).
#
# Calls swCRTdesign::swPwr (v4.0) and SteppedPower::glsPower (v0.3.4) -- CRAN packages, not
# bundled here -- and writes their power to peer_parity.json.  Run from this folder:
#     Rscript make_reference.R
# Needs: swCRTdesign, SteppedPower, jsonlite.  The test suite reads only the JSON (no R).
suppressPackageStartupMessages({
  library(swCRTdesign)
  library(SteppedPower)
  library(jsonlite)
})

# --- eight binomial, identity-link (risk difference) scenarios ------------------------
# cl: clusters per sequence of a standard stepped wedge (T = S + 1 periods);
# n: individuals per cluster-period; tau, gamma: SDs on the probability scale.
binomial <- list(
  list(cl = c(2, 2, 2),       n = 20,  mu0 = 0.30, mu1 = 0.20, tau = 0.05,  gamma = 0.00),
  list(cl = c(2, 2, 2),       n = 20,  mu0 = 0.30, mu1 = 0.20, tau = 0.05,  gamma = 0.03),
  list(cl = c(3, 3, 3, 3),    n = 50,  mu0 = 0.10, mu1 = 0.05, tau = 0.02,  gamma = 0.01),
  list(cl = c(1, 1, 1, 1, 1), n = 100, mu0 = 0.50, mu1 = 0.40, tau = 0.10,  gamma = 0.05),
  list(cl = c(4, 4, 4),       n = 10,  mu0 = 0.25, mu1 = 0.40, tau = 0.03,  gamma = 0.02),
  list(cl = c(2, 2, 2, 2),    n = 30,  mu0 = 0.60, mu1 = 0.45, tau = 0.08,  gamma = 0.00),
  list(cl = c(5, 5),          n = 40,  mu0 = 0.15, mu1 = 0.08, tau = 0.015, gamma = 0.015),
  list(cl = c(3, 3, 3, 3, 3, 3), n = 25, mu0 = 0.40, mu1 = 0.32, tau = 0.06, gamma = 0.04)
)
bin_out <- lapply(binomial, function(s) {
  dsn <- swDsn(clusters = s$cl)
  p_sw <- swPwr(dsn, distn = "binomial", n = s$n, mu0 = s$mu0, mu1 = s$mu1,
                tau = s$tau, eta = 0, rho = 0, gamma = s$gamma, alpha = 0.05, silent = TRUE)
  p_sp <- glsPower(Cl = s$cl, mu0 = s$mu0, mu1 = s$mu1, tau = s$tau, gamma = s$gamma,
                   N = s$n, family = "binomial", dfAdjust = "none", verbose = 0)
  c(s, list(swcrtdesign = as.numeric(p_sw), steppedpower = as.numeric(p_sp)))
})

# --- five denominator-df scenarios (SteppedPower dfAdjust), Gaussian ------------------
dof <- list(
  list(cl = c(3, 3, 3),       n = 10, effect = 0.4, sigma = 1.0, tau = 0.30, gamma = 0.00,
       dfAdjust = "between-within"),
  list(cl = c(3, 3, 3),       n = 10, effect = 0.4, sigma = 1.0, tau = 0.30, gamma = 0.10,
       dfAdjust = "containment"),
  list(cl = c(3, 3, 3),       n = 10, effect = 0.4, sigma = 1.0, tau = 0.30, gamma = 0.10,
       dfAdjust = "residual"),
  list(cl = c(2, 2, 2, 2, 2), n = 5,  effect = 0.5, sigma = 2.0, tau = 0.40, gamma = 0.20,
       dfAdjust = "between-within"),
  list(cl = c(1, 1, 1, 1),    n = 20, effect = 0.6, sigma = 1.5, tau = 0.25, gamma = 0.15,
       dfAdjust = "containment")
)
dof_out <- lapply(dof, function(s) {
  res <- glsPower(Cl = s$cl, mu0 = 0, mu1 = s$effect, sigma = s$sigma, tau = s$tau,
                  gamma = s$gamma, N = s$n, dfAdjust = s$dfAdjust, verbose = 1)
  c(s, list(steppedpower = as.numeric(res$power), df = as.numeric(res$Params$denomDF)))
})

out <- list(
  source = paste0("swCRTdesign ", packageVersion("swCRTdesign"), ", SteppedPower ",
                  packageVersion("SteppedPower"), ", ", R.version.string),
  binomial_identity = bin_out,
  dof = dof_out
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE), "peer_parity.json")

# Reference values for tests/test_staggered.py (run from this folder: Rscript make_reference.R).
#
# Needs the CRAN package `staggered` (Roth & Sant'Anna; GPL-2), installed from its public source
# (github.com/jonathandroth/staggered, version in DESCRIPTION below), and jsonlite.  Writes:
#   pj_complaints_wide.csv.gz  the README data (officer x month complaints), wide form
#   sw_small.csv               a small simulated stepped-wedge panel (made here, seed below)
#   mpdta.csv                  the `did` package's mpdta data (GPL-3; read from data/mpdta.rda)
#   staggered_reference.json   estimates and standard errors from staggered(), staggered_cs(),
#                              staggered_sa() on both panels.  (beta = 0 is not run: staggered
#                              1.2.3 stops with "non-conformable arguments" for it.)
suppressPackageStartupMessages({library(staggered); library(jsonlite); library(data.table)})
out <- list(staggered_version = as.character(packageVersion("staggered")),
            R_version = R.version.string)

# ---- the README data (pj_officer_level_balanced) ------------------------------------------
df <- as.data.table(staggered::pj_officer_level_balanced)[, .(uid, period, first_trained, complaints)]
wide <- dcast(df, uid + first_trained ~ period, value.var = "complaints")
setnames(wide, as.character(1:72), paste0("p", 1:72))
fwrite(wide, "pj_complaints_wide.csv")
system("gzip -9 -n -f pj_complaints_wide.csv")

run <- function(fun, d, estimand, ...) {
  r <- fun(df = d, i = "uid", t = "period", g = "first_trained", y = "complaints",
           estimand = estimand, ...)
  as.list(r)
}
pj <- list()
for (e in c("simple", "cohort", "calendar")) {
  pj[[paste0("efficient_", e)]] <- run(staggered, df, e)
  pj[[paste0("cs_", e)]] <- run(staggered_cs, df, e)
  pj[[paste0("sa_", e)]] <- run(staggered_sa, df, e)

}
pj[["efficient_eventstudy"]] <- run(staggered, df, "eventstudy", eventTime = 0:23)
pj[["cs_eventstudy"]] <- run(staggered_cs, df, "eventstudy", eventTime = -3:5)
pj[["efficient_simple_fullA0"]] <- run(staggered, df, "simple", use_DiD_A0 = FALSE)
set.seed(1)
pj[["efficient_simple_fisher"]] <- run(staggered, df, "simple", compute_fisher = TRUE,
                                       num_fisher_permutations = 500)
out$pj <- pj

# ---- a small simulated stepped-wedge panel -------------------------------------------------
set.seed(20231)
n_i <- 30; n_t <- 6
g_i <- rep(2:6, each = 6)            # five sequences of six clusters; 6 = last cohort
sw <- CJ(uid = 1:n_i, period = 1:n_t)
sw[, first_trained := g_i[uid]]
a <- rnorm(n_i, 0, 1)
sw[, complaints := a[uid] + 0.3 * period + (period >= first_trained) *
       (0.5 + 0.2 * (period - first_trained) + rnorm(.N, 0, 0.3)) + rnorm(.N)]
fwrite(sw, "sw_small.csv")
small <- list()
for (e in c("simple", "cohort", "calendar")) {
  small[[paste0("efficient_", e)]] <- run(staggered, sw, e)
  small[[paste0("cs_", e)]] <- run(staggered_cs, sw, e)
  small[[paste0("sa_", e)]] <- run(staggered_sa, sw, e)

  small[[paste0("efficient_fullA0_", e)]] <- run(staggered, sw, e, use_DiD_A0 = FALSE)
}
small[["efficient_eventstudy"]] <- run(staggered, sw, "eventstudy", eventTime = -3:3)
small[["cs_eventstudy"]] <- run(staggered_cs, sw, "eventstudy", eventTime = 0:3)
small[["sa_eventstudy"]] <- run(staggered_sa, sw, "eventstudy", eventTime = 0:3)
out$sw_small <- small

# ---- mpdta (did package data; read from the did source's data/mpdta.rda) -------------------
mp_path <- Sys.getenv("MPDTA_RDA", "/tmp/did_src/data/mpdta.rda")
if (file.exists(mp_path)) {
  load(mp_path)
  fwrite(as.data.table(mpdta)[, .(countyreal, year, first.treat, lemp)], "mpdta.csv")
}
write_json(out, "staggered_reference.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)

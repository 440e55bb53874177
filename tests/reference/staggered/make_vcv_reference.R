# Joint covariance of event-study estimates (staggered(..., return_full_vcv = TRUE)) on
# sw_small.csv, for tests/test_staggered.py.  Run from this folder:
#   Rscript make_vcv_reference.R  -> vcv_reference.json
suppressPackageStartupMessages({library(staggered); library(jsonlite)})
sw <- read.csv("sw_small.csv")
out <- list(staggered_version = as.character(packageVersion("staggered")))
run <- function(fun, times) {
  r <- fun(df = sw, i = "uid", t = "period", g = "first_trained", y = "complaints",
           estimand = "eventstudy", eventTime = times, return_full_vcv = TRUE)
  list(estimate = r$resultsDF$estimate, vcv = r$vcv, vcv_neyman = r$vcv_neyman)
}
out$efficient <- run(staggered, 0:3)
out$cs <- run(staggered_cs, 0:3)
write_json(out, "vcv_reference.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)

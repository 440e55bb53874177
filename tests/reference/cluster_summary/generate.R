# Reference numbers for steppedwedge.models.cluster_level.fit_cluster_summary: the regression
# of cluster-period log rates on council + quarter fixed effects and treatment, with
# clubSandwich's CR2 cluster-robust covariance (clustered by council) and its Satterthwaite df.
# Run from this folder:  Rscript generate.R   (reads councils17.csv, councils8.csv; writes
# cluster_summary.json).  R 4.2, clubSandwich 0.5.8, jsonlite.
suppressPackageStartupMessages({library(clubSandwich); library(jsonlite)})

one <- function(file, weights) {
  d <- read.csv(file)
  d$council <- factor(d$council)
  d$quarter <- factor(d$quarter)
  d$s <- log((d$entries_into_care + 0.5) / d$population_0_17)
  d$w <- switch(weights,
                none = rep(1, nrow(d)),
                size = d$population_0_17,
                "inverse-variance" = d$entries_into_care + 0.5)
  fit <- lm(s ~ treated + quarter + council, data = d, weights = w)
  V <- vcovCR(fit, cluster = d$council, type = "CR2")
  ct <- coef_test(fit, vcov = V, test = "Satterthwaite", coefs = "treated")
  list(file = file, weights = weights,
       estimate = unname(coef(fit)["treated"]),
       se_model = unname(sqrt(diag(vcov(fit)))["treated"]),
       df_residual = fit$df.residual,
       se_cr2 = ct$SE, df_satterthwaite = ct$df_Satt, p_satterthwaite = ct$p_Satt,
       n_clusters = nlevels(d$council))
}

cases <- list()
for (f in c("councils17.csv", "councils8.csv")) {
  for (w in c("none", "size", "inverse-variance")) {
    cases[[length(cases) + 1]] <- one(f, w)
  }
}
writeLines(toJSON(list(r_version = R.version.string,
                       clubSandwich = as.character(packageVersion("clubSandwich")),
                       cases = cases), auto_unbox = TRUE, digits = 15, pretty = TRUE),
           "cluster_summary.json")

# Reference numbers for steppedwedge.models.fixed_effects (council fixed-effects GLM with
# CR0/CR1/CR2 cluster-robust SEs and clubSandwich's Satterthwaite df).
# Run from this folder:  Rscript generate.R   (writes sw_binary.csv, sw_count.csv, clubsandwich.json)
# R 4.2, clubSandwich 0.5.8, jsonlite.
suppressPackageStartupMessages({library(clubSandwich); library(jsonlite)})
set.seed(20261126)

# ---- simulated stepped-wedge data: 6 councils, 1 per sequence, 7 periods -----------------
I <- 6; Tn <- 7
rows <- list()
for (i in 1:I) {
  a <- rnorm(1, 0, 0.3)
  for (j in 1:Tn) {
    n <- rpois(1, 40) + 5
    trt <- as.integer(j > i)          # council i starts in period i + 1
    age <- round(runif(n, 0, 17), 2)
    sex <- rbinom(n, 1, 0.5)
    eta <- -2.4 + a + 0.08 * (j - 1) - 0.3 * trt + 0.04 * age - 0.2 * sex
    y <- rbinom(n, 1, plogis(eta))
    rows[[length(rows) + 1]] <- data.frame(council = paste0("LA", i), period = j, trt = trt,
                                           age = age, sex = sex, y = y)
  }
}
d <- do.call(rbind, rows)
d$yc <- round(d$age * 0.3 + 2 * d$trt + rnorm(nrow(d), 0, 1.5), 3)   # Gaussian outcome
write.csv(d, "sw_binary.csv", row.names = FALSE)

# council-period counts with a population offset (Poisson)
cp <- aggregate(cbind(n = 1, events = y) ~ council + period + trt, data = d, FUN = sum)
cp$pop <- cp$n * 100
cp <- cp[order(cp$council, cp$period), ]
write.csv(cp, "sw_count.csv", row.names = FALSE)

d$council <- factor(d$council); d$period <- factor(d$period)
cp$council <- factor(cp$council); cp$period <- factor(cp$period)

# IRLS run to full convergence so the reference does not carry glm's default 1e-8 stopping error
ctl <- glm.control(epsilon = 1e-12, maxit = 200)

one <- function(name, fit, cluster) {
  # restart IRLS at the converged coefficients: glm's stored working weights (used by the
  # bread) lag one iteration behind the fitted values; from a converged start they agree
  for (k in 1:3) {
    st <- coef(fit); st[is.na(st)] <- 0
    fit <- update(fit, start = st)
  }
  out <- list(name = name, coef_names = names(coef(fit)), coef = unname(coef(fit)),
              aliased = names(coef(fit))[is.na(coef(fit))])
  for (type in c("CR0", "CR1", "CR2")) {
    V <- vcovCR(fit, cluster = cluster, type = type)
    ct <- coef_test(fit, vcov = V, test = c("z", "naive-t", "Satterthwaite"))
    out[[type]] <- list(terms = as.character(ct$Coef), beta = ct$beta, se = ct$SE,
                        df_satt = ct$df_Satt, p_satt = ct$p_Satt, p_z = ct$p_z,
                        vcov = unname(as.matrix(V)))
  }
  out
}

fits <- list(
  one("binomial", glm(y ~ trt + period + council + age + sex, family = binomial, data = d, control = ctl), d$council),
  one("gaussian", glm(yc ~ trt + period + council + age + sex, family = gaussian, data = d, control = ctl), d$council),
  one("poisson_offset", glm(events ~ trt + period + council + offset(log(pop)), family = poisson, data = cp, control = ctl),
      cp$council),
  # treatment x period in the per-period parameterisation of steppedwedge (no main effect):
  # trt:period1 (all control) and trt:period7 (all treated) are aliased
  one("binomial_interaction", glm(y ~ period + council + age + sex + trt:period, family = binomial, data = d, control = ctl),
      d$council)
)
out <- list(generated_with = list(R = R.version.string,
                                  clubSandwich = as.character(packageVersion("clubSandwich"))),
            fits = fits)
write_json(out, "clubsandwich.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)

# Reference GLMM fits by lme4's glmer on lme4's own data sets, written to lme4_glmer.json,
# and the data sets exported beside it (tests/data/cbpp.csv, grouseticks.csv, verbagg.csv).
# Every case is fitted twice: with glmer's defaults (what users get; its time is recorded
# for benchmarks/bench_glmer.py) and with tight optimiser tolerances (nloptwrap/BOBYQA,
# xtol_rel = 1e-12, ftol_abs = 1e-12) and PIRLS converged to tolPwrss = 1e-12, the optimum
# the tests compare with. (With the default tolPwrss = 1e-7, lme4's log|L|^2 is taken at the
# weights of PIRLS's next-to-last iterate: 5.6e-4 higher on cbpp, and a slightly moved
# optimum.)
# Deviance is -2 logLik (lme4's Laplace or adaptive Gauss-Hermite approximation with all
# constants); vcov is lme4's default (the finite-difference Hessian of the deviance over
# theta and beta) and vcov_rx the one from the PIRLS factor RX (use.hessian = FALSE).
# Run from the repository root: Rscript tests/data/lme4_glmer.R
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

data(cbpp, package = "lme4")
data(grouseticks, package = "lme4")
data(VerbAgg, package = "lme4")
grouseticks$cHEIGHT <- grouseticks$HEIGHT - mean(grouseticks$HEIGHT)

write.csv(data.frame(herd = as.character(cbpp$herd), incidence = cbpp$incidence,
                     size = cbpp$size, period = as.character(cbpp$period)),
          "tests/data/cbpp.csv", row.names = FALSE)
write.csv(data.frame(INDEX = as.character(grouseticks$INDEX), TICKS = grouseticks$TICKS,
                     BROOD = as.character(grouseticks$BROOD), HEIGHT = grouseticks$HEIGHT,
                     YEAR = as.character(grouseticks$YEAR),
                     LOCATION = as.character(grouseticks$LOCATION),
                     cHEIGHT = sprintf("%.17g", grouseticks$cHEIGHT)),
          "tests/data/grouseticks.csv", row.names = FALSE, quote = FALSE)
write.csv(data.frame(Anger = VerbAgg$Anger, Gender = as.character(VerbAgg$Gender),
                     item = as.character(VerbAgg$item), resp = as.character(VerbAgg$resp),
                     id = as.character(VerbAgg$id), btype = as.character(VerbAgg$btype),
                     situ = as.character(VerbAgg$situ), mode = as.character(VerbAgg$mode),
                     r2 = as.character(VerbAgg$r2)),
          "tests/data/verbagg.csv", row.names = FALSE)

# a simulated Bernoulli response with a correlated random slope (2,000 rows, 50 groups;
# made by numpy, seed 5: y ~ Bernoulli(logit^-1(-0.3 + 0.8 x + b0[g] + b1[g] x)))
slopes <- read.csv("tests/data/glmm_slopes.csv")
slopes$g <- factor(slopes$g)

cases <- list(
  list(id = "cbpp", file = "tests/data/cbpp.csv", data = cbpp, family = "binomial",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)", nAGQ = 1),
  list(id = "cbpp_agq10", file = "tests/data/cbpp.csv", data = cbpp, family = "binomial",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)", nAGQ = 10),
  list(id = "grouseticks", file = "tests/data/grouseticks.csv", data = grouseticks,
       family = "poisson", nAGQ = 1,
       formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"),
  list(id = "verbagg", file = "tests/data/verbagg.csv", data = VerbAgg, family = "binomial",
       formula = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", nAGQ = 1),
  # a non-canonical link, and a Poisson offset in the formula
  list(id = "cbpp_probit", file = "tests/data/cbpp.csv", data = cbpp, family = "binomial",
       link = "probit", nAGQ = 1,
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
  list(id = "grouseticks_offset", file = "tests/data/grouseticks.csv", data = grouseticks,
       family = "poisson", nAGQ = 1,
       formula = "TICKS ~ YEAR + offset(log(HEIGHT / 100)) + (1 | BROOD) + (1 | LOCATION)"),
  list(id = "slopes", file = "tests/data/glmm_slopes.csv", data = slopes, family = "binomial",
       nAGQ = 1, formula = "y ~ x + (1 + x | g)")
)

tight <- glmerControl(optimizer = "nloptwrap", tolPwrss = 1e-12,
                      optCtrl = list(xtol_rel = 1e-12, ftol_abs = 1e-12, ftol_rel = 1e-15,
                                     maxeval = 1e5))

summarise <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  list(
    deviance = -2 * as.numeric(logLik(fit)), logLik = as.numeric(logLik(fit)),
    AIC = AIC(fit), BIC = BIC(fit), deviance_resid = deviance(fit),
    df_resid = df.residual(fit),
    theta = unname(getME(fit, "theta")),
    fixef = as.list(fixef(fit)),
    se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
    se_rx = as.list(sqrt(diag(as.matrix(vcov(fit, use.hessian = FALSE))))),
    varcor = lapply(seq_len(nrow(vc)), function(i) list(group = vc$grp[i], var = vc$vcov[i],
                                                         sd = vc$sdcor[i])),
    singular = isSingular(fit),
    fitted_head = unname(head(fitted(fit), 10)),
    eta_head = unname(head(predict(fit), 10)),
    ranef_head = lapply(ranef(fit), function(r) unname(head(r[[1]], 5)))
  )
}

out <- lapply(cases, function(case) {
  f <- as.formula(case$formula)
  fam <- if (is.null(case$link)) get(case$family)() else get(case$family)(link = case$link)
  t0 <- proc.time()[["elapsed"]]
  default <- glmer(f, data = case$data, family = fam, nAGQ = case$nAGQ)
  elapsed <- proc.time()[["elapsed"]] - t0
  times <- sapply(1:3, function(i) system.time(
    glmer(f, data = case$data, family = fam, nAGQ = case$nAGQ))[["elapsed"]])
  best <- glmer(f, data = case$data, family = fam, nAGQ = case$nAGQ, control = tight)
  list(id = case$id, file = case$file, formula = case$formula, family = case$family,
       link = if (is.null(case$link)) fam$link else case$link,
       nAGQ = case$nAGQ, default = summarise(default), tight = summarise(best),
       seconds_default = median(times), seconds_first = elapsed)
})

# anova of nested glmer fits (tight fits, as above): lme4's likelihood-ratio table
m0 <- glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cbpp, binomial, control = tight)
m1 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial,
            control = tight)
av <- as.data.frame(anova(m0, m1))
anova_ref <- list(formulas = c("cbind(incidence, size - incidence) ~ 1 + (1 | herd)",
                               "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
                  npar = av$npar, AIC = av$AIC, BIC = av$BIC, logLik = av$logLik,
                  Chisq = av$Chisq[2], Df = av$Df[2], p = av[["Pr(>Chisq)"]][2])

writeLines(toJSON(list(lme4_version = as.character(packageVersion("lme4")),
                       R_version = R.version.string, cases = out, anova = anova_ref),
                  auto_unbox = TRUE, digits = NA, pretty = TRUE),
           "tests/data/lme4_glmer.json")

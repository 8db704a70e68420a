# Reference negative binomial GLMM fits by lme4's glmer.nb, written to lme4_glmer_nb.json,
# with MASS's epil exported beside it (tests/data/epil.csv; grouseticks.csv is written by
# lme4_glmer.R). Each case is fitted with glmer.nb's defaults ("default": what users get)
# and tightly ("tight": glmer's optimiser to xtol_rel = 1e-12 with PIRLS to tolPwrss =
# 1e-12, and optimize() over log(theta) to tol = 1e-9), the optimum the tests compare with.
# theta is the NB dispersion (getME(fit, "glmer.nb.theta"): variance mu + mu^2 / theta);
# logLik is lme4's Laplace -2 logLik / -2 at that theta, with npar counting theta.
# Run from the repository root: Rscript tests/data/lme4_glmer_nb.R
suppressPackageStartupMessages({
  library(lme4)
  library(MASS)
  library(jsonlite)
})

data(grouseticks, package = "lme4")
grouseticks$cHEIGHT <- grouseticks$HEIGHT - mean(grouseticks$HEIGHT)
data(epil, package = "MASS")
epil$subject <- factor(epil$subject)
write.csv(data.frame(y = epil$y, trt = as.character(epil$trt), base = epil$base,
                     age = epil$age, V4 = epil$V4, subject = as.character(epil$subject),
                     period = epil$period),
          "tests/data/epil.csv", row.names = FALSE)

cases <- list(
  list(id = "grouseticks_nb", file = "tests/data/grouseticks.csv", data = grouseticks,
       formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)"),
  list(id = "epil_nb", file = "tests/data/epil.csv", data = epil,
       formula = "y ~ trt + base + age + V4 + (1 | subject)")
)

tight <- glmerControl(optimizer = "nloptwrap", tolPwrss = 1e-12,
                      optCtrl = list(xtol_rel = 1e-12, ftol_abs = 1e-12, ftol_rel = 1e-15,
                                     maxeval = 1e5))

# glmer.nb's steps with tight tolerances (lme4 1.1-31's glmer.nb passes its own tol= on to
# the first glmer call, which refuses it): the Poisson fit, MASS's theta.ml at its fitted
# means, the NB fit there, then optimize() over log(theta) within +/- 3 of it
nb_tight <- function(f, d) {
  g0 <- glmer(f, data = d, family = poisson, control = tight)
  th <- lme4:::est_theta(g0, limit = 20, eps = 1e-4)
  g1 <- glmer(f, data = d, family = negative.binomial(theta = th), control = tight)
  lme4:::optTheta(g1, interval = log(th) + c(-3, 3), tol = 1e-9, control = tight)
}

summarise <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  list(
    nb_theta = getME(fit, "glmer.nb.theta"),
    family = family(fit)$family,
    deviance = -2 * as.numeric(logLik(fit)), logLik = as.numeric(logLik(fit)),
    npar = attr(logLik(fit), "df"),
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
    resid_dev_head = unname(head(residuals(fit, type = "deviance"), 10)),
    resid_pearson_head = unname(head(residuals(fit, type = "pearson"), 10))
  )
}

out <- lapply(cases, function(case) {
  f <- as.formula(case$formula)
  d <- case$data
  t0 <- proc.time()[["elapsed"]]
  default <- glmer.nb(f, data = d)
  elapsed <- proc.time()[["elapsed"]] - t0
  best <- nb_tight(f, d)
  # at a fixed theta (the tight estimate rounded): glmer with negative.binomial(theta)
  th <- signif(getME(best, "glmer.nb.theta"), 3)
  fixed <- glmer(f, data = d, family = negative.binomial(theta = th), control = tight)
  list(id = case$id, file = case$file, formula = case$formula,
       default = summarise(default), tight = summarise(best),
       fixed_theta = th, fixed = summarise(fixed), seconds_default = elapsed)
})

# adaptive Gauss-Hermite quadrature (nAGQ = 10) at a fixed theta: glmer with
# negative.binomial(7.42). (glmer.nb with nAGQ > 1 is not a reference: the AGQ deviance
# leaves out the saturated likelihood, which depends on theta; it drifts to theta ~ 0.66
# and logLik = +113 on epil.)
agq <- glmer(as.formula(cases[[2]]$formula), data = epil, family = negative.binomial(7.42),
             nAGQ = 10, control = tight)
agq_ref <- c(list(formula = cases[[2]]$formula, fixed_theta = 7.42, nAGQ = 10),
             summarise(agq))

# anova of nested glmer.nb fits (tight): lme4's likelihood-ratio table
gt <- "TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)"
m0 <- nb_tight(as.formula(gt), grouseticks)
m1 <- nb_tight(as.formula(cases[[1]]$formula), grouseticks)
av <- as.data.frame(anova(m0, m1))
anova_ref <- list(formulas = c(gt, cases[[1]]$formula), npar = av$npar, AIC = av$AIC,
                  BIC = av$BIC, logLik = av$logLik, Chisq = av$Chisq[2], Df = av$Df[2],
                  p = av[["Pr(>Chisq)"]][2])

writeLines(toJSON(list(lme4_version = as.character(packageVersion("lme4")),
                       R_version = R.version.string, cases = out, anova = anova_ref,
                       agq = agq_ref),
                  auto_unbox = TRUE, digits = NA, pretty = TRUE),
           "tests/data/lme4_glmer_nb.json")

# Reference likelihood-ratio tests of random effects in GLMMs, written to
# lme4_glmer_ranova.json: for each model, lme4's anova(full, reduced) of glmer fits (ML,
# Laplace) for every neighbour that bl.compare_random_effects(formula, data, family=...)
# tests: a whole random term dropped (a glm when none is left: lme4's anova takes a glm
# as the smaller model), a random slope dropped, the correlations dropped. Fits are tight
# (as lme4_glmer.R: nloptwrap to xtol_rel = 1e-12, PIRLS to tolPwrss = 1e-12). The p-value
# is anova's plain chi2(Df) tail; the boundary-corrected one (0.5 chi2(Df - 1) + 0.5
# chi2(Df) for one variance at zero) is computed here from the same statistic.
# The negative binomial's fits are lme4's glmer.nb steps, tightly (as lme4_glmer_nb.R), and
# MASS's glm.nb for the GLM; each model estimates its own theta (npar counts it).
# Data: tests/data/cbpp.csv, grouseticks.csv (written by lme4_glmer.R), glmm_slopes.csv,
# epil.csv (lme4_glmer_nb.R).
# Run from the repository root: Rscript tests/data/lme4_glmer_ranova.R
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

data(cbpp, package = "lme4")
data(grouseticks, package = "lme4")
data(epil, package = "MASS")
epil$subject <- factor(epil$subject)
grouseticks$cHEIGHT <- grouseticks$HEIGHT - mean(grouseticks$HEIGHT)
slopes <- read.csv("tests/data/glmm_slopes.csv")
slopes$g <- factor(slopes$g)

tight <- glmerControl(optimizer = "nloptwrap", tolPwrss = 1e-12,
                      optCtrl = list(xtol_rel = 1e-12, ftol_abs = 1e-12, ftol_rel = 1e-15,
                                     maxeval = 1e5))

# glmer.nb's steps with tight tolerances, as lme4_glmer_nb.R
nb_tight <- function(f, d) {
  g0 <- glmer(f, data = d, family = poisson, control = tight)
  th <- lme4:::est_theta(g0, limit = 20, eps = 1e-4)
  g1 <- glmer(f, data = d, family = negative.binomial(theta = th), control = tight)
  lme4:::optTheta(g1, interval = log(th) + c(-3, 3), tol = 1e-9, control = tight)
}

fit <- function(f, d, family) {
  f <- as.formula(f)
  if (family == "negative_binomial") {
    if (is.null(findbars(f))) return(MASS::glm.nb(f, data = d, control = glm.control(
      epsilon = 1e-12, maxit = 100)))
    # tight where PIRLS converges along optimize()'s path, else glmer.nb's defaults
    return(tryCatch(nb_tight(f, d), error = function(e) {
      message("glmer.nb defaults for ", deparse(f), ": ", conditionMessage(e))
      glmer.nb(f, data = d)
    }))
  }
  if (is.null(findbars(f))) return(glm(f, data = d, family = family))
  glmer(f, data = d, family = family, control = tight)
}

chibar <- function(chisq, df) {
  lower <- if (df == 1) as.numeric(chisq <= 0) else pchisq(chisq, df - 1, lower.tail = FALSE)
  0.5 * lower + 0.5 * pchisq(chisq, df, lower.tail = FALSE)
}

cases <- list(
  list(id = "cbpp", data = cbpp, family = "binomial",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
       neighbours = list(list(component = "(1 | herd)", variances = 1,
                              formula = "cbind(incidence, size - incidence) ~ period"))),
  list(id = "grouseticks", data = grouseticks, family = "poisson",
       formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
       neighbours = list(
         list(component = "(1 | BROOD)", variances = 1,
              formula = "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)"),
         list(component = "(1 | LOCATION)", variances = 1,
              formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)"))),
  list(id = "grouseticks_nb", data = grouseticks, family = "negative_binomial",
       formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
       neighbours = list(
         list(component = "(1 | BROOD)", variances = 1,
              formula = "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)"),
         list(component = "(1 | LOCATION)", variances = 1,
              formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)"))),
  list(id = "epil_nb", data = epil, family = "negative_binomial",
       formula = "y ~ trt + base + age + V4 + (1 | subject)",
       neighbours = list(list(component = "(1 | subject)", variances = 1,
                              formula = "y ~ trt + base + age + V4"))),
  list(id = "slopes", data = slopes, family = "binomial",
       formula = "y ~ x + (1 + x | g)",
       neighbours = list(
         list(component = "x in (1 + x | g)", variances = 1, formula = "y ~ x + (1 | g)"),
         list(component = "correlations in (1 + x | g)", variances = 0,
              formula = "y ~ x + (1 + x || g)")))
)

out <- lapply(cases, function(case) {
  full <- fit(case$formula, case$data, case$family)
  rows <- lapply(case$neighbours, function(nb) {
    small <- fit(nb$formula, case$data, case$family)
    av <- anova(full, small)
    chisq <- av$Chisq[2]
    df <- av$Df[2]
    list(component = nb$component, formula = nb$formula, Df = df, LRT = chisq,
         p = av[["Pr(>Chisq)"]][2],
         p_boundary = if (nb$variances == 1) chibar(chisq, df) else av[["Pr(>Chisq)"]][2],
         AIC_diff = AIC(small) - AIC(full), BIC_diff = BIC(small) - BIC(full),
         logLik_small = as.numeric(logLik(small)))
  })
  list(id = case$id, family = case$family, formula = case$formula,
       logLik = as.numeric(logLik(full)), neighbours = rows)
})

write_json(list(lme4_version = as.character(packageVersion("lme4")),
                R_version = R.version.string, cases = out),
           "tests/data/lme4_glmer_ranova.json", auto_unbox = TRUE, digits = NA, pretty = TRUE)

# Conditional SDs of glmer's random effects (lme4's ranef(fit, condVar = TRUE): the
# "postVar" arrays, from the PIRLS factor L at the optimum), written to
# lme4_glmer_condvar.json: per case and grouping factor, the SDs (square roots of the
# postVar diagonals) of every level and term, by level name. The fits use the tight
# settings of lme4_glmer.R (nloptwrap with 1e-12 tolerances, tolPwrss = 1e-12) on the same
# data: cbpp (one factor), grouseticks (three nested factors), VerbAgg (two crossed
# factors) and the simulated correlated random slope (glmm_slopes.csv).
# Run from the repository root: Rscript tests/data/lme4_glmer_condvar.R
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

data(cbpp, package = "lme4")
data(grouseticks, package = "lme4")
data(VerbAgg, package = "lme4")
grouseticks$cHEIGHT <- grouseticks$HEIGHT - mean(grouseticks$HEIGHT)
slopes <- read.csv("tests/data/glmm_slopes.csv")
slopes$g <- factor(slopes$g)

tight <- glmerControl(optimizer = "nloptwrap", tolPwrss = 1e-12,
                      optCtrl = list(xtol_rel = 1e-12, ftol_abs = 1e-12, ftol_rel = 1e-15,
                                     maxeval = 1e5))
cases <- list(
  cbpp = glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial,
               control = tight),
  grouseticks = glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION),
                      grouseticks, poisson, control = tight),
  verbagg = glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), VerbAgg,
                  binomial, control = tight),
  slopes = glmer(y ~ x + (1 + x | g), slopes, binomial, control = tight)
)
out <- lapply(cases, function(fit) {
  re <- ranef(fit, condVar = TRUE)
  lapply(re, function(frame) {
    pv <- attr(frame, "postVar")
    q <- dim(pv)[1]
    sds <- sapply(seq_len(dim(pv)[3]), function(j) sqrt(diag(matrix(pv[, , j], q, q))))
    sds <- matrix(sds, nrow = q)
    list(levels = rownames(frame), terms = colnames(frame), sd = t(sds),
         deviance = -2 * as.numeric(logLik(fit)))
  })
})
out$meta <- list(lme4 = as.character(packageVersion("lme4")), R = R.version.string)
writeLines(toJSON(out, digits = NA, pretty = TRUE), "tests/data/lme4_glmer_condvar.json")

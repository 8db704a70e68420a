# lme4's first glmer stage (nAGQ = 0: theta optimised with beta from PIRLS) on lme4's
# grouseticks and cbpp, with each level's conditional variance (ranef(condVar = TRUE)),
# written to lme4_stage_one.json: the reference of bayeslmm.glmm.stage_one.fit_stage_one
# and bayeslmm.bayes.centring.fitted_spreads (tests/test_centring.py).
# Run from the repository root: Rscript tests/data/lme4_stage_one.R
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
data(cbpp, package = "lme4")
data(grouseticks, package = "lme4")
grouseticks$cHEIGHT <- grouseticks$HEIGHT - mean(grouseticks$HEIGHT)
ctrl <- glmerControl(optimizer = "nloptwrap", tolPwrss = 1e-12,
                     optCtrl = list(xtol_rel = 1e-12, ftol_abs = 1e-12))
fits <- list(
  grouseticks = glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION),
                      family = poisson, data = grouseticks, nAGQ = 0, control = ctrl),
  cbpp = glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
               family = binomial, data = cbpp, nAGQ = 0, control = ctrl)
)
out <- lapply(fits, function(fit) {
  re <- ranef(fit, condVar = TRUE)
  vc <- as.data.frame(VarCorr(fit))
  groups <- names(re)
  list(
    deviance = deviance(fit),
    variance = setNames(as.list(vc$vcov), vc$grp),
    condvar = setNames(lapply(groups, function(g) as.numeric(attr(re[[g]], "postVar"))),
                       groups)
  )
})
write_json(out, "tests/data/lme4_stage_one.json", digits = NA, auto_unbox = TRUE)

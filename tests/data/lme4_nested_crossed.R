# Reference fits for nested and crossed random effects (lme4 + lmerTest), written to
# lme4_nested_crossed.json in the layout of reference/lme4_reference.json.
# Run from the repository root: Rscript tests/data/lme4_nested_crossed.R
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(jsonlite)})

rat <- read.csv("datasets/rat_pup.csv")
sleep <- read.csv("datasets/sleepstudy.csv", colClasses = c(Subject = "character"))
cases <- list(
  list(id = "ratpup_nested", file = "rat_pup.csv", data = rat,
       formula = "weight ~ sex + litsize + (1|treatment/litter)"),
  list(id = "ratpup_crossed", file = "rat_pup.csv", data = rat,
       formula = "weight ~ sex + (1|litter) + (1|litsize)"),
  list(id = "sleepstudy_crossed", file = "sleepstudy.csv", data = sleep,
       formula = "Reaction ~ Days + (1|Subject) + (1|Days)"),
  list(id = "sleepstudy_uncorrelated", file = "sleepstudy.csv", data = sleep,
       formula = "Reaction ~ Days + (1|Subject) + (0 + Days|Subject)")
)

fit_one <- function(case, reml) {
  m <- lmerTest::lmer(as.formula(case$formula), data = case$data, REML = reml)
  s <- summary(m)
  co <- s$coefficients
  vc <- as.data.frame(VarCorr(m))
  re <- ranef(m)
  list(
    fixef = as.list(fixef(m)),
    se = as.list(setNames(co[, "Std. Error"], rownames(co))),
    t = as.list(setNames(co[, "t value"], rownames(co))),
    df_satterthwaite = as.list(setNames(co[, "df"], rownames(co))),
    sigma = sigma(m),
    logLik = as.numeric(logLik(m)),
    deviance_or_reml_crit = if (reml) as.numeric(REMLcrit(m)) else deviance(m),
    singular = isSingular(m),
    varcorr = lapply(seq_len(nrow(vc)), function(i) list(
      grp = vc$grp[i], var1 = if (is.na(vc$var1[i])) NULL else vc$var1[i],
      var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i],
      vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
    ranef = lapply(names(re), function(g) list(
      group = g, levels = I(rownames(re[[g]])), terms = I(colnames(re[[g]])),
      values = unname(as.matrix(re[[g]]))))
  )
}

out <- list()
for (case in cases) {
  out[[case$id]] <- list(id = case$id, file = case$file, formula = case$formula,
                         nobs = nrow(case$data),
                         REML = fit_one(case, TRUE), ML = fit_one(case, FALSE))
}
meta <- list(lme4 = as.character(packageVersion("lme4")),
             lmerTest = as.character(packageVersion("lmerTest")), R = R.version.string)
writeLines(toJSON(list(meta = meta, cases = out), auto_unbox = TRUE, digits = NA, null = "null",
                  pretty = TRUE), "tests/data/lme4_nested_crossed.json")

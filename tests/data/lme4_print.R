# The numbers lmerTest's summary() prints, for the printed summary of bl.lmer() results
# (tests/test_api_shape.py): criterion, logLik, AIC, BIC, df.resid, the scaled residuals'
# quantiles, the random-effects table (variance, SD, correlations), the number of
# observations and levels, the fixed-effects table (Estimate, Std. Error, Satterthwaite
# df, t value, Pr(>|t|)) and the correlation of the fixed effects; each fit's printed
# summary is kept as text beside them. REML and ML.
# Run from the repository root: Rscript tests/data/lme4_print.R
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(jsonlite)})

sleepstudy_csv <- read.csv("datasets/sleepstudy.csv")
frames <- list(sleepstudy = sleepstudy_csv,
               penicillin = read.csv("tests/data/penicillin.csv"),
               machines = read.csv("tests/data/machines.csv"))
cases <- list(
  list(id = "sleepstudy_rs", data = "sleepstudy", file = "datasets/sleepstudy.csv",
       formula = "Reaction ~ Days + (Days | Subject)"),
  list(id = "penicillin", data = "penicillin", file = "tests/data/penicillin.csv",
       formula = "diameter ~ 1 + (1 | plate) + (1 | sample)"),
  list(id = "machines_correlated", data = "machines", file = "tests/data/machines.csv",
       formula = "score ~ Machine + (Machine | Worker)")
)

printed <- function(formula, data, reml) {
  m <- lmerTest::lmer(as.formula(formula), data = data, REML = reml,
                      control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
  s <- summary(m)
  co <- s$coefficients
  vc <- as.data.frame(VarCorr(m))
  cf <- cov2cor(as.matrix(vcov(m)))
  list(
    criterion = if (reml) as.numeric(REMLcrit(m)) else deviance(m),
    logLik = as.numeric(logLik(m)), AIC = AIC(m), BIC = BIC(m),
    df_resid = df.residual(m),
    scaled_residuals = unname(quantile(residuals(m, scaled = TRUE))),
    varcorr = lapply(seq_len(nrow(vc)), function(i) list(
      grp = vc$grp[i], var1 = if (is.na(vc$var1[i])) NULL else vc$var1[i],
      var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i],
      vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
    nobs = nobs(m), ngrps = as.list(ngrps(m)),
    coefficients = lapply(rownames(co), function(r) list(
      name = r, estimate = co[r, "Estimate"], se = co[r, "Std. Error"], df = co[r, "df"],
      t = co[r, "t value"], p = co[r, "Pr(>|t|)"])),
    fixef_correlation = unname(cf),
    text = capture.output(print(s))
  )
}

out <- list()
for (case in cases) {
  data <- frames[[case$data]]
  out[[case$id]] <- list(id = case$id, file = case$file, formula = case$formula,
                         REML = printed(case$formula, data, TRUE),
                         ML = printed(case$formula, data, FALSE))
}
meta <- list(lme4 = as.character(packageVersion("lme4")),
             lmerTest = as.character(packageVersion("lmerTest")), R = R.version.string)
writeLines(toJSON(list(meta = meta, cases = out), auto_unbox = TRUE, digits = NA, null = "null",
                  pretty = TRUE), "tests/data/lme4_print.json")

# The summary of an lme4 + lmerTest fit that the JSON references hold, and the writer of a
# reference file; sourced by lme4_nested_crossed.R, lme4_crossed.R and lme4_classic.R.
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(jsonlite)})

reference_fit <- function(formula, data, reml, control = lmerControl()) {
  m <- lmerTest::lmer(as.formula(formula), data = data, REML = reml, control = control)
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

# cases: lists of id, file (the CSV the tests read), data and formula; both REML and ML
write_references <- function(cases, path, control = lmerControl()) {
  out <- list()
  for (case in cases) {
    out[[case$id]] <- list(id = case$id, file = case$file, formula = case$formula,
                           nobs = nrow(case$data),
                           REML = reference_fit(case$formula, case$data, TRUE, control),
                           ML = reference_fit(case$formula, case$data, FALSE, control))
  }
  meta <- list(lme4 = as.character(packageVersion("lme4")),
               lmerTest = as.character(packageVersion("lmerTest")), R = R.version.string)
  writeLines(toJSON(list(meta = meta, cases = out), auto_unbox = TRUE, digits = NA,
                    null = "null", pretty = TRUE), path)
}

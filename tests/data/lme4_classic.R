# Reference fits of lme4's and nlme's classic crossed and nested data sets (Penicillin:
# 24 plates x 6 samples, crossed; Pastes: casks nested in 10 batches; Machines: 6 workers x
# 3 machines), lme4 + lmerTest, written to lme4_classic.json in the layout of
# lme4_nested_crossed.json, the data to penicillin.csv, pastes.csv and machines.csv.
# Run from the repository root: Rscript tests/data/lme4_classic.R
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(jsonlite)})
data(Machines, package = "nlme")
frames <- list(penicillin = Penicillin, pastes = Pastes,
               machines = data.frame(Worker = as.character(Machines$Worker),
                                     Machine = as.character(Machines$Machine),
                                     score = Machines$score))
for (name in names(frames)) {
  write.csv(frames[[name]], file.path("tests/data", paste0(name, ".csv")), row.names = FALSE)
}
cases <- list(
  list(id = "penicillin", data = "penicillin",
       formula = "diameter ~ 1 + (1|plate) + (1|sample)"),
  list(id = "pastes", data = "pastes", formula = "strength ~ 1 + (1|batch/cask)"),
  list(id = "machines_nested", data = "machines",
       formula = "score ~ Machine + (1|Worker) + (1|Worker:Machine)"),
  list(id = "machines_correlated", data = "machines", formula = "score ~ Machine + (Machine|Worker)")
)

fit_one <- function(case, reml) {
  si <- frames[[case$data]]
  m <- lmerTest::lmer(as.formula(case$formula), data = si, REML = reml,
                      control = lmerControl(optimizer = "bobyqa",
                                            optCtrl = list(maxfun = 1e5)))
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
  out[[case$id]] <- list(id = case$id, file = paste0(case$data, ".csv"), formula = case$formula,
                         nobs = nrow(frames[[case$data]]), REML = fit_one(case, TRUE),
                         ML = fit_one(case, FALSE))
}
meta <- list(lme4 = as.character(packageVersion("lme4")),
             lmerTest = as.character(packageVersion("lmerTest")), R = R.version.string)
writeLines(toJSON(list(meta = meta, cases = out), auto_unbox = TRUE, digits = NA, null = "null",
                  pretty = TRUE), "tests/data/lme4_classic.json")

# Reference fits of crossed (and crossed-with-nested) designs, lme4 + lmerTest, written to
# lme4_crossed.json in the layout of lme4_nested_crossed.json.
# Data: tests/data/crossed_small.csv, 24 subjects x 16 items (2x2x2 within design, Latin
# square, 5 rows dropped), subjects nested in 3 sites; simulated by
# benchmarks/_cases.py::subjects_items(seed=11, n_subj=24, n_item=16, dropped=5, sigma=30)
# plus a site effect. Run from the repository root: Rscript tests/data/lme4_crossed.R
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(jsonlite)})

si <- read.csv("tests/data/crossed_small.csv",
               colClasses = c(subj = "character", item = "character", site = "character"))
cases <- list(
  list(id = "si_intercepts", formula = "rt ~ S + P + C + (1|subj) + (1|item)"),
  list(id = "si_correlated", formula = "rt ~ S + P + C + (1 + S|subj) + (1 + S|item)"),
  list(id = "si_independent", formula = "rt ~ S + P + C + (1 + S + P||subj) + (1 + S + P||item)"),
  list(id = "si_correlated4",
       formula = "rt ~ S * P * C + (1 + S + P + C|subj) + (1 + S + P + C|item)"),
  list(id = "si_site", formula = "rt ~ S + P + (1|subj) + (1|item) + (1|site)")
)

fit_one <- function(case, reml) {
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
  out[[case$id]] <- list(id = case$id, file = "crossed_small.csv", formula = case$formula,
                         nobs = nrow(si), REML = fit_one(case, TRUE), ML = fit_one(case, FALSE))
}
meta <- list(lme4 = as.character(packageVersion("lme4")),
             lmerTest = as.character(packageVersion("lmerTest")), R = R.version.string)
writeLines(toJSON(list(meta = meta, cases = out), auto_unbox = TRUE, digits = NA, null = "null",
                  pretty = TRUE), "tests/data/lme4_crossed.json")

# lme4 fits of formulas written with R's spellings (factor(), as.factor(), ordered(),
# relevel(), I(x^2), poly(), log(), TRUE), written to r_spellings.json: fixed-effect names
# and estimates, for bayeslmm's translation of those spellings (tests/test_formula.py).
# Run from the repository root: Rscript tests/data/r_spellings.R
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

ratpup <- read.csv("datasets/rat_pup.csv")
formulas <- c(
  "weight ~ factor(treatment) + as.factor(sex) + I(litsize^2) + (1 | litter)",
  "weight ~ ordered(treatment) + poly(litsize, 2) + (1 | litter)",
  "weight ~ relevel(factor(treatment), ref = 'Low') + log(litsize) + (1 | litter)",
  "weight ~ poly(litsize, 2, raw = TRUE) + (1 + factor(sex) | litter)",
  "log(weight) ~ factor(treatment) * I(litsize^2) + (1 | litter)"
)
out <- lapply(formulas, function(f) {
  fit <- lmer(as.formula(f), data = ratpup, REML = TRUE,
              control = lmerControl(optimizer = "bobyqa"))
  list(formula = f, names = names(fixef(fit)), fixef = unname(fixef(fit)))
})
meta <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")))
writeLines(toJSON(list(meta = meta, cases = out), digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "tests/data/r_spellings.json")

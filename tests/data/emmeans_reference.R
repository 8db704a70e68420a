# Reference marginal means (emmeans' reference grid) of lmer fits, written to
# emmeans_reference.json: estimate, SE, Satterthwaite df (emmeans' lmer.df =
# "satterthwaite", through lmerTest) and 95% CI of every cell of each spec; numeric
# covariates at their means, the other factors averaged with equal weights (emmeans'
# defaults). Also the lme4 fixed-effects predictions (re.form = NA) on brms'
# conditional-effects grid of litsize by treatment (litsize: 100 points over its range;
# sex held at its reference level), for LMM.conditional_effects.
# Run from the repository root: Rscript tests/data/emmeans_reference.R
suppressPackageStartupMessages({
  library(lmerTest)
  library(emmeans)
  library(jsonlite)
})

ratpup <- read.csv("datasets/rat_pup.csv")
ratpup$treatment <- factor(ratpup$treatment)
ratpup$sex <- factor(ratpup$sex)
ratpup$litter <- factor(ratpup$litter)
machines <- read.csv("tests/data/machines.csv")
machines$Worker <- factor(machines$Worker)
machines$Machine <- factor(machines$Machine)

cases <- list(
  list(id = "ratpup_additive", file = "datasets/rat_pup.csv", data = ratpup,
       formula = "weight ~ treatment + sex + litsize + (1 | litter)",
       specs = list("treatment", "sex")),
  list(id = "ratpup_interaction", file = "datasets/rat_pup.csv", data = ratpup,
       formula = "weight ~ treatment * sex + litsize + (1 | litter)",
       specs = list("treatment", "sex", c("treatment", "sex"))),
  list(id = "ratpup_covariate_interaction", file = "datasets/rat_pup.csv", data = ratpup,
       formula = "weight ~ treatment * litsize + sex + (1 | litter)",
       specs = list("treatment", "sex")),
  list(id = "machines", file = "tests/data/machines.csv", data = machines,
       formula = "score ~ Machine + (1 | Worker) + (1 | Worker:Machine)",
       specs = list("Machine"))
)

out <- lapply(cases, function(case) {
  fit <- lmerTest::lmer(as.formula(case$formula), data = case$data, REML = TRUE,
                        control = lmerControl(optimizer = "bobyqa"))
  specs <- lapply(case$specs, function(spec) {
    em <- as.data.frame(emmeans(fit, spec, lmer.df = "satterthwaite"))
    for (f in spec) em[[f]] <- as.character(em[[f]])
    list(by = spec, rows = em[, c(spec, "emmean", "SE", "df", "lower.CL", "upper.CL")])
  })
  list(id = case$id, file = case$file, formula = case$formula,
       fixef = as.list(fixef(fit)), specs = specs)
})

fit <- lmerTest::lmer(weight ~ treatment * litsize + sex + (1 | litter), data = ratpup,
                      REML = TRUE, control = lmerControl(optimizer = "bobyqa"))
grid <- expand.grid(litsize = seq(min(ratpup$litsize), max(ratpup$litsize), length.out = 100),
                    treatment = levels(ratpup$treatment))
grid$sex <- factor(levels(ratpup$sex)[1], levels = levels(ratpup$sex))
grid$estimate <- predict(fit, newdata = grid, re.form = NA)
grid$treatment <- as.character(grid$treatment)
grid$sex <- as.character(grid$sex)
conditional <- list(formula = "weight ~ treatment * litsize + sex + (1 | litter)",
                    file = "datasets/rat_pup.csv", effect = "litsize", by = "treatment",
                    rows = grid)

meta <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
             lmerTest = as.character(packageVersion("lmerTest")),
             emmeans = as.character(packageVersion("emmeans")))
writeLines(toJSON(list(meta = meta, cases = out, conditional = conditional), digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "tests/data/emmeans_reference.json")

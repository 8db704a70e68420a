# Reference likelihood-ratio tests of crossed random intercepts in a Bernoulli GLMM, written
# to lme4_glmer_ranova_verbagg.json: lme4's anova(full, reduced) of glmer fits (ML, Laplace)
# for each random term of r2 ~ Anger + Gender + btype + (1 | id) + (1 | item) dropped, on
# VerbAgg's first 30 people (ids 1-30, all 24 items: 720 rows), the subset that
# tests/test_report_glmm.py and tests/test_cli_analysis.py fit; and the demo's binary
# example (below). Fits are tight (as
# lme4_glmer_ranova.R). Run from the repository root:
#   Rscript tests/data/lme4_glmer_ranova_verbagg.R
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

data(VerbAgg, package = "lme4")
d <- droplevels(VerbAgg[VerbAgg$id %in% as.character(1:30), ])
tight <- glmerControl(optimizer = "nloptwrap", tolPwrss = 1e-12,
                      optCtrl = list(xtol_rel = 1e-12, ftol_abs = 1e-12, ftol_rel = 1e-15,
                                     maxeval = 1e5))
full_formula <- r2 ~ Anger + Gender + btype + (1 | id) + (1 | item)
full <- glmer(full_formula, data = d, family = binomial, control = tight)
neighbours <- list(
  list(component = "(1 | id)", formula = r2 ~ Anger + Gender + btype + (1 | item)),
  list(component = "(1 | item)", formula = r2 ~ Anger + Gender + btype + (1 | id))
)
rows <- lapply(neighbours, function(n) {
  small <- glmer(n$formula, data = d, family = binomial, control = tight)
  a <- anova(full, small)
  lrt <- a$Chisq[2]
  df <- a$Df[2]
  list(component = n$component, formula = deparse(n$formula), Df = df, LRT = lrt,
       p = a$`Pr(>Chisq)`[2],
       p_boundary = 0.5 * pchisq(lrt, df, lower.tail = FALSE) +
         0.5 * (if (df > 1) pchisq(lrt, df - 1, lower.tail = FALSE) else as.numeric(lrt <= 0)),
       AIC_diff = AIC(small) - AIC(full), BIC_diff = BIC(small) - BIC(full),
       logLik_small = as.numeric(logLik(small)))
})
# the demo's binary example (bayeslmm demo, tests/test_cli.py): a random slope of mode
# among the first 60 people, against the random intercept alone (Df 2: the slope's variance
# and its correlation)
d60 <- droplevels(VerbAgg[VerbAgg$id %in% as.character(1:60), ])
demo_full <- glmer(r2 ~ mode + btype + (1 + mode | id), data = d60, family = binomial,
                   control = tight)
demo_small <- glmer(r2 ~ mode + btype + (1 | id), data = d60, family = binomial,
                    control = tight)
a <- anova(demo_full, demo_small)
demo <- list(rows = nrow(d60), formula = "r2 ~ mode + btype + (1 + mode | id)",
             logLik = as.numeric(logLik(demo_full)),
             slope = list(formula = "r2 ~ mode + btype + (1 | id)", Df = a$Df[2],
                          LRT = a$Chisq[2], logLik_small = as.numeric(logLik(demo_small))))
out <- list(lme4_version = as.character(packageVersion("lme4")),
            R_version = R.version.string, rows = nrow(d),
            formula = deparse(full_formula), logLik = as.numeric(logLik(full)),
            fixef = as.list(fixef(full)), neighbours = rows, demo = demo)
write_json(out, "tests/data/lme4_glmer_ranova_verbagg.json", digits = NA, auto_unbox = TRUE,
           pretty = TRUE)

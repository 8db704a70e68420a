# Reference likelihood-ratio tables: lme4's anova() and lmerTest's ranova(), written to
# lme4_anova_ranova.json. Run from the repository root:
#   Rscript tests/data/lme4_anova_ranova.R
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(jsonlite)})

data_sets <- list(
  sleepstudy = read.csv("datasets/sleepstudy.csv", colClasses = c(Subject = "character")),
  classroom = read.csv("datasets/score_parentedu_byclass.csv",
                       colClasses = c(classroom = "character")),
  rat_pup = read.csv("datasets/rat_pup.csv",
                     colClasses = c(sex = "character", treatment = "character"))
)
files <- c(sleepstudy = "sleepstudy.csv", classroom = "score_parentedu_byclass.csv",
           rat_pup = "rat_pup.csv")

for (name in names(data_sets)) assign(name, data_sets[[name]])
# the call names the data set, so that ranova()'s refits (update(), lm()) find it
fit <- function(formula, data, reml = TRUE) {
  call <- substitute(lmerTest::lmer(F, data = D, REML = R),
                     list(F = as.formula(formula), D = as.name(data), R = reml))
  suppressMessages(suppressWarnings(eval(call)))
}

table_rows <- function(tab) {
  lapply(seq_len(nrow(tab)), function(i) {
    row <- as.list(tab[i, , drop = FALSE])
    row <- lapply(row, function(v) if (is.na(v)) NULL else unname(v))
    c(list(name = rownames(tab)[i]), row)
  })
}

anova_cases <- list(
  list(id = "sleepstudy_slope", data = "sleepstudy", refit = TRUE,
       formulas = c("Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days | Subject)")),
  list(id = "sleepstudy_three", data = "sleepstudy", refit = TRUE,
       formulas = c("Reaction ~ Days + (Days | Subject)", "Reaction ~ Days + (1 | Subject)",
                    "Reaction ~ Days + (Days || Subject)")),
  list(id = "sleepstudy_reml", data = "sleepstudy", refit = FALSE,
       formulas = c("Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days | Subject)")),
  list(id = "classroom_slope", data = "classroom", refit = TRUE,
       formulas = c("score ~ edu + (1 | classroom)", "score ~ edu + (1 + edu | classroom)")),
  list(id = "ratpup_fixed", data = "rat_pup", refit = TRUE,
       formulas = c("weight ~ sex + (1 | litter)", "weight ~ sex + litsize + (1 | litter)")),
  list(id = "ratpup_nested", data = "rat_pup", refit = TRUE,
       formulas = c("weight ~ sex + litsize + (1 | litter)",
                    "weight ~ sex + litsize + (1 | treatment/litter)"))
)

ranova_cases <- list(
  list(id = "sleepstudy_slope", data = "sleepstudy", reml = TRUE, reduce = TRUE,
       formula = "Reaction ~ Days + (Days | Subject)"),
  list(id = "sleepstudy_slope_ml", data = "sleepstudy", reml = FALSE, reduce = TRUE,
       formula = "Reaction ~ Days + (Days | Subject)"),
  list(id = "sleepstudy_whole_terms", data = "sleepstudy", reml = TRUE, reduce = FALSE,
       formula = "Reaction ~ Days + (Days | Subject)"),
  list(id = "sleepstudy_uncorrelated", data = "sleepstudy", reml = TRUE, reduce = TRUE,
       formula = "Reaction ~ Days + (Days || Subject)"),
  list(id = "sleepstudy_intercept", data = "sleepstudy", reml = TRUE, reduce = TRUE,
       formula = "Reaction ~ Days + (1 | Subject)"),
  list(id = "classroom_slope", data = "classroom", reml = TRUE, reduce = TRUE,
       formula = "score ~ edu + (1 + edu | classroom)"),
  list(id = "ratpup_nested", data = "rat_pup", reml = TRUE, reduce = TRUE,
       formula = "weight ~ sex + litsize + (1 | treatment/litter)")
)

anova_out <- list()
for (case in anova_cases) {
  models <- lapply(case$formulas, fit, data = case$data)
  names(models) <- paste0("m", seq_along(models))
  tab <- suppressMessages(do.call(anova, c(unname(models)[1], unname(models)[-1],
                                           list(refit = case$refit,
                                                model.names = names(models)))))
  anova_out[[case$id]] <- list(id = case$id, file = files[[case$data]],
                               formulas = case$formulas, refit = case$refit,
                               names = names(models), rows = table_rows(as.data.frame(tab)))
}

ranova_out <- list()
for (case in ranova_cases) {
  m <- fit(case$formula, case$data, reml = case$reml)
  tab <- suppressMessages(ranova(m, reduce.terms = case$reduce))
  ranova_out[[case$id]] <- list(id = case$id, file = files[[case$data]],
                                formula = case$formula, REML = case$reml,
                                reduce_terms = case$reduce,
                                rows = table_rows(as.data.frame(tab)))
}

meta <- list(lme4 = as.character(packageVersion("lme4")),
             lmerTest = as.character(packageVersion("lmerTest")), R = R.version.string)
writeLines(toJSON(list(meta = meta, anova = anova_out, ranova = ranova_out),
                  auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE),
           "tests/data/lme4_anova_ranova.json")

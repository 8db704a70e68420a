# Reference ICCs and R2s of REML fits: performance::icc (adjusted, conditional, by group) and
# performance::r2_nakagawa (marginal, conditional), with insight::get_variance's components
# and the fits' estimates (fixef, VarCorr covariances, sigma) that they were computed from,
# written to performance_icc_r2.json. lme4 fits for the lmer cases; nlme::lme with corAR1
# for the residual-structure case. Run from the repository root:
#   Rscript tests/data/performance_icc_r2.R
suppressPackageStartupMessages({
  library(lme4); library(nlme); library(performance); library(insight); library(jsonlite)
})

sleep <- read.csv("datasets/sleepstudy.csv", colClasses = c(Subject = "character"))
rat <- read.csv("datasets/rat_pup.csv")
rat$litter <- as.character(rat$litter)
penicillin <- read.csv("tests/data/penicillin.csv", colClasses = "character")
penicillin$diameter <- as.numeric(penicillin$diameter)
pastes <- read.csv("tests/data/pastes.csv", colClasses = "character")
pastes$strength <- as.numeric(pastes$strength)
si <- read.csv("tests/data/crossed_small.csv",
               colClasses = c(subj = "character", item = "character", site = "character"))

cases <- list(
  list(id = "sleepstudy_ri", file = "sleepstudy.csv", data = sleep,
       formula = "Reaction ~ Days + (1|Subject)"),
  list(id = "sleepstudy_rs", file = "sleepstudy.csv", data = sleep,
       formula = "Reaction ~ Days + (Days|Subject)"),
  list(id = "sleepstudy_uncorrelated", file = "sleepstudy.csv", data = sleep,
       formula = "Reaction ~ Days + (1|Subject) + (0 + Days|Subject)"),
  list(id = "penicillin_crossed", file = "penicillin.csv", data = penicillin,
       formula = "diameter ~ 1 + (1|plate) + (1|sample)"),
  list(id = "pastes_nested", file = "pastes.csv", data = pastes,
       formula = "strength ~ 1 + (1|batch/cask)"),
  list(id = "ratpup_nested", file = "rat_pup.csv", data = rat,
       formula = "weight ~ sex + litsize + (1|treatment/litter)"),
  list(id = "crossed_slopes", file = "crossed_small.csv", data = si,
       formula = "rt ~ S + P + C + (1 + S|subj) + (1 + S|item)")
)

components <- function(m) {
  v <- insight::get_variance(m)
  list(var_fixed = v$var.fixed, var_random = v$var.random, var_residual = v$var.residual,
       var_intercept = as.list(v$var.intercept))
}

indices <- function(m) {
  icc <- performance::icc(m)
  by <- suppressWarnings(performance::icc(m, by_group = TRUE))
  r2 <- performance::r2_nakagawa(m)
  list(icc_adjusted = icc$ICC_adjusted, icc_conditional = icc$ICC_conditional,
       icc_by_group = as.list(setNames(by$ICC, by$Group)),
       r2_marginal = unname(r2$R2_marginal), r2_conditional = unname(r2$R2_conditional))
}

out <- list()
for (case in cases) {
  m <- lmer(as.formula(case$formula), data = case$data, REML = TRUE,
            control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
  vc <- VarCorr(m)
  out[[case$id]] <- c(
    list(id = case$id, file = case$file, formula = case$formula, singular = isSingular(m),
         fixef = as.list(fixef(m)), sigma = sigma(m),
         covariances = lapply(names(vc), function(g) list(
           grp = g, terms = I(rownames(vc[[g]])), matrix = unname(as.matrix(vc[[g]]))))),
    components(m), indices(m))
}

# nlme::lme with AR(1) residuals within subjects: the residual variance is sigma^2 (the
# marginal variance of one residual), as insight takes it. insight 0.19.0 judges every lme
# fit singular (its check reads diag() of nlme's VarCorr list) and then leaves var.random
# out, so performance::icc and r2_nakagawa return NA: var.random is computed here by
# insight's own function for it (.compute_variance_random, which get_variance calls for a
# non-singular fit), and the indices by performance's formulas (printed in the functions).
ar1 <- lme(Reaction ~ Days, random = ~ 1 | Subject, data = sleep,
           correlation = corAR1(form = ~ Days | Subject), method = "REML")
v <- suppressWarnings(insight::get_variance(ar1))
vals <- insight:::.get_variance_information(ar1, faminfo = insight::model_info(ar1),
                                            name_fun = "icc", verbose = FALSE)
v$var.random <- insight:::.compute_variance_random("Subject", x = ar1, vals = vals)
total <- v$var.fixed + v$var.random + v$var.residual
out[["sleepstudy_ri_ar1"]] <- list(
  id = "sleepstudy_ri_ar1", file = "sleepstudy.csv", formula = "Reaction ~ Days + (1|Subject)",
  residual = "AR1(time='Days', group='Subject')", singular = FALSE,
  fixef = as.list(fixef(ar1)), sigma = ar1$sigma,
  phi = unname(coef(ar1$modelStruct$corStruct, unconstrained = FALSE)),
  logLik = as.numeric(logLik(ar1)),
  var_fixed = v$var.fixed, var_random = v$var.random, var_residual = v$var.residual,
  var_intercept = as.list(v$var.intercept),
  icc_adjusted = v$var.random / (v$var.random + v$var.residual),
  icc_conditional = v$var.random / total,
  icc_by_group = as.list(v$var.intercept / (v$var.random + v$var.residual)),
  r2_marginal = v$var.fixed / total, r2_conditional = (v$var.fixed + v$var.random) / total)

meta <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
             nlme = as.character(packageVersion("nlme")),
             performance = as.character(packageVersion("performance")),
             insight = as.character(packageVersion("insight")))
writeLines(toJSON(list(meta = meta, cases = out), auto_unbox = TRUE, digits = NA,
                  null = "null", pretty = TRUE), "tests/data/performance_icc_r2.json")

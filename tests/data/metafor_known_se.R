# Reference random-effects meta-analyses by metafor's rma() (REML and ML), written to
# metafor_known_se.json, with the data exported beside it (tests/data/eight_schools.csv,
# tests/data/dat_bcg.csv, tests/data/konstantopoulos2011.csv: rma.mv with two nested levels).
# Known standard errors sei; tau^2 is the random intercept's
# variance, tested against bl.lmer(..., se="sei"). Tight convergence (threshold 1e-12).
# logLik: metafor's REML log-likelihood by default adds + 1/2 log|X'X| (control REMLf);
# REMLf = FALSE leaves it out, as lme4's REML criterion does, so that is what is stored.
# Run from the repository root: Rscript tests/data/metafor_known_se.R
suppressPackageStartupMessages({
  library(metafor)
  library(jsonlite)
})

schools <- data.frame(school = c("A", "B", "C", "D", "E", "F", "G", "H"),
                      y = c(28, 8, -3, 7, -1, 1, 18, 12),
                      sigma = c(15, 10, 16, 11, 9, 11, 10, 18))
write.csv(schools, "tests/data/eight_schools.csv", row.names = FALSE)

dat.bcg <- metadat::dat.bcg  # metafor loads metadat, which holds the data
bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
bcg <- data.frame(trial = bcg$trial, author = bcg$author, year = bcg$year,
                  ablat = bcg$ablat, yi = as.numeric(bcg$yi), sei = sqrt(as.numeric(bcg$vi)))
write.csv(bcg, "tests/data/dat_bcg.csv", row.names = FALSE)

fit_case <- function(id, yi, sei, mods, method, formula) {
  ctrl <- list(threshold = 1e-12, maxiter = 10000, REMLf = FALSE)
  fit <- if (is.null(mods)) rma(yi, sei = sei, method = method, control = ctrl)
         else rma(yi, sei = sei, mods = mods, method = method, control = ctrl)
  list(id = id, method = method, formula = formula, tau2 = fit$tau2,
       beta = as.numeric(fit$beta), se = as.numeric(fit$se),
       logLik = as.numeric(logLik(fit)), k = fit$k)
}

# two nested levels (Konstantopoulos 2011: schools within districts), rma.mv
konst <- metadat::dat.konstantopoulos2011
konst <- data.frame(district = konst$district, school = konst$school, study = konst$study,
                    year = konst$year, yi = konst$yi, sei = sqrt(konst$vi))
write.csv(konst, "tests/data/konstantopoulos2011.csv", row.names = FALSE)

fit_mv <- function(method) {
  ctrl <- list(REMLf = FALSE, rel.tol = 1e-12, iter.max = 10000, eval.max = 10000)
  fit <- rma.mv(yi, V = sei^2, random = ~ 1 | district / study, data = konst,
                method = method, control = ctrl)
  list(id = "konstantopoulos", method = method,
       formula = "yi ~ 1 + (1 | district) + (1 | study)", tau2 = fit$sigma2,
       beta = as.numeric(fit$beta), se = as.numeric(fit$se),
       logLik = as.numeric(logLik(fit)), k = fit$k)
}

cases <- list()
for (method in c("REML", "ML")) {
  cases[[length(cases) + 1]] <- fit_case("schools", schools$y, schools$sigma, NULL, method,
                                         "y ~ 1 + (1 | school)")
  cases[[length(cases) + 1]] <- fit_case("bcg", bcg$yi, bcg$sei, NULL, method,
                                         "yi ~ 1 + (1 | trial)")
  cases[[length(cases) + 1]] <- fit_case("bcg_ablat", bcg$yi, bcg$sei, ~ bcg$ablat, method,
                                         "yi ~ ablat + (1 | trial)")
  cases[[length(cases) + 1]] <- fit_mv(method)
}
write(toJSON(list(metafor = as.character(packageVersion("metafor")), cases = cases),
             auto_unbox = TRUE, digits = NA, pretty = TRUE),
      "tests/data/metafor_known_se.json")

# Near-exact fits (tests/test_wrong_answers.py): a response 2 + 3 x + a group shift, exactly
# (y_exact), with noise of SD 1e-3 (y_near), and constant within every group (y_const).
# lme4 1.1-31 fits of y_near are the reference; its fits of the exact responses stop near
# sigma = 0 (recorded, with their warnings, to document what bayeslmm refuses instead).
# Run from the repository root: Rscript tests/data/lme4_near_exact.R
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
set.seed(5)
G <- 12; m <- 5
d <- data.frame(g = sprintf("g%02d", rep(seq_len(G), each = m)), x = round(runif(G * m, 0, 10), 3))
shift <- round(rnorm(G, 0, 2), 3)
gi <- as.integer(factor(d$g))
d$y_exact <- 2 + 3 * d$x + shift[gi]
d$y_near <- round(d$y_exact + rnorm(G * m, 0, 1e-3), 7)
d$y_const <- 7 + shift[gi]
write.csv(d, "tests/data/near_exact.csv", row.names = FALSE)
fit <- function(y, reml) {
  w <- character(0)
  m <- withCallingHandlers(lmer(as.formula(paste(y, "~ x + (1 | g)")), data = d, REML = reml),
                           warning = function(x) {w <<- c(w, conditionMessage(x));
                                                  invokeRestart("muffleWarning")})
  list(fixef = as.list(fixef(m)), sigma = sigma(m),
       sd_g = attr(VarCorr(m)$g, "stddev")[[1]], logLik = as.numeric(logLik(m)),
       warnings = c(w, m@optinfo$conv$lme4$messages))
}
out <- list()
for (y in c("y_near", "y_exact", "y_const")) for (reml in c(TRUE, FALSE))
  out[[paste0(y, if (reml) "_REML" else "_ML")]] <- fit(y, reml)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           "tests/data/lme4_near_exact.json")

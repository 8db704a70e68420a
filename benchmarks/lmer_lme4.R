# Times lme4::lmer on the cases bench_lmer_lme4.py writes, and reports its criterion.
# Rscript benchmarks/lmer_lme4.R CASES.json OUT.json  (called by bench_lmer_lme4.py)
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
cases <- fromJSON(args[1], simplifyVector = FALSE)
out <- list()
for (case in cases) {
  data <- read.csv(case$csv, colClasses = unlist(case$classes))
  times <- c()
  for (r in seq_len(case$repeats)) {
    t <- system.time(m <- lmer(as.formula(case$formula), data = data, REML = case$reml))
    times <- c(times, t[["elapsed"]])
  }
  crit <- if (case$reml) as.numeric(REMLcrit(m)) else deviance(m)
  out[[case$id]] <- list(seconds = min(times), criterion = crit, singular = isSingular(m),
                         evaluations = m@optinfo$feval)
}
out$meta <- list(lme4 = as.character(packageVersion("lme4")), R = R.version.string)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), args[2])

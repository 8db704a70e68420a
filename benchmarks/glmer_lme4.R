# Times lme4::glmer (its defaults) on the cases bench_glmer_lme4.py writes.
# Rscript benchmarks/glmer_lme4.R CASES.json OUT.json  (called by bench_glmer_lme4.py)
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
cases <- fromJSON(args[1], simplifyVector = FALSE)
out <- list()
for (case in cases) {
  data <- read.csv(case$csv, colClasses = unlist(case$classes))
  fam <- get(case$family)()
  times <- c()
  for (r in seq_len(case$repeats)) {
    t <- system.time(m <- glmer(as.formula(case$formula), data = data, family = fam,
                                nAGQ = case$nAGQ))
    times <- c(times, t[["elapsed"]])
  }
  out[[case$id]] <- list(seconds = min(times), deviance = -2 * as.numeric(logLik(m)),
                         singular = isSingular(m), evaluations = m@optinfo$feval)
}
out$meta <- list(lme4 = as.character(packageVersion("lme4")), R = R.version.string)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), args[2])

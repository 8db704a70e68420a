# Exports lme4's InstEval (73,421 ratings of 1,128 instructors by 2,972 students in 14
# departments) for the crossed-design benchmarks: Rscript benchmarks/data/export_insteval.R
library(lme4)
out <- gzfile("benchmarks/data/insteval.csv.gz", "w")
write.csv(InstEval, out, row.names = FALSE)
close(out)
cat("lme4", as.character(packageVersion("lme4")), "InstEval:", nrow(InstEval), "rows\n")

# Reference fits for nested and crossed random effects (lme4 + lmerTest), written to
# lme4_nested_crossed.json in the layout of reference/lme4_reference.json.
# Run from the repository root: Rscript tests/data/lme4_nested_crossed.R
source("tests/data/lme4_summary.R")

rat <- read.csv("datasets/rat_pup.csv")
sleep <- read.csv("datasets/sleepstudy.csv", colClasses = c(Subject = "character"))
cases <- list(
  list(id = "ratpup_nested", file = "rat_pup.csv", data = rat,
       formula = "weight ~ sex + litsize + (1|treatment/litter)"),
  list(id = "ratpup_crossed", file = "rat_pup.csv", data = rat,
       formula = "weight ~ sex + (1|litter) + (1|litsize)"),
  list(id = "sleepstudy_crossed", file = "sleepstudy.csv", data = sleep,
       formula = "Reaction ~ Days + (1|Subject) + (1|Days)"),
  list(id = "sleepstudy_uncorrelated", file = "sleepstudy.csv", data = sleep,
       formula = "Reaction ~ Days + (1|Subject) + (0 + Days|Subject)")
)

write_references(cases, "tests/data/lme4_nested_crossed.json")

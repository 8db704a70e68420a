# Reference fits of lme4's and nlme's classic crossed and nested data sets (Penicillin:
# 24 plates x 6 samples, crossed; Pastes: casks nested in 10 batches; Machines: 6 workers x
# 3 machines), lme4 + lmerTest, written to lme4_classic.json in the layout of
# lme4_nested_crossed.json, the data to penicillin.csv, pastes.csv and machines.csv.
# Run from the repository root: Rscript tests/data/lme4_classic.R
source("tests/data/lme4_summary.R")
data(Machines, package = "nlme")
frames <- list(penicillin = Penicillin, pastes = Pastes,
               machines = data.frame(Worker = as.character(Machines$Worker),
                                     Machine = as.character(Machines$Machine),
                                     score = Machines$score))
for (name in names(frames)) {
  write.csv(frames[[name]], file.path("tests/data", paste0(name, ".csv")), row.names = FALSE)
}
cases <- list(
  list(id = "penicillin", data = "penicillin",
       formula = "diameter ~ 1 + (1|plate) + (1|sample)"),
  list(id = "pastes", data = "pastes", formula = "strength ~ 1 + (1|batch/cask)"),
  list(id = "machines_nested", data = "machines",
       formula = "score ~ Machine + (1|Worker) + (1|Worker:Machine)"),
  list(id = "machines_correlated", data = "machines", formula = "score ~ Machine + (Machine|Worker)")
)
cases <- lapply(cases, function(case) modifyList(case, list(file = paste0(case$data, ".csv"),
                                                            data = frames[[case$data]])))

write_references(cases, "tests/data/lme4_classic.json",
                 control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))

# Reference fits of crossed (and crossed-with-nested) designs, lme4 + lmerTest, written to
# lme4_crossed.json in the layout of lme4_nested_crossed.json.
# Data: tests/data/crossed_small.csv, 24 subjects x 16 items (2x2x2 within design, Latin
# square, 5 rows dropped), subjects nested in 3 sites; simulated by
# benchmarks/_cases.py::subjects_items(seed=11, n_subj=24, n_item=16, dropped=5, sigma=30)
# plus a site effect. Run from the repository root: Rscript tests/data/lme4_crossed.R
source("tests/data/lme4_summary.R")

si <- read.csv("tests/data/crossed_small.csv",
               colClasses = c(subj = "character", item = "character", site = "character"))
cases <- list(
  list(id = "si_intercepts", formula = "rt ~ S + P + C + (1|subj) + (1|item)"),
  list(id = "si_correlated", formula = "rt ~ S + P + C + (1 + S|subj) + (1 + S|item)"),
  list(id = "si_independent", formula = "rt ~ S + P + C + (1 + S + P||subj) + (1 + S + P||item)"),
  list(id = "si_correlated4",
       formula = "rt ~ S * P * C + (1 + S + P + C|subj) + (1 + S + P + C|item)"),
  list(id = "si_site", formula = "rt ~ S + P + (1|subj) + (1|item) + (1|site)")
)
cases <- lapply(cases, function(case) c(case, list(file = "crossed_small.csv", data = si)))

write_references(cases, "tests/data/lme4_crossed.json",
                 control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))

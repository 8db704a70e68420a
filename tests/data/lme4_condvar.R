# Conditional modes and conditional SDs (lme4's condVar) of REML fits, for
# tests/test_factorisation.py: one factor (correlated terms), crossed, nested, crossed with
# correlated terms. lme4 1.1-31 on R 4.2:  Rscript tests/data/lme4_condvar.R
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
here <- "tests/data"
read <- function(f) suppressWarnings(read.csv(file.path(here, f), colClasses = c(subj = "character",
  item = "character", plate = "character", sample = "character", batch = "character",
  cask = "character")))
cases <- list(
  sleepstudy = list(formula = "Reaction ~ Days + (Days | Subject)", data = "sleepstudy"),
  penicillin = list(formula = "diameter ~ 1 + (1 | plate) + (1 | sample)", data = "penicillin.csv"),
  pastes = list(formula = "strength ~ 1 + (1 | batch/cask)", data = "pastes.csv"),
  si_correlated = list(formula = "rt ~ S + P + C + (1 + S | subj) + (1 + S | item)",
                       data = "crossed_small.csv")
)
out <- list()
for (name in names(cases)) {
  case <- cases[[name]]
  data <- if (case$data == "sleepstudy") lme4::sleepstudy else read(case$data)
  if (case$data == "sleepstudy") data$Subject <- as.character(data$Subject)
  fit <- lmer(as.formula(case$formula), data = data, REML = TRUE,
              control = lmerControl(optimizer = "bobyqa",
                                    optCtrl = list(rhobeg = 2e-4, rhoend = 2e-11)))
  re <- ranef(fit, condVar = TRUE)
  groups <- list()
  for (g in names(re)) {
    frame <- re[[g]]
    pv <- attr(frame, "postVar")
    sd <- t(apply(pv, 3, function(m) sqrt(diag(as.matrix(m)))))
    if (ncol(frame) == 1) sd <- matrix(sd, ncol = 1)
    groups[[g]] <- list(levels = rownames(frame), terms = colnames(frame),
                        mode = unname(as.matrix(frame)), cond_sd = unname(sd))
  }
  out[[name]] <- list(formula = case$formula, data = case$data,
                      reml_criterion = unname(REMLcrit(fit)), groups = groups)
}
write(toJSON(list(lme4 = as.character(packageVersion("lme4")), cases = out), digits = NA,
             auto_unbox = TRUE, pretty = TRUE), file.path(here, "lme4_condvar.json"))

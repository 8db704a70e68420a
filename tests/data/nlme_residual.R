# Reference fits with residual correlation structures (nlme 3.1-162: lme and gls with
# corAR1 / corCompSymm), written to nlme_residual.json; simulated data sets to
# residual_sim_ar1.csv and residual_sim_nested.csv.
# Run from the repository root: Rscript tests/data/nlme_residual.R
#
# nlme's optimisers do not always reach the optimum (for some of these models nlminb,
# optim's BFGS and Nelder-Mead stop at different points), so every case is fitted by
# each of them and by a profile over the correlation parameter (nlme fits at a fixed
# parameter, corAR1(value, fixed = TRUE), maximised by optimize()); the fit with the
# highest log-likelihood is the reference, and the spread of the log-likelihoods is kept.
suppressPackageStartupMessages({library(nlme); library(jsonlite)})

out_dir <- "tests/data"
sleep <- read.csv("datasets/sleepstudy.csv", colClasses = c(Subject = "character"))
rat <- read.csv("datasets/rat_pup.csv")
rat$litter <- as.character(rat$litter)
class_data <- read.csv("datasets/score_parentedu_byclass.csv")
# sleepstudy with Days 3 and 4 missing for every other subject: gaps in time
gaps <- sleep[!(sleep$Days %in% c(3, 4) & as.integer(sleep$Subject) %% 2 == 0), ]

# AR(1) with gaps and shuffled rows: 40 groups, up to 12 occasions, random intercept and
# slope of x, a between-group treatment, phi = -0.4
set.seed(17)
G <- 40
sim <- do.call(rbind, lapply(seq_len(G), function(g) {
  times <- sort(sample(0:11, sample(5:12, 1)))
  data.frame(g = sprintf("g%02d", g), time = times, x = rnorm(length(times)),
             trt = ifelse(g %% 2 == 0, "B", "A"))
}))
u0 <- rnorm(G, 0, 1.5); u1 <- rnorm(G, 0, 0.7)
gi <- as.integer(factor(sim$g))
e <- numeric(nrow(sim))
for (g in unique(sim$g)) {
  rows <- which(sim$g == g); t <- sim$time[rows]
  R <- (-0.4)^abs(outer(t, t, "-"))
  e[rows] <- drop(t(chol(R)) %*% rnorm(length(rows)))
}
sim$y <- 2 + 0.8 * sim$x + 0.5 * (sim$trt == "B") + u0[gi] + u1[gi] * sim$x + 1.2 * e
sim$y <- round(sim$y, 6); sim$x <- round(sim$x, 6)
sim <- sim[sample(nrow(sim)), ]
write.csv(sim, file.path(out_dir, "residual_sim_ar1.csv"), row.names = FALSE)

# Three levels: classes in schools, a few occasions per pupil... here per class: AR(1)
# over time within class (for AR1) and compound symmetry within class (rho < 0)
set.seed(71)
nest <- do.call(rbind, lapply(1:15, function(s) do.call(rbind, lapply(1:3, function(k) {
  m <- sample(4:8, 1)
  data.frame(school = sprintf("s%02d", s), class = sprintf("c%d", k), time = seq_len(m) - 1,
             x = rnorm(m))
}))))
si <- as.integer(factor(nest$school)); ci <- as.integer(factor(paste(nest$school, nest$class)))
us <- rnorm(15, 0, 1); uc <- rnorm(max(ci), 0, 0.6)
e_ar <- numeric(nrow(nest)); e_cs <- numeric(nrow(nest))
for (c in unique(ci)) {
  rows <- which(ci == c); m <- length(rows)
  R <- 0.5^abs(outer(seq_len(m), seq_len(m), "-"))
  e_ar[rows] <- drop(t(chol(R)) %*% rnorm(m))
  R <- (1 + 0.1) * diag(m) - 0.1
  e_cs[rows] <- drop(t(chol(R)) %*% rnorm(m))
}
nest$y_ar <- round(1 + 0.5 * nest$x + us[si] + uc[ci] + 0.8 * e_ar, 6)
nest$y_cs <- round(1 + 0.5 * nest$x + us[si] + 0.8 * e_cs, 6)
nest$x <- round(nest$x, 6)
write.csv(nest, file.path(out_dir, "residual_sim_nested.csv"), row.names = FALSE)

# nlme's Orthodont: ages 8, 10, 12, 14, evenly spaced with gaps of 2, so AR(1) over age
# correlates neighbours by phi^2 and the likelihood is even in phi (flat at phi = 0, where
# a search from independent residuals starts): its sign is not identified
ortho <- as.data.frame(nlme::Orthodont)
ortho$Subject <- as.character(ortho$Subject)
ortho$Sex <- as.character(ortho$Sex)
write.csv(ortho, file.path(out_dir, "orthodont.csv"), row.names = FALSE)

cases <- list(
  # the tutorial's model: its optimum is singular (the random intercept and slope correlate
  # +1), which nlme's log-Cholesky parametrisation cannot reach; nlme's optimisers stop at
  # different points below it
  list(id = "sleep_rs_ar1", data = "sleepstudy", structure = "AR1", time = "Days",
       group = "Subject", fixed = Reaction ~ Days, random = ~ Days | Subject,
       formula = "Reaction ~ Days + (Days | Subject)", cor = corAR1(form = ~ Days | Subject),
       singular = TRUE),
  list(id = "sleep_ri_ar1", data = "sleepstudy", structure = "AR1", time = "Days",
       group = "Subject", fixed = Reaction ~ Days, random = ~ 1 | Subject,
       formula = "Reaction ~ Days + (1 | Subject)", cor = corAR1(form = ~ Days | Subject)),
  list(id = "sleep_gls_ar1", data = "sleepstudy", structure = "AR1", time = "Days",
       group = "Subject", fixed = Reaction ~ Days, random = NULL,
       formula = "Reaction ~ Days", cor = corAR1(form = ~ Days | Subject)),
  list(id = "sleep_gaps_time", data = "sleepstudy_gaps", structure = "AR1", time = "Days",
       group = "Subject", fixed = Reaction ~ Days, random = NULL,
       formula = "Reaction ~ Days", cor = corAR1(form = ~ Days | Subject)),
  list(id = "sleep_gaps_order", data = "sleepstudy_gaps", structure = "AR1", time = NULL,
       group = "Subject", fixed = Reaction ~ Days, random = ~ 1 | Subject,
       formula = "Reaction ~ Days + (1 | Subject)", cor = corAR1(form = ~ 1 | Subject)),
  list(id = "sim_ar1_slope", data = "residual_sim_ar1", structure = "AR1", time = "time",
       group = "g", fixed = y ~ x + trt, random = ~ x | g,
       formula = "y ~ x + trt + (x | g)", cor = corAR1(form = ~ time | g)),
  list(id = "sim_ar1_nested", data = "residual_sim_nested", structure = "AR1", time = "time",
       group = c("school", "class"), fixed = y_ar ~ x, random = ~ 1 | school / class,
       formula = "y_ar ~ x + (1 | school/class)", cor = corAR1(form = ~ time | school / class)),
  list(id = "ratpup_gls_cs", data = "rat_pup", structure = "CS", time = NULL,
       group = "litter", fixed = weight ~ treatment + sex + litsize, random = NULL,
       formula = "weight ~ treatment + sex + litsize", cor = corCompSymm(form = ~ 1 | litter)),
  list(id = "classroom_gls_cs", data = "score_parentedu_byclass", structure = "CS",
       time = NULL, group = "classroom", fixed = score ~ edu, random = NULL,
       formula = "score ~ edu", cor = corCompSymm(form = ~ 1 | classroom)),
  list(id = "sleep_slope_cs", data = "sleepstudy", structure = "CS", time = NULL,
       group = "Subject", fixed = Reaction ~ Days, random = ~ Days - 1 | Subject,
       formula = "Reaction ~ Days + (0 + Days | Subject)", cor = corCompSymm(form = ~ 1 | Subject)),
  list(id = "sim_cs_nested", data = "residual_sim_nested", structure = "CS", time = NULL,
       group = c("school", "class"), fixed = y_cs ~ x, random = ~ 1 | school,
       formula = "y_cs ~ x + (1 | school)", cor = corCompSymm(form = ~ 1 | school / class)),
  list(id = "orthodont_ri_ar1", data = "orthodont", structure = "AR1", time = "age",
       group = "Subject", fixed = distance ~ age, random = ~ 1 | Subject,
       formula = "distance ~ age + (1 | Subject)", cor = corAR1(form = ~ age | Subject),
       even = TRUE),
  list(id = "orthodont_gls_ar1", data = "orthodont", structure = "AR1", time = "age",
       group = "Subject", fixed = distance ~ age + Sex, random = NULL,
       formula = "distance ~ age + Sex", cor = corAR1(form = ~ age | Subject), even = TRUE)
)
frames <- list(sleepstudy = sleep, sleepstudy_gaps = gaps, rat_pup = rat,
               score_parentedu_byclass = class_data, residual_sim_ar1 = sim,
               residual_sim_nested = nest, orthodont = ortho)

with_value <- function(cor, value, fixed) {
  f <- formula(cor)
  if (inherits(cor, "corAR1")) corAR1(value, form = f, fixed = fixed)
  else corCompSymm(value, form = f, fixed = fixed)
}

fit_with <- function(case, data, method, cor, opt) {
  if (is.null(case$random)) {
    ctl <- glsControl(maxIter = 500, msMaxIter = 500, opt = opt)
    gls(case$fixed, data = data, correlation = cor, method = method, control = ctl)
  } else {
    ctl <- lmeControl(maxIter = 500, msMaxIter = 500, msMaxEval = 2000, opt = opt)
    lme(case$fixed, random = case$random, data = data, correlation = cor, method = method,
        control = ctl)
  }
}

best_fit <- function(case, data, method) {
  fits <- list()
  for (opt in c("nlminb", "optim")) {
    m <- try(fit_with(case, data, method, case$cor, opt), silent = TRUE)
    if (!inherits(m, "try-error")) fits[[length(fits) + 1]] <- m
  }
  if (!is.null(case$random)) {  # also Nelder-Mead (it goes furthest on the singular case)
    ctl <- lmeControl(maxIter = 500, msMaxIter = 5000, opt = "optim",
                      optimMethod = "Nelder-Mead")
    m <- try(lme(case$fixed, random = case$random, data = data, correlation = case$cor,
                 method = method, control = ctl), silent = TRUE)
    if (!inherits(m, "try-error")) fits[[length(fits) + 1]] <- m
  }
  # profile over the correlation parameter, nlme fitting the rest
  lower <- if (case$structure == "AR1") -0.99 else -0.99 / (max(table(interaction(
    data[case$group], drop = TRUE))) - 1)
  prof <- function(v) {
    m <- try(fit_with(case, data, method, with_value(case$cor, v, TRUE), "nlminb"),
             silent = TRUE)
    if (inherits(m, "try-error")) -Inf else as.numeric(logLik(m))
  }
  o <- optimize(prof, c(lower, 0.99), maximum = TRUE, tol = 1e-10)
  m <- try(fit_with(case, data, method, with_value(case$cor, o$maximum, TRUE), "nlminb"),
           silent = TRUE)
  if (!inherits(m, "try-error")) fits[[length(fits) + 1]] <- m
  ll <- sapply(fits, function(f) as.numeric(logLik(f)))
  list(fit = fits[[which.max(ll)]], spread = max(ll) - min(ll), n = length(fits))
}

describe <- function(case, data, method) {
  b <- best_fit(case, data, method)
  m <- b$fit
  cs <- m$modelStruct$corStruct
  par <- as.numeric(coef(cs, unconstrained = FALSE))
  if (length(par) == 0) par <- as.numeric(attr(cs, "fixed") %||% NA)
  par <- if (inherits(cs, "corAR1")) as.numeric(coef(cs, FALSE, allCoef = TRUE))
         else as.numeric(coef(cs, FALSE, allCoef = TRUE))
  tt <- summary(m)$tTable
  out <- list(
    fixef = as.list(setNames(tt[, "Value"], rownames(tt))),
    se = as.list(setNames(tt[, "Std.Error"], rownames(tt))),
    sigma = m$sigma, parameter = par, logLik = as.numeric(logLik(m)),
    optimiser_spread = b$spread, fits_compared = b$n
  )
  if (!is.null(case$random)) {
    vc <- VarCorr(m)
    sds <- suppressWarnings(as.numeric(vc[, "StdDev"]))
    out$re_sd <- sds[!is.na(sds)]
    out$re_sd <- out$re_sd[-length(out$re_sd)]  # the residual SD is sigma
    if ("Corr" %in% colnames(vc)) out$re_cor <- suppressWarnings(as.numeric(vc[2, "Corr"]))
  }
  out
}
`%||%` <- function(a, b) if (is.null(a)) b else a

result <- list()
for (case in cases) {
  data <- frames[[case$data]]
  entry <- list(formula = case$formula, data = case$data, structure = case$structure,
                time = case$time, group = case$group, singular = isTRUE(case$singular),
                even_in_parameter = isTRUE(case$even))
  for (method in c("REML", "ML")) entry[[method]] <- describe(case, data, method)
  result[[case$id]] <- entry
}
writeLines(toJSON(result, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
           file.path(out_dir, "nlme_residual.json"))

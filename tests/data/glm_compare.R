# Reference numbers of the GLMM comparison (bayeslmm/comparison/glmm.py), written to
# glm_compare.json: R's glm() for every GLM row (complete pooling, group dummies, the
# aggregated GLM per factor), R's per-level glm() of the two-stage model and of the
# no-pooling estimates, and lme4's conditional SDs (ranef(condVar = TRUE)).
# Every glm() is converged to a relative deviance change of 1e-14 (glm.control), so that
# the numbers are the maximum-likelihood estimates, not IRLS's stopping point.
# Data: tests/data/cbpp.csv, grouseticks.csv, verbagg.csv (exported by lme4_glmer.R from
# lme4's data sets) and separation_sim.csv (made by numpy, seed 27: 12 groups of 20 rows,
# y ~ Bernoulli(logit^-1(-0.3 + x + b_g)), then group g03 set to all 0 and g07 to all 1;
# ysep = (x > 0.3), completely separated by x).
# Run from the repository root: Rscript tests/data/glm_compare.R
suppressPackageStartupMessages({
  library(lme4)
  library(MASS)
  library(jsonlite)
})
ctl <- glm.control(epsilon = 1e-14, maxit = 200)
tight <- glmerControl(optimizer = "nloptwrap", tolPwrss = 1e-12,
                      optCtrl = list(xtol_rel = 1e-12, ftol_abs = 1e-12, ftol_rel = 1e-15,
                                     maxeval = 1e5))
coefs <- function(fit) {
  s <- summary(fit, dispersion = 1)$coefficients  # binomial, Poisson, NB: no dispersion
  list(names = rownames(s), estimate = unname(s[, 1]), se = unname(s[, 2]),
       converged = fit$converged)
}
# per level of g: glm of f on the level's rows (estimate and SE of every coefficient; NA
# where R finds the column aliased)
per_level <- function(f, data, g, family, offset = NULL) {
  mf <- model.frame(f, data)
  Y <- model.response(mf)
  X <- model.matrix(f, data)
  off <- model.offset(mf)
  if (is.null(off)) off <- rep(0, nrow(data))
  if (!is.null(offset)) off <- off + offset
  out <- list()
  for (lv in sort(unique(as.character(data[[g]])))) {
    rows <- as.character(data[[g]]) == lv
    Yl <- if (is.matrix(Y)) Y[rows, , drop = FALSE] else Y[rows]
    Xl <- X[rows, , drop = FALSE]
    offl <- off[rows]
    fit <- tryCatch(suppressWarnings(glm(Yl ~ 0 + Xl, family = family, offset = offl,
                                         control = ctl)),
                    error = function(e) NULL)  # IRLS running off to infinity (separation)
    if (is.null(fit)) {
      out[[lv]] <- list(names = colnames(X), estimate = rep(NA_real_, ncol(X)),
                        se = rep(NA_real_, ncol(X)), converged = FALSE, n = sum(rows))
      next
    }
    cf <- coef(fit)
    names(cf) <- colnames(X)
    se <- rep(NA_real_, length(cf)); names(se) <- names(cf)
    s <- summary(fit, dispersion = 1)$coefficients
    se[!is.na(cf)] <- s[, 2]
    out[[lv]] <- list(names = names(cf), estimate = unname(cf), se = unname(se),
                      converged = fit$converged, n = sum(rows))
  }
  out
}
# the GLM of every level's pooled response on the level's weighted means of the fixed
# columns (binomial: trial-weighted; Poisson: exposure-weighted, offset log(exposure))
aggregated <- function(X, g, succ, trials = NULL, exposure = NULL) {
  # a column whose level means are one constant (btype in VerbAgg's by-id means) is the
  # intercept's twin: left out (R's glm does not alias a twin that differs by rounding)
  X <- X[, colnames(X) == "(Intercept)" |
           apply(rowsum(X, g) / rowsum(rep(1, nrow(X)), g)[, 1], 2, sd) > 1e-10, drop = FALSE]
  if (!is.null(trials)) {
    w <- trials
    tot <- rowsum(trials, g)[, 1]
    s <- rowsum(succ, g)[, 1]
    Xbar <- rowsum(X * w, g) / tot
    fit <- glm(cbind(s, tot - s) ~ 0 + Xbar, family = binomial, control = ctl)
  } else {
    expo <- rowsum(exposure, g)[, 1]
    Xbar <- rowsum(X * exposure, g) / expo
    s <- rowsum(succ, g)[, 1]
    fit <- glm(s ~ 0 + Xbar, family = poisson, offset = log(expo), control = ctl)
  }
  r <- coefs(fit)
  r$names <- sub("^Xbar", "", r$names)
  r$all_names <- colnames(X)
  r$coef_all <- unname(coef(fit))  # NA where aliased
  r
}

out <- list()

# -- cbpp, binomial: time = the period as a number (1-4) ---------------------------------
cbpp <- read.csv("tests/data/cbpp.csv", colClasses = c(herd = "character",
                                                       period = "character"))
cbpp$time <- as.numeric(cbpp$period)
f <- cbind(incidence, size - incidence) ~ time
X <- model.matrix(~ time, cbpp)
gm <- glmer(cbind(incidence, size - incidence) ~ time + (1 | herd), cbpp, binomial,
            control = tight)
re <- ranef(gm, condVar = TRUE)$herd
beta <- fixef(gm)
eta_fixed <- drop(X %*% beta)
own <- per_level(cbind(incidence, size - incidence) ~ 1, cbpp, "herd", binomial,
                 offset = eta_fixed)
out$cbpp <- list(
  global = coefs(glm(f, binomial, cbpp, control = ctl)),
  global_probit = coefs(glm(f, binomial(link = "probit"), cbpp, control = ctl)),
  groups = coefs(glm(cbind(incidence, size - incidence) ~ time + factor(herd), binomial,
                     cbpp, control = ctl)),
  aggregation = aggregated(X, cbpp$herd, cbpp$incidence, trials = cbpp$size),
  per_level = per_level(f, cbpp, "herd", binomial),
  glmer = list(names = names(beta), estimate = unname(beta)),
  condvar = list(levels = rownames(re), mode = re[, 1],
                 sd = sqrt(attr(re, "postVar")[1, 1, ])),
  own = own)

# -- grouseticks, Poisson ------------------------------------------------------------------
gt <- read.csv("tests/data/grouseticks.csv", colClasses = c(INDEX = "character",
               BROOD = "character", YEAR = "character", LOCATION = "character"))
X <- model.matrix(~ YEAR + cHEIGHT, gt)
out$grouseticks <- list(
  global = coefs(glm(TICKS ~ YEAR + cHEIGHT, poisson, gt, control = ctl)),
  aggregation = aggregated(X, gt$BROOD, gt$TICKS, exposure = rep(1, nrow(gt))))
# with an offset, (1 | LOCATION), term YEAR96
gt$expo <- gt$HEIGHT / 100
zero <- names(which(tapply(gt$TICKS, gt$LOCATION, sum) == 0))
X <- model.matrix(~ YEAR, gt)
full <- suppressWarnings(glm(TICKS ~ YEAR + factor(LOCATION) + offset(log(expo)), poisson,
                             gt, control = ctl))
out$grouseticks_offset <- list(
  global = coefs(glm(TICKS ~ YEAR + offset(log(expo)), poisson, gt, control = ctl)),
  zero_locations = zero,
  groups_full_max_abs = max(abs(coef(full)), na.rm = TRUE),
  groups = coefs(glm(TICKS ~ YEAR + factor(LOCATION) + offset(log(expo)), poisson,
                     gt[!(gt$LOCATION %in% zero), ], control = ctl)),
  aggregation = aggregated(X, gt$LOCATION, gt$TICKS, exposure = gt$expo),
  per_level = per_level(TICKS ~ YEAR + offset(log(expo)), gt, "LOCATION", poisson))

# the same with the negative binomial family: theta by ML as MASS's glm.nb (a glm at
# theta and theta.ml at its means in turn), polished to a relative change of 1e-10
nb <- function(f, data) {
  th <- glm.nb(f, data, control = ctl)$theta
  for (i in 1:200) {
    g <- glm(f, data = data, family = negative.binomial(th), control = ctl)
    new <- theta.ml(g$y, fitted(g), limit = 200, eps = 1e-12)
    if (abs(new - th) <= 1e-10 * th) break
    th <- new
  }
  g <- glm(f, data = data, family = negative.binomial(new), control = ctl)
  r <- coefs(g)
  r$theta <- new
  r
}
expo <- rowsum(gt$expo, gt$LOCATION)[, 1]
Xbar <- rowsum(X * gt$expo, gt$LOCATION) / expo
totals <- data.frame(s = rowsum(gt$TICKS, gt$LOCATION)[, 1], Xbar, off = log(expo))
names(totals)[2:4] <- c("Intercept", "YEAR96", "YEAR97")
groups_nb <- nb(TICKS ~ YEAR + factor(LOCATION) + offset(log(expo)),
                gt[!(gt$LOCATION %in% zero), ])
out$grouseticks_nb <- list(
  global = nb(TICKS ~ YEAR + offset(log(expo)), gt),
  groups = groups_nb,
  aggregation = nb(s ~ 0 + Intercept + YEAR96 + YEAR97 + offset(off), totals),
  per_level = per_level(TICKS ~ YEAR + offset(log(expo)), gt, "LOCATION",
                        negative.binomial(groups_nb$theta)))

# -- VerbAgg, Bernoulli, two crossed factors ----------------------------------------------
va <- read.csv("tests/data/verbagg.csv", colClasses = c(id = "character",
                                                        item = "character"))
va$y <- as.numeric(va$r2 == "Y")
X <- model.matrix(~ Anger + Gender + btype + situ, va)
gm <- glmer(y ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), va, binomial,
            control = tight)
re <- ranef(gm, condVar = TRUE)
condvar <- lapply(c("id", "item"), function(g) {
  list(levels = rownames(re[[g]]), mode = re[[g]][, 1],
       sd = sqrt(attr(re[[g]], "postVar")[1, 1, ]))
})
names(condvar) <- c("id", "item")
# each person's own intercept with the fixed part and the items' modes as offset
item_mode <- re$item[va$item, 1]
own_id <- per_level(y ~ 1, va, "id", binomial, offset = drop(X %*% fixef(gm)) + item_mode)
out$verbagg <- list(
  condvar = condvar,
  glmer = list(names = names(fixef(gm)), estimate = unname(fixef(gm))),
  own_id = own_id,
  global = coefs(glm(y ~ Anger + Gender + btype + situ, binomial, va, control = ctl)),
  aggregation_id = aggregated(X, va$id, va$y, trials = rep(1, nrow(va))),
  per_item = per_level(y ~ Anger + Gender, va, "item", binomial))

# -- simulated separation -----------------------------------------------------------------
sim <- read.csv("tests/data/separation_sim.csv")
sep_groups <- c("g03", "g07")
X <- model.matrix(~ x, sim)
full <- suppressWarnings(glm(y ~ x + factor(g), binomial, sim, control = ctl))
complete <- suppressWarnings(glm(ysep ~ x, binomial, sim, control = ctl))
out$separation <- list(
  global = coefs(glm(y ~ x, binomial, sim, control = ctl)),
  groups_full = coefs(full),
  groups = coefs(glm(y ~ x + factor(g), binomial, sim[!(sim$g %in% sep_groups), ],
                     control = ctl)),
  aggregation = aggregated(X, sim$g, sim$y, trials = rep(1, nrow(sim))),
  per_level = per_level(y ~ x, sim, "g", binomial),
  complete_separation = coefs(complete))

# -- a correlated random slope: conditional SDs of both terms (groups 0-19 of the
# simulated glmm_slopes.csv of lme4_glmer.R) ---------------------------------------------
slopes <- read.csv("tests/data/glmm_slopes.csv")
slopes <- slopes[slopes$g < 20, ]
slopes$g <- factor(slopes$g)
gm <- glmer(y ~ x + (1 + x | g), slopes, binomial, control = tight)
re <- ranef(gm, condVar = TRUE)$g
pv <- attr(re, "postVar")
out$slopes <- list(levels = rownames(re), fixef = unname(fixef(gm)),
                   mode_intercept = re[, 1], mode_x = re[, 2],
                   sd_intercept = sqrt(pv[1, 1, ]), sd_x = sqrt(pv[2, 2, ]))

writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, na = "null", pretty = TRUE),
           "tests/data/glm_compare.json")

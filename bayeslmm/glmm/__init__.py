"""Generalised linear mixed models: penalised IRLS and lme4's Laplace and adaptive
Gauss-Hermite deviances (:mod:`~bayeslmm.glmm.pirls`), below the classical and Bayesian fits."""

"""Bayesian fits: priors, the PyMC graphs, the compiled marginal density, samplers,
diagnostics, result tables, predictions and the :class:`~bayeslmm.bayes.model.LMM` facade."""

"""The Gaussian linear mixed model, and nothing about priors or samplers.

- :mod:`~bayeslmm.gaussian.statistics`: sufficient statistics made once from the design;
- :mod:`~bayeslmm.gaussian.factorisation`: factorisations of the penalised system;
- :mod:`~bayeslmm.gaussian.profiled`: the profiled REML/ML criterion and its gradient;
- :mod:`~bayeslmm.gaussian.draws`: exact conditional draws of the random effects.
"""

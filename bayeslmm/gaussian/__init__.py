"""The Gaussian linear mixed model, and nothing about priors or samplers.

- :mod:`~bayeslmm.gaussian.statistics`: sufficient statistics made once from the design;
- :mod:`~bayeslmm.gaussian.blocked`: the one factorisation of the penalised system (a
  blocked sparse Cholesky, MixedModels.jl's ``updateL!``) and its numba kernels;
- :mod:`~bayeslmm.gaussian.factorisation`: the same system as a PyTensor graph (JAX);
- :mod:`~bayeslmm.gaussian.profiled`: the profiled REML/ML criterion and its gradient;
- :mod:`~bayeslmm.gaussian.draws`: exact conditional draws of the random effects.
"""

"""Classical fits: REML/ML (``lmer``, Satterthwaite) and the OLS models of the comparison."""

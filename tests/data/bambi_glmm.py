"""Reference posterior of cbpp's binomial GLMM from bambi (tests/test_glmm_bayes.py).

bambi's ``p(incidence, size) ~ period + (1 | herd)`` with the priors given explicitly, the
same priors tests/test_glmm_bayes.py gives ``bl.LMM(..., family="binomial")``: fixed
effects (intercept included) Normal(0, 5), the herd SD HalfNormal(2.5). PyMC's NUTS, 4
chains x 5000 draws after 2000 tuning steps, seed 2026, target_accept 0.95. Writes posterior
means, SDs and Monte Carlo SEs of the means (ArviZ) to bambi_glmm.json.

Run: python3 tests/data/bambi_glmm.py
"""

import json
from pathlib import Path

import arviz as az
import bambi as bmb
import pandas as pd

HERE = Path(__file__).parent
d = pd.read_csv(HERE / "cbpp.csv")
d = d.assign(herd=d.herd.astype("category"), period=d.period.astype("category"))
priors = {
    "Intercept": bmb.Prior("Normal", mu=0, sigma=5),
    "period": bmb.Prior("Normal", mu=0, sigma=5),
    "1|herd": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=2.5)),
}
model = bmb.Model("p(incidence, size) ~ period + (1|herd)", d, family="binomial",
                  priors=priors)
idata = model.fit(draws=5000, tune=2000, chains=4, random_seed=2026, target_accept=0.95,
                  progressbar=False)
post = idata.posterior
draws = {
    "(Intercept)": post["Intercept"],
    "period2": post["period"].sel(period_dim="2"),
    "period3": post["period"].sel(period_dim="3"),
    "period4": post["period"].sel(period_dim="4"),
    "sd((Intercept)|herd)": post["1|herd_sigma"],
}
out = {}
for name, da in draws.items():
    ds = da.to_dataset(name="x")
    out[name] = {
        "mean": float(da.mean()),
        "sd": float(da.std()),
        "mcse_mean": float(az.mcse(ds)["x"]),
        "ess_bulk": float(az.ess(ds)["x"]),
    }
result = {
    "bambi_version": bmb.__version__,
    "formula": "p(incidence, size) ~ period + (1|herd)",
    "priors": {"fixed": "Normal(0, 5)", "sd": "HalfNormal(2.5)"},
    "sampler": "pymc NUTS, 4 chains x 5000 draws, tune 2000, seed 2026, target_accept 0.95",
    "divergences": int(idata.sample_stats["diverging"].sum()),
    "cbpp": out,
}
(HERE / "bambi_glmm.json").write_text(json.dumps(result, indent=1) + "\n")
print(json.dumps(result, indent=1))

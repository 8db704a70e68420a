"""Priors: the :class:`Prior` object, autoscaled defaults and user overrides.

Parameter names follow lme4's printing: fixed effects by column name
(``"(Intercept)"``, ``"sexMale"``), random-effect SDs as ``"sd(Days|Subject)"``,
correlation blocks as ``"cor(Subject)"`` and the residual SD as ``"sigma"``.

Default rule (autoscaling as in rstanarm and bambi), with ``s_y`` the response SD:

- slope of column ``x``: ``Normal(0, 2.5 * s_y / sd(x))``
- intercept (raw, uncentred): ``Normal(mean(y), sqrt((2.5 s_y)^2 + sum_j (mean(x_j) * s_j)^2))``
  where ``s_j`` are the slope prior SDs, so the intercept implied at the predictors'
  means has SD ``2.5 s_y`` as in the centred parametrisation;
- SD of a random effect on column ``z``: ``HalfNormal(2.5 * s_y / sd(z))`` (``sd(z)``
  taken as 1 for the intercept);
- correlations: ``LKJ(eta=1)``; residual SD: ``HalfNormal(s_y)``;
- with a residual structure, its correlation parameter (``"phi"`` for AR(1), ``"rho"`` for
  compound symmetry): uniform on its whole interval, ``Uniform(-1, 1)`` for AR(1) and
  ``Uniform(-1 / (m - 1), 1)`` for compound symmetry (``m``: rows of the largest group).
  An override must keep within that interval (``Uniform``, ``TruncatedNormal`` with both
  bounds, or ``Beta``).

Non-Gaussian families (``bl.LMM(..., family="binomial")``): the same rule on the link scale
with ``s_y = 1`` and ``mean(y) = 0``, as bambi's and rstanarm's autoscaling do for a GLM
(bambi's ``PriorScaler`` takes response mean 0 and SD 1 outside the Gaussian family):
slopes ``Normal(0, 2.5 / sd(x))``, the intercept ``Normal(0, sqrt(2.5^2 + sum_j (mean(x_j)
s_j)^2))``, random-effect SDs ``HalfNormal(2.5 / sd(z))``, ``LKJ(eta=1)``; no ``sigma``.
On the logit scale a unit of 2.5 spans probabilities 0.08-0.92: weakly informative.

The negative binomial family (variance ``mu + mu^2 / theta``; lme4/MASS's ``theta``, brms's
``shape``, PyMC's ``alpha``) adds ``"theta"``: by default ``InverseGamma(alpha=0.5,
beta=0.5)``, which is exactly ``1 / sqrt(theta) ~ HalfNormal(1)`` (``1 / theta`` is then
``chi^2_1``), the Stan prior-choice recommendation for the negative binomial's
overdispersion: it shrinks towards the Poisson model (``theta -> inf``), keeps
``P(theta < 1) = 0.32`` and ``P(theta < 0.1) = 0.002``, and, unlike brms's
``gamma(0.01, 0.01)``, has no spike of mass at tiny ``theta``. Override it by name
(``priors={"theta": Prior("Gamma", alpha=2, beta=0.1)}``, any positive family).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import ArgumentError, PriorError
from ..gaussian.statistics import column_scales
from ..gaussian.summation import PowerSums
from ..spec.design import Design
from ..spec.naming import ParameterNames

#: Parameters of the families bayeslmm knows without importing PyMC (PyMC 5's names):
#: (accepted names, alternative sets of required names, names that must be > 0).
FAMILIES: dict[str, tuple[frozenset, tuple[frozenset, ...], frozenset]] = {
    name: (frozenset(accepted), tuple(frozenset(r) for r in required), frozenset(positive))
    for name, accepted, required, positive in [
        ("Normal", {"mu", "sigma", "tau"}, [()], {"sigma", "tau"}),
        ("StudentT", {"nu", "mu", "sigma", "lam"}, [{"nu"}], {"nu", "sigma", "lam"}),
        ("Cauchy", {"alpha", "beta"}, [{"alpha", "beta"}], {"beta"}),
        ("Flat", set(), [()], set()),
        ("Laplace", {"mu", "b"}, [{"mu", "b"}], {"b"}),
        ("Logistic", {"mu", "s"}, [()], {"s"}),
        ("HalfNormal", {"sigma", "tau"}, [()], {"sigma", "tau"}),
        ("HalfStudentT", {"nu", "sigma", "lam"}, [{"nu"}], {"nu", "sigma", "lam"}),
        ("HalfCauchy", {"beta"}, [{"beta"}], {"beta"}),
        ("Exponential", {"lam", "scale"}, [{"lam"}, {"scale"}], {"lam", "scale"}),
        ("Gamma", {"alpha", "beta", "mu", "sigma"}, [{"alpha", "beta"}, {"mu", "sigma"}],
         {"alpha", "beta", "mu", "sigma"}),
        ("InverseGamma", {"alpha", "beta", "mu", "sigma"}, [{"alpha", "beta"}, {"mu", "sigma"}],
         {"alpha", "beta", "mu", "sigma"}),
        ("LogNormal", {"mu", "sigma", "tau"}, [()], {"sigma", "tau"}),
        ("Weibull", {"alpha", "beta"}, [{"alpha", "beta"}], {"alpha", "beta"}),
        ("HalfFlat", set(), [()], set()),
        ("Uniform", {"lower", "upper"}, [()], set()),
        ("TruncatedNormal", {"mu", "sigma", "tau", "lower", "upper"}, [()], {"sigma", "tau"}),
        ("LKJ", {"eta"}, [()], {"eta"}),
    ]
}  # fmt: skip
#: Families with positive support, allowed for SDs and sigma (Uniform and TruncatedNormal
#: only with a lower bound of at least 0).
POSITIVE = {
    "HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "Gamma",
    "InverseGamma", "LogNormal", "Weibull", "HalfFlat", "Uniform", "TruncatedNormal",
}  # fmt: skip
#: PyMC distributions accepted without importing PyMC to look them up.
KNOWN_FAMILIES = set(FAMILIES) - {"LKJ"}
CLASSES = ("fixed", "intercept", "sd", "cor", "sigma")
#: the negative binomial's dispersion and its default prior (module docstring)
THETA = "theta"
THETA_PRIOR = ("InverseGamma", {"alpha": 0.5, "beta": 0.5})
INTERCEPT = "(Intercept)"
#: Pairs of parameters of which at most one may be given.
_EXCLUSIVE = [("sigma", "tau"), ("sigma", "lam"), ("lam", "scale")]


def _pymc_parameters(dist: str) -> frozenset | None:
    """Named parameters of a PyMC distribution outside :data:`FAMILIES` (imports PyMC)."""
    import inspect

    import pymc as pm

    family = getattr(pm, dist, None)
    if not (isinstance(family, type) and issubclass(family, pm.Distribution)):
        return None
    params = inspect.signature(family.dist).parameters.values()
    return frozenset(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


def _check_parameters(dist: str, params: dict[str, np.ndarray]) -> None:
    """Parameter names and values a family accepts, or a :class:`PriorError`."""
    if dist in FAMILIES:
        accepted, required, positive = FAMILIES[dist]
    else:
        accepted = _pymc_parameters(dist)
        if accepted is None:
            raise PriorError(f"unknown prior family {dist!r}: not a PyMC distribution")
        required, positive = (frozenset(),), frozenset()
    unknown = sorted(set(params) - accepted)
    if unknown:
        hint = (
            " (PyMC names the standard deviation 'sigma')" if {"sd", "std"} & set(unknown) else ""
        )
        raise PriorError(f"prior {dist}: unknown parameter(s) {unknown}; {dist} takes "
                         f"{sorted(accepted) or 'no parameters'}{hint}")  # fmt: skip
    if not any(r <= set(params) for r in required):
        need = " or ".join(str(sorted(r)) for r in required)
        raise PriorError(f"prior {dist} needs the parameter(s) {need}")
    for a, b in _EXCLUSIVE:
        if a in params and b in params:
            raise PriorError(f"prior {dist}: give {a} or {b}, not both")
    for key in sorted(positive & set(params)):
        if np.any(params[key] <= 0):
            raise PriorError(f"prior {dist}: {key} must be > 0, got {_fmt(params[key])}")
    lower, upper = params.get("lower"), params.get("upper")
    if dist == "Uniform":
        lower = 0.0 if lower is None else lower
        upper = 1.0 if upper is None else upper
    if lower is not None and upper is not None and np.any(np.asarray(lower) >= upper):
        raise PriorError(f"prior {dist}: lower ({_fmt(lower)}) must be below upper "
                         f"({_fmt(upper)})")  # fmt: skip


def has_positive_support(prior: Prior) -> bool:
    """Can ``prior`` serve as the prior of a standard deviation (support within (0, inf))?"""
    if prior.dist not in POSITIVE:
        return False
    if prior.dist in ("Uniform", "TruncatedNormal"):
        lower = prior.params.get("lower", 0.0 if prior.dist == "Uniform" else None)
        return lower is not None and bool(np.all(np.asarray(lower) >= 0))
    return True


class Prior:
    """A prior distribution: a PyMC family name and its parameters.

    Examples
    --------
    >>> Prior("Normal", mu=0, sigma=10)
    Normal(mu=0, sigma=10)
    >>> Prior("LKJ", eta=2)
    LKJ(eta=2)
    """

    def __init__(self, dist: str, **params: float):
        if not isinstance(dist, str):
            raise PriorError(f"Prior family must be a name such as 'Normal', got {dist!r}")
        for key, value in params.items():
            arr = np.asarray(value)
            if (
                arr.ndim != 0
                or arr.dtype == bool
                or not np.issubdtype(arr.dtype, np.number)
                or np.iscomplexobj(arr)
                or not np.isfinite(arr)
            ):
                raise PriorError(
                    f"prior {dist}: parameter {key}={value!r} must be one finite number"
                )
        # floats: PyMC's HalfStudentT log density is nan for an integer nu (PyMC 5.28)
        floats = {k: float(v) for k, v in params.items()}
        _check_parameters(dist, floats)
        self.dist = dist
        self.params = floats

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        return f"{self.dist}({args})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Prior)
            and self.dist == other.dist
            and self.params.keys() == other.params.keys()
            and all(np.allclose(self.params[k], other.params[k]) for k in self.params)
        )

    def __hash__(self) -> int:
        return hash((self.dist, tuple(sorted(self.params))))

    def family(self):
        """The PyMC distribution class."""
        import pymc as pm

        return getattr(pm, self.dist)


def _fmt(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, float) else repr(v)


def _column_sd(moments: PowerSums, j: int) -> float:
    """SD of column j (0 for a column constant up to rounding)."""
    sd = float(moments.sd[j])
    return sd if sd > 1e-12 * max(1.0, float(moments.abs_max[j])) else 0.0


def default_priors(design: Design, gaussian: bool = True, theta: bool = False
                   ) -> dict[str, Prior]:  # fmt: skip
    """Autoscaled weakly informative priors (see the module docstring), from the means and
    SDs of the response and of every column (sums over the rows, so a Dask DataFrame's
    design scales them as its rows in memory would). ``gaussian=False``: the link-scale
    defaults of a non-Gaussian family (response mean 0, SD 1; no ``sigma``); ``theta``:
    the negative binomial's dispersion too (:data:`THETA_PRIOR`)."""
    if not isinstance(design, Design):
        raise ArgumentError(f"design must be a bl.Design (bl.build_design(formula, data)), "
                            f"got {type(design).__name__}")  # fmt: skip
    names = ParameterNames.from_design(design)
    moments, where = column_scales(design)
    s_y = (float(moments.sd[0]) or 1.0) if gaussian else 1.0
    y_mean = float(moments.mean[0]) if gaussian else 0.0
    out: dict[str, Prior] = {}
    slope_sd, col_means = [], []
    for j, name in enumerate(names.fixed):
        sd_x = _column_sd(moments, 1 + j)
        if name == INTERCEPT:
            continue
        scale = 2.5 * s_y / sd_x if sd_x > 0 else 2.5 * s_y
        out[name] = Prior("Normal", mu=0.0, sigma=float(scale))
        slope_sd.append(scale)
        col_means.append(float(moments.mean[1 + j]))
    if INTERCEPT in names.fixed:
        extra = float(np.sum((np.asarray(col_means) * np.asarray(slope_sd)) ** 2))
        sigma = float(np.sqrt((2.5 * s_y) ** 2 + extra))
        out = {INTERCEPT: Prior("Normal", mu=y_mean, sigma=sigma), **out}
    for columns, sd_names in zip(where, names.sd, strict=True):
        for j, name in enumerate(sd_names):
            sd_z = _column_sd(moments, columns.start + j)
            scale = 2.5 * s_y / sd_z if sd_z > 0 else 2.5 * s_y
            out[name] = Prior("HalfNormal", sigma=float(scale))
    for cor in names.cor:
        if cor:
            out[cor] = Prior("LKJ", eta=1.0)
    if gaussian:
        out["sigma"] = Prior("HalfNormal", sigma=s_y)
    if theta:
        out[THETA] = Prior(THETA_PRIOR[0], **THETA_PRIOR[1])
    if design.residual is not None:
        lay = design.residual
        out[lay.parameter] = Prior("Uniform", lower=lay.lower, upper=lay.upper)
    return out


def _check_correlation_prior(key: str, prior: Prior, lower: float, upper: float) -> Prior:
    """A prior of the residual correlation parameter must lie within its interval."""
    bounds = None
    if prior.dist == "Uniform":
        bounds = (prior.params.get("lower", 0.0), prior.params.get("upper", 1.0))
    elif prior.dist == "TruncatedNormal" and {"lower", "upper"} <= set(prior.params):
        bounds = (prior.params["lower"], prior.params["upper"])
    elif prior.dist == "Beta":
        bounds = (0.0, 1.0)
    if bounds is None or bounds[0] < lower - 1e-12 or bounds[1] > upper + 1e-12:
        raise PriorError(
            f"prior for {key!r} must keep within ({lower:.4g}, {upper:.4g}), where the residual "
            f"correlation is defined: Uniform(lower, upper), TruncatedNormal(mu, sigma, lower, "
            f"upper) or Beta (for positive values); got {prior}"
        )
    return prior


def _aliases(names: ParameterNames) -> dict[str, str]:
    """Extra spellings users may write, mapped to canonical names."""
    alias = {}
    if INTERCEPT in names.fixed:
        alias["Intercept"] = INTERCEPT
    for sd_names in names.sd:
        for name in sd_names:
            if name.startswith(f"sd({INTERCEPT}|"):
                rest = name[len(f"sd({INTERCEPT}|") :]
                alias[f"sd(Intercept|{rest}"] = name
                alias[f"sd(1|{rest}"] = name
    return alias


def _check_prior(key: str, prior: object, kind: str) -> Prior:
    if not isinstance(prior, Prior):
        raise PriorError(
            f"prior for {key!r} must be a bayeslmm.Prior, e.g. Prior('Normal', mu=0, sigma=1); "
            f"got {prior!r}"
        )
    if kind == "cor" and prior.dist != "LKJ":
        raise PriorError(f"prior for {key!r} must be Prior('LKJ', eta=...), got {prior}")
    if kind == "cor" and set(prior.params) - {"eta"}:
        raise PriorError(f"LKJ prior for {key!r} takes only eta, got {prior}")
    if kind != "cor" and prior.dist == "LKJ":
        raise PriorError(f"LKJ is a prior for correlations ('cor'), not for {key!r}")
    if kind in ("sd", "sigma") and not has_positive_support(prior):
        raise PriorError(
            f"prior for {key!r} must have positive support (e.g. HalfNormal, or a lower "
            f"bound of 0); got {prior}"
        )
    return prior


def resolve_priors(design: Design, user: Mapping[str, Prior] | None = None,
                   gaussian: bool = True, theta: bool = False) -> dict[str, Prior]:  # fmt: skip
    """Defaults overridden by the user's priors, keyed by parameter name.

    Precedence: class key (``"fixed"`` = every fixed effect, the intercept included;
    ``"intercept"``; ``"sd"``; ``"cor"``; ``"sigma"``) < a parameter's own name.
    ``gaussian=False``: a non-Gaussian family's defaults, which have no ``sigma`` (a prior
    for it is an error); ``theta``: the negative binomial's ``"theta"`` too (any prior
    with positive support).
    """
    priors = default_priors(design, gaussian, theta)
    if not user:
        return priors
    if not isinstance(user, Mapping):
        raise PriorError(f"priors must be a dict of name -> Prior, got {type(user).__name__}")
    names = ParameterNames.from_design(design)
    alias = _aliases(names)
    sd_all = [n for group in names.sd for n in group]
    cor_all = [c for c in names.cor if c]
    kind_of = {n: "fixed" for n in names.fixed}
    kind_of.update({n: "sd" for n in sd_all})
    kind_of.update({n: "cor" for n in cor_all})
    kind_of["sigma"] = "sigma"
    if theta:
        kind_of[THETA] = "sigma"  # positive support, as sigma's
    if names.residual:
        kind_of[names.residual] = "residual"
    targets = {
        "fixed": list(names.fixed),
        "intercept": [INTERCEPT] if INTERCEPT in names.fixed else [],
        "sd": sd_all,
        "cor": cor_all,
        "sigma": ["sigma"],
    }
    # class keys first, "intercept" after "fixed", then names
    order = sorted(user, key=lambda k: (k not in CLASSES, CLASSES.index(k) if k in CLASSES else 0))
    for key in order:
        prior = user[key]
        if key == "sigma" and not gaussian:
            raise PriorError("prior 'sigma' given, but a non-Gaussian family has no residual "
                             "SD (its variance follows from the mean)")  # fmt: skip
        if key in CLASSES:
            kind = "fixed" if key == "intercept" else key
            _check_prior(key, prior, kind)
            if key == "intercept" and not targets["intercept"]:
                raise PriorError("prior 'intercept' given but the model has no intercept")
            for name in targets[key]:
                priors[name] = prior
            continue
        name = alias.get(key, key)
        if name not in kind_of:
            valid = ", ".join(list(CLASSES) + list(kind_of))
            hint = ""
            if key in ("phi", "rho") and names.residual:
                hint = f" (the residual correlation of this model is {names.residual!r})"
            elif key in ("phi", "rho"):
                hint = " (the model has no residual correlation structure)"
            raise PriorError(f"prior key {key!r} matches no parameter{hint}; valid keys: {valid}")
        if kind_of[name] == "residual":
            _check_prior(key, prior, "fixed")  # not LKJ
            lay = design.residual
            priors[name] = _check_correlation_prior(key, prior, lay.lower, lay.upper)
            continue
        priors[name] = _check_prior(key, prior, kind_of[name])
    for block, sd_names in zip(design.blocks, names.sd, strict=True):
        chosen = [priors[n] for n in sd_names]
        if block.correlated and any(
            p.dist != chosen[0].dist or p.params.keys() != chosen[0].params.keys() for p in chosen
        ):
            raise PriorError(
                f"SD priors within the correlated term {block.term} must share one family "
                f"and parametrisation (LKJCholeskyCov takes one sd_dist); got "
                f"{dict(zip(sd_names, map(str, chosen), strict=True))}"
            )
    return priors

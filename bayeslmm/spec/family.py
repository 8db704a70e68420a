"""Response families and link functions of generalised linear (mixed) models.

Names follow lme4/R (``binomial``, ``poisson``, ``gaussian``; links ``logit``, ``probit``,
``cloglog``, ``log``, ``identity``) and bambi (``bernoulli``: a binomial with one trial per
row). Every function is vectorised over NumPy arrays and follows R's ``family`` objects,
clamping included (``binomial()$linkinv`` keeps probabilities in ``[eps, 1 - eps]``), so
that deviances and log-likelihoods equal R's/lme4's.

A binomial response is the proportion of successes ``y`` with ``weights`` = trials (R's
convention); a Bernoulli response is 0/1 with weights 1. The negative binomial family
(``negative_binomial``, aliases ``negbinomial``/``nb``; MASS's ``negative.binomial(theta)``)
has variance ``mu + mu^2 / theta``; its dispersion ``theta`` is fixed in the :class:`Family`
(``theta=None``: to be estimated, as ``lme4::glmer.nb`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.special as sc

from ..errors import BayesLMMError

EPS = float(np.finfo(float).eps)
#: R's ``-qnorm(.Machine$double.eps)``: probit's linear predictor is clamped to +/- this
_PROBIT_THRESH = float(-sc.ndtri(EPS))


class FamilyError(BayesLMMError, ValueError):
    """An unknown family or link name, or a link the family does not take."""


@dataclass(frozen=True)
class Link:
    """A link function ``eta = g(mu)``, its inverse and ``d mu / d eta``."""

    name: str
    linkfun: Callable[[np.ndarray], np.ndarray]
    linkinv: Callable[[np.ndarray], np.ndarray]
    mu_eta: Callable[[np.ndarray], np.ndarray]


def _logit_inv(eta):
    return sc.expit(np.clip(eta, -30.0, 30.0))


def _logit_mu_eta(eta):
    e = np.exp(-np.abs(eta))
    return np.maximum(e / (1.0 + e) ** 2, EPS)


def _probit_inv(eta):
    return sc.ndtr(np.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH))  # the normal's cdf


def _probit_mu_eta(eta):
    return np.maximum(np.exp(-0.5 * np.square(eta)) / np.sqrt(2.0 * np.pi), EPS)


def _cloglog_inv(eta):
    return np.clip(-np.expm1(-np.exp(np.minimum(eta, 700.0))), EPS, 1.0 - EPS)


def _cloglog_mu_eta(eta):
    eta = np.minimum(eta, 700.0)
    return np.maximum(np.exp(eta - np.exp(eta)), EPS)


def _log_inv(eta):
    return np.maximum(np.exp(eta), EPS)


LINKS: dict[str, Link] = {
    "identity": Link("identity", lambda mu: np.asarray(mu, float),
                     lambda eta: np.asarray(eta, float),
                     lambda eta: np.ones_like(eta, dtype=float)),  # fmt: skip
    "logit": Link("logit", sc.logit, _logit_inv, _logit_mu_eta),
    "probit": Link("probit", sc.ndtri, _probit_inv, _probit_mu_eta),
    "cloglog": Link("cloglog", lambda mu: np.log(-np.log1p(-mu)), _cloglog_inv,
                    _cloglog_mu_eta),  # fmt: skip
    "log": Link("log", np.log, _log_inv, lambda eta: np.maximum(np.exp(eta), EPS)),
}


def _ylogy(y, mu):
    """``y * log(y / mu)``, 0 where y is 0 (R's ``y_log_y``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)


@dataclass(frozen=True)
class Family:
    """A response distribution with its link.

    Attributes
    ----------
    name
        ``"gaussian"``, ``"binomial"``, ``"bernoulli"``, ``"poisson"`` or
        ``"negative_binomial"``.
    link
        The :class:`Link`.
    theta
        The negative binomial's dispersion (None otherwise, or not yet estimated).
    """

    name: str
    link: Link
    #: the negative binomial's dispersion (variance ``mu + mu^2 / theta``); None for the
    #: other families, and for a negative binomial whose theta is still to be estimated
    theta: float | None = None

    # -- the link, delegated ---------------------------------------------------------
    def linkfun(self, mu: np.ndarray) -> np.ndarray:
        """``eta = g(mu)``."""
        return self.link.linkfun(np.asarray(mu, float))

    def linkinv(self, eta: np.ndarray) -> np.ndarray:
        """``mu = g^-1(eta)``."""
        return self.link.linkinv(np.asarray(eta, float))

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """``d mu / d eta`` (R's ``mu.eta``)."""
        return self.link.mu_eta(np.asarray(eta, float))

    # -- the distribution ---------------------------------------------------------------
    @property
    def binomial(self) -> bool:
        """Bernoulli or binomial (a proportion of trials)."""
        return self.name in ("binomial", "bernoulli")

    @property
    def negative_binomial(self) -> bool:
        """The negative binomial family (whatever its theta)."""
        return self.name == "negative_binomial"

    @property
    def counts(self) -> bool:
        """Is the response a count (Poisson, negative binomial)?"""
        return self.name in ("poisson", "negative_binomial")

    @property
    def base(self) -> str:
        """The family and link without the negative binomial's theta (fits with equal
        ``base`` have comparable likelihoods)."""
        shown = "binomial" if self.name == "bernoulli" else self.name
        return f"{shown}  ( {self.link.name} )"

    def with_theta(self, theta: float) -> Family:
        """This negative binomial family at dispersion ``theta``."""
        if not self.negative_binomial:
            raise FamilyError(f"theta is the negative binomial's dispersion; the {self.name} "
                              "family has none")  # fmt: skip
        return Family(self.name, self.link, check_theta(theta))

    def _theta(self) -> float:
        if self.theta is None:
            raise FamilyError("the negative binomial family needs its theta (dispersion) here: "
                              "get_family('negative_binomial', theta=...)")  # fmt: skip
        return self.theta

    @property
    def has_scale(self) -> bool:
        """Does the family have a dispersion parameter to estimate (Gaussian only)?"""
        return self.name == "gaussian"

    def variance(self, mu: np.ndarray) -> np.ndarray:
        """Variance function ``V(mu)``."""
        mu = np.asarray(mu, float)
        if self.binomial:
            return mu * (1.0 - mu)
        if self.name == "poisson":
            return mu
        if self.negative_binomial:
            return mu + mu**2 / self._theta()
        return np.ones_like(mu)

    def dev_resid(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray | float = 1.0):
        """Squared deviance residuals per row (R's ``dev.resids``); their sum is the
        deviance. ``wt`` are the prior weights (trials for a binomial proportion)."""
        y, mu = np.asarray(y, float), np.asarray(mu, float)
        if self.binomial:
            return 2.0 * wt * (_ylogy(y, mu) + _ylogy(1.0 - y, 1.0 - mu))
        if self.name == "poisson":
            return 2.0 * wt * (_ylogy(y, mu) - (y - mu))
        if self.negative_binomial:  # MASS::negative.binomial()$dev.resids
            th = self._theta()
            # log((y + th) / (mu + th)) as log1p: exact as theta grows (the Poisson limit)
            with np.errstate(divide="ignore"):
                return 2.0 * wt * (y * np.log(np.maximum(1.0, y) / mu)
                                   - (y + th) * np.log1p((y - mu) / (mu + th)))  # fmt: skip
        return wt * (y - mu) ** 2

    def loglik(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray | float = 1.0,
               scale: float = 1.0) -> np.ndarray:  # fmt: skip
        """Log-likelihood of every row, with all constants (``dbinom``, ``dpois``,
        ``dnorm``): the binomial's ``y`` is the proportion and ``wt`` the trials; the
        Gaussian's ``scale`` is the residual variance."""
        import scipy.stats  # 0.3 s to import: not in a fit's path

        y, mu = np.asarray(y, float), np.asarray(mu, float)
        wt = np.broadcast_to(np.asarray(wt, float), y.shape)
        if self.binomial:
            n = np.round(wt)
            k = np.round(wt * y)
            return np.where(wt > 0, scipy.stats.binom.logpmf(k, n, mu), 0.0)
        if self.name == "poisson":
            return wt * scipy.stats.poisson.logpmf(y, mu)
        if self.negative_binomial:  # -aic/2 of MASS::negative.binomial, per row
            th = self._theta()
            return wt * scipy.stats.nbinom.logpmf(y, th, th / (th + mu))
        return scipy.stats.norm.logpdf(y, mu, np.sqrt(scale / np.where(wt > 0, wt, 1.0)))

    def aic_deviance(self, y, mu, wt=1.0) -> float:
        """-2 times the summed log-likelihood (R's ``family$aic`` without its parameter
        count), the term lme4's Laplace deviance adds to the penalty."""
        return float(-2.0 * np.sum(self.loglik(y, mu, wt)))

    def __str__(self) -> str:
        if self.negative_binomial:  # R's family string: Negative Binomial(3.2112)
            th = "theta" if self.theta is None else _r_format(round(self.theta, 4))
            return f"Negative Binomial({th})  ( {self.link.name} )"
        return self.base


def _r_format(x: float) -> str:
    """R's ``format(x)`` of a number (7 significant digits, no trailing zeros)."""
    return f"{x:.7g}"


def check_theta(theta, what: str = "theta") -> float:
    """A negative binomial dispersion: a finite number > 0 (else :class:`FamilyError`
    naming ``what``)."""
    if isinstance(theta, bool) or not isinstance(theta, int | float | np.integer | np.floating):
        raise FamilyError(f"{what} (the negative binomial's dispersion) must be a number > 0, "
                          f"got {theta!r}")  # fmt: skip
    if not np.isfinite(theta) or theta <= 0:
        raise FamilyError(f"{what} (the negative binomial's dispersion) must be finite and > 0, "
                          f"got {theta!r}")  # fmt: skip
    return float(theta)


#: Family -> (default link, allowed links)
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "gaussian": ("identity", ("identity", "log")),
    "binomial": ("logit", ("logit", "probit", "cloglog")),
    "bernoulli": ("logit", ("logit", "probit", "cloglog")),
    "poisson": ("log", ("log", "identity")),
    "negative_binomial": ("log", ("log", "identity")),
}

#: Other spellings of family names (lme4/MASS, bambi)
ALIASES: dict[str, str] = {"negbinomial": "negative_binomial", "nb": "negative_binomial",
                           "negative.binomial": "negative_binomial",
                           "negativebinomial": "negative_binomial"}  # fmt: skip


def _read_call(family: str, link: str | None, theta):
    """R's call spellings: ``binomial(link = 'probit')``, ``poisson()``,
    ``negative.binomial(theta = 2)`` / ``negative.binomial(2)``."""
    text = family.strip().replace(" ", "")
    if not (text.endswith(")") and "(" in text):
        return text, link, theta
    text, inner = text[:-1].split("(", 1)
    nb = ALIASES.get(text.lower(), text.lower()) == "negative_binomial"
    for k, part in enumerate(p for p in inner.split(",") if p):
        key, _, value = part.rpartition("=")
        key = key or ("theta" if nb and k == 0 else "link")
        value = value.strip("'\"")
        if key == "link":
            if link is not None and link != value:
                raise FamilyError(f"family {family!r} and link={link!r} disagree")
            link = value
        elif key == "theta" and nb:
            try:
                given = float(value)
            except ValueError:
                raise FamilyError(f"theta in family {family!r} must be a number") from None
            if theta is not None and theta != given:
                raise FamilyError(f"family {family!r} and theta={theta!r} disagree")
            theta = given
        else:
            raise FamilyError(f"family {family!r}: unknown argument {key!r}")
    return text, link, theta


def get_family(family: str | Family | tuple = "gaussian", link: str | None = None,
               theta: float | None = None) -> Family:  # fmt: skip
    """A :class:`Family` by name (lme4/bambi spelling), with its default or a named link.

    Parameters
    ----------
    family
        ``"gaussian"`` (default), ``"binomial"``, ``"bernoulli"``, ``"poisson"``,
        ``"negative_binomial"`` (aliases ``"negbinomial"``, ``"nb"``), or a
        :class:`Family` (returned as it is unless ``link``/``theta`` is given). R's call
        spellings ``"binomial(link = 'probit')"`` / ``"poisson()"`` /
        ``"negative.binomial(theta = 2)"`` are read too, and a pair
        ``("negative_binomial", theta)``.
    link
        ``"logit"``, ``"probit"``, ``"cloglog"``, ``"log"`` or ``"identity"``; default the
        family's canonical link.
    theta
        The negative binomial's dispersion (> 0; variance ``mu + mu^2 / theta``); None
        leaves it to be estimated. Other families take none.

    Raises
    ------
    FamilyError
        For an unknown family or link, a link the family does not take, or a theta that
        is not a number > 0 or given to a family other than the negative binomial.
    """
    if isinstance(family, tuple):
        if len(family) != 2 or not isinstance(family[0], str):
            raise FamilyError(f"family as a pair is (name, theta), e.g. ('negative_binomial', "
                              f"2.0), got {family!r}")  # fmt: skip
        if theta is not None and theta != family[1]:
            raise FamilyError(f"family {family!r} and theta={theta!r} disagree")
        family, theta = family
        theta = check_theta(theta, "theta (the family's second element)")
    if isinstance(family, Family):
        if link is None and theta is None:
            return family
        theta = family.theta if theta is None else theta
        link = family.link.name if link is None else link
        family = family.name
    if not isinstance(family, str):
        raise FamilyError(f"family must be a name such as 'binomial' or 'poisson', got "
                          f"{type(family).__name__}")  # fmt: skip
    text, link, theta = _read_call(family, link, theta)
    name = text.lower()
    name = ALIASES.get(name, name)
    if name not in FAMILIES:
        raise FamilyError(f"unknown family {family!r}: bayeslmm knows "
                          f"{', '.join(map(repr, FAMILIES))}")  # fmt: skip
    default, allowed = FAMILIES[name]
    link = default if link is None else link
    if not isinstance(link, str) or link not in LINKS:
        raise FamilyError(f"unknown link {link!r}: known links are {', '.join(map(repr, LINKS))}")
    if link not in allowed:
        raise FamilyError(f"the {name} family takes the links {', '.join(map(repr, allowed))}, "
                          f"not {link!r}")  # fmt: skip
    if theta is not None:
        if name != "negative_binomial":
            raise FamilyError(f"theta is the negative binomial's dispersion; the {name} family "
                              "takes none")  # fmt: skip
        theta = check_theta(theta)
    return Family(name, LINKS[link], theta)

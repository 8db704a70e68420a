"""Response families and link functions of generalised linear (mixed) models.

Names follow lme4/R (``binomial``, ``poisson``, ``gaussian``; links ``logit``, ``probit``,
``cloglog``, ``log``, ``identity``) and bambi (``bernoulli``: a binomial with one trial per
row). Every function is vectorised over NumPy arrays and follows R's ``family`` objects,
clamping included (``binomial()$linkinv`` keeps probabilities in ``[eps, 1 - eps]``), so
that deviances and log-likelihoods equal R's/lme4's.

A binomial response is the proportion of successes ``y`` with ``weights`` = trials (R's
convention); a Bernoulli response is 0/1 with weights 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.special as sc
import scipy.stats

from ..errors import BayesLMMError

EPS = float(np.finfo(float).eps)
#: R's ``-qnorm(.Machine$double.eps)``: probit's linear predictor is clamped to +/- this
_PROBIT_THRESH = float(-scipy.stats.norm.ppf(EPS))


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
    return scipy.stats.norm.cdf(np.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH))


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
    "probit": Link("probit", scipy.stats.norm.ppf, _probit_inv,
                   lambda eta: np.maximum(scipy.stats.norm.pdf(eta), EPS)),  # fmt: skip
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
        ``"gaussian"``, ``"binomial"``, ``"bernoulli"`` or ``"poisson"``.
    link
        The :class:`Link`.
    """

    name: str
    link: Link

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
        return np.ones_like(mu)

    def dev_resid(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray | float = 1.0):
        """Squared deviance residuals per row (R's ``dev.resids``); their sum is the
        deviance. ``wt`` are the prior weights (trials for a binomial proportion)."""
        y, mu = np.asarray(y, float), np.asarray(mu, float)
        if self.binomial:
            return 2.0 * wt * (_ylogy(y, mu) + _ylogy(1.0 - y, 1.0 - mu))
        if self.name == "poisson":
            return 2.0 * wt * (_ylogy(y, mu) - (y - mu))
        return wt * (y - mu) ** 2

    def loglik(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray | float = 1.0,
               scale: float = 1.0) -> np.ndarray:  # fmt: skip
        """Log-likelihood of every row, with all constants (``dbinom``, ``dpois``,
        ``dnorm``): the binomial's ``y`` is the proportion and ``wt`` the trials; the
        Gaussian's ``scale`` is the residual variance."""
        y, mu = np.asarray(y, float), np.asarray(mu, float)
        wt = np.broadcast_to(np.asarray(wt, float), y.shape)
        if self.binomial:
            n = np.round(wt)
            k = np.round(wt * y)
            return np.where(wt > 0, scipy.stats.binom.logpmf(k, n, mu), 0.0)
        if self.name == "poisson":
            return wt * scipy.stats.poisson.logpmf(y, mu)
        return scipy.stats.norm.logpdf(y, mu, np.sqrt(scale / np.where(wt > 0, wt, 1.0)))

    def aic_deviance(self, y, mu, wt=1.0) -> float:
        """-2 times the summed log-likelihood (R's ``family$aic`` without its parameter
        count), the term lme4's Laplace deviance adds to the penalty."""
        return float(-2.0 * np.sum(self.loglik(y, mu, wt)))

    def __str__(self) -> str:
        shown = "binomial" if self.name == "bernoulli" else self.name
        return f"{shown}  ( {self.link.name} )"


#: Family -> (default link, allowed links)
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "gaussian": ("identity", ("identity", "log")),
    "binomial": ("logit", ("logit", "probit", "cloglog")),
    "bernoulli": ("logit", ("logit", "probit", "cloglog")),
    "poisson": ("log", ("log", "identity")),
}


def get_family(family: str | Family = "gaussian", link: str | None = None) -> Family:
    """A :class:`Family` by name (lme4/bambi spelling), with its default or a named link.

    Parameters
    ----------
    family
        ``"gaussian"`` (default), ``"binomial"``, ``"bernoulli"``, ``"poisson"``, or a
        :class:`Family` (returned as it is unless ``link`` is given). R's call spellings
        ``"binomial(link = 'probit')"`` / ``"poisson()"`` are read too.
    link
        ``"logit"``, ``"probit"``, ``"cloglog"``, ``"log"`` or ``"identity"``; default the
        family's canonical link.

    Raises
    ------
    FamilyError
        For an unknown family or link, or a link the family does not take.
    """
    if isinstance(family, Family):
        if link is None:
            return family
        family = family.name
    if not isinstance(family, str):
        raise FamilyError(f"family must be a name such as 'binomial' or 'poisson', got "
                          f"{type(family).__name__}")  # fmt: skip
    text = family.strip().replace(" ", "")
    if text.endswith(")") and "(" in text:  # binomial(link="probit"), poisson()
        text, inner = text[:-1].split("(", 1)
        inner = inner.removeprefix("link=").strip("'\"")
        if inner:
            if link is not None and link != inner:
                raise FamilyError(f"family {family!r} and link={link!r} disagree")
            link = inner
    name = text.lower()
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
    return Family(name, LINKS[link])

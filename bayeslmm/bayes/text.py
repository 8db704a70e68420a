"""Plain-text rendering of model summaries (lme4's layout, posterior statistics)."""

from __future__ import annotations

import pandas as pd

from .results import hdi_of, varcorr_table


def _format_stats(table: pd.DataFrame) -> pd.DataFrame:
    hdi = hdi_of(table)
    out = table[["mean", "sd", *hdi, "r_hat", "ess_bulk", "ess_tail"]].copy().astype(object)
    for col in ["mean", "sd", *hdi]:
        out[col] = [f"{v:.4g}" for v in table[col]]
    out["r_hat"] = [f"{v:.3f}" for v in table["r_hat"]]
    for col in ["ess_bulk", "ess_tail"]:
        out[col] = [f"{v:.0f}" for v in table[col]]
    return out


def format_summary(model, table: pd.DataFrame) -> str:
    """The printed form of :meth:`LMM.summary`."""
    design, info = model.design, model._fit_info
    lines = [
        f"Bayesian linear mixed model fit by NUTS ({info.get('sampler', '?')}; "
        f"{info.get('chains', '?')} chains x {info.get('draws', '?')} draws)",
        f"Formula: {design.spec.formula}",
        f"   Data: {design.n_obs} observations"
        + (f" ({design.n_dropped} dropped for missing values)" if design.n_dropped else ""),
    ]
    groups = ", ".join(f"{g} ({len(lv)} levels)" for g, lv in design.groups().items())
    if groups:
        lines.append(f" Groups: {groups}")
    if design.residual is not None:
        lines.append(f"Residuals: {design.residual.describe()}")
    varcorr = varcorr_table(table, design)
    stats = _format_stats(table.loc[varcorr["parameter"]]).reset_index(drop=True)
    names = [
        r.parameter
        if r.grp == "Residual"
        else (f"cor({r.var1},{r.var2})" if pd.notna(r.var2) else f"sd({r.var1})")
        for r in varcorr.itertuples()
    ]
    groups_col = varcorr["grp"].where(varcorr["grp"].ne(varcorr["grp"].shift()), "")
    random = pd.concat([pd.DataFrame({"Groups": groups_col, "Name": names}), stats], axis=1)
    heading = "Random effects (posterior of SDs and correlations)"
    if design.residual is not None:
        heading += f"; residual correlation {design.residual.parameter}"
    lines += ["", heading + ":"]
    lines.append(random.to_string(index=False))
    fixed = table.loc[table["component"] == "fixed"]
    if len(fixed):
        lines += ["", "Fixed effects:", _format_stats(fixed).to_string()]
    conv = model.convergence
    if conv is not None:
        verdict = "OK" if conv.ok else "PROBLEMS"
        lines += [
            "",
            f"Convergence: {verdict} (max R-hat {conv.max_rhat:.3f}, min bulk ESS "
            f"{conv.min_ess_bulk:.0f}, min tail ESS {conv.min_ess_tail:.0f}, "
            f"{conv.divergences} divergences)",
        ]
        lines += [f"  - {p}" for p in conv.problems]
    return "\n".join(lines)


class SummaryTable(pd.DataFrame):
    """:meth:`LMM.summary`'s table: a DataFrame whose printed form (``repr``, ``str``) is the
    lme4-like block, so that a REPL shows the summary once. Any operation on it (``.loc``,
    arithmetic, ``.copy()``) gives a plain DataFrame; ``.table`` is the table itself."""

    _metadata = ["text"]

    @property
    def _constructor(self):
        return pd.DataFrame

    @property
    def table(self) -> pd.DataFrame:
        """The summary as a plain DataFrame."""
        return pd.DataFrame(self)

    def __repr__(self) -> str:
        return getattr(self, "text", None) or pd.DataFrame.__repr__(self)

    __str__ = __repr__

    def _repr_html_(self) -> str | None:  # notebooks: the block, not the HTML table
        return None


def summary_object(table: pd.DataFrame, text: str) -> SummaryTable:
    """``table`` as a :class:`SummaryTable` printed as ``text``."""
    out = SummaryTable(table)
    out.text = text
    return out


def interactive() -> bool:
    """Whether Python runs at an interactive prompt (the REPL, IPython, Jupyter), which
    shows a returned value itself."""
    import sys

    if hasattr(sys, "ps1") or bool(getattr(sys.flags, "interactive", 0)):
        return True
    get_ipython = getattr(sys.modules.get("IPython"), "get_ipython", None)
    return get_ipython is not None and get_ipython() is not None

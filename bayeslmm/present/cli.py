"""The ``bayeslmm`` command: ``fit``, ``demo`` and ``datasets``.

Every failure prints one line, ``bayeslmm: error: ...``: data, formula and prior errors
exit with status 1 (``--debug`` shows the traceback instead), usage errors (an unknown
option, ``--draws 0``, ``--target-accept 1.5``) with status 2, before anything is fitted.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import glob
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from ..errors import (
    ArgumentError,
    BayesLMMError,
    BayesLMMWarning,
    DataError,
    MissingDependencyError,
    PriorError,
)

DEMO = {
    "dataset": "classroom",
    "formula": "score ~ edu + (1 + edu | classroom)",
    "title": "The tutorial's classroom analysis: scores against parents' education",
}

#: The demo's binary example: VerbAgg's yes/no answers (lme4's data, shipped), the same
#: questions as the classroom's (does an effect vary between groups? how much do groups
#: shrink?) for a 0/1 outcome; the first ``people`` respondents keep the demo short.
DEMO_BINARY = {
    "dataset": "verbagg",
    "formula": "r2 ~ mode + btype + (1 + mode | id)",
    "people": 60,
    "draws": 1000,
    "title": "The demo's binary example: would people want to, or do, a verbally aggressive "
             "thing (VerbAgg, first 60 of 316 people)",
}  # fmt: skip


#: ``--family`` and ``--link`` values (lme4/bambi names; bayeslmm.spec.family)
FAMILY_CHOICES = ("gaussian", "bernoulli", "binomial", "poisson", "negative_binomial")
LINK_CHOICES = ("identity", "logit", "probit", "cloglog", "log")


def parse_prior(text: str):
    """``KEY=Family(name=value, ...)`` -> (key, :class:`~bayeslmm.Prior`).

    ``KEY`` is a class (``fixed``, ``intercept``, ``sd``, ``cor``, ``sigma``) or a
    parameter name such as ``sd(Days|Subject)``.
    """
    from ..bayes.priors import Prior

    key, sep, dist = text.partition("=")
    key, dist = key.strip(), dist.strip()
    if not sep or not key or not dist:
        raise PriorError(f"--prior {text!r}: write KEY=DIST(...), e.g. sd=HalfNormal(sigma=10)")
    shape = f"--prior {text!r}: {dist!r} is not of the form Family(name=value, ...)"
    try:
        call = ast.parse(dist, mode="eval").body
    except SyntaxError as err:
        raise PriorError(shape) from err
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.args:
        raise PriorError(shape)
    params = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise PriorError(shape)
        try:
            params[kw.arg] = ast.literal_eval(kw.value)
        except ValueError as err:
            raise PriorError(f"--prior {text!r}: {kw.arg} must be a number") from err
    return key, Prior(call.func.id, **params)


def parse_residual(text: str):
    """``--residual``: ``ar1(TIME | GROUP)``, ``ar1(1 | GROUP)`` (the rows' order), ``ar1(TIME)``
    (one series), ``cs(GROUP)`` or ``cs(1 | GROUP)`` -> the residual structure (nlme's
    ``corAR1(form = ~ TIME | GROUP)`` and ``corCompSymm(form = ~ 1 | GROUP)``); ``a:b``
    groups by two columns, a name in backticks may hold any character."""
    from ..spec.residual import AR1, CompoundSymmetry

    shape = (f"--residual {text!r}: write ar1(TIME | GROUP), ar1(1 | GROUP), ar1(TIME) or "
             "cs(GROUP)")  # fmt: skip
    match = re.fullmatch(r"\s*(ar1|cs)\s*\((.*)\)\s*", text, flags=re.IGNORECASE | re.DOTALL)
    if not match:
        raise ArgumentError(shape)
    kind, inner = match.group(1).lower(), match.group(2)
    left, bar, right = inner.partition("|") if "|" in inner else ("", "", inner)

    def names(part: str) -> list[str]:
        out = [p.strip().strip("`").strip() for p in re.split(r":(?![^`]*`)", part)]
        if not all(out):
            raise ArgumentError(shape)
        return out

    if bar and not right.strip():
        raise ArgumentError(shape)
    group = names(right) if right.strip() else None
    if kind == "cs":
        if left.strip() not in ("", "1") or group is None:
            raise ArgumentError(shape)
        return CompoundSymmetry(group=group)
    time = left.strip().strip("`") if bar else inner.strip().strip("`")
    if not bar:
        group = None
    return AR1(time=None if time in ("", "1") else time, group=group)


class _Parser(argparse.ArgumentParser):
    """argparse with bayeslmm's one-line errors (status 2, as argparse's)."""

    def error(self, message: str):  # type: ignore[override]
        print(f"bayeslmm: error: {message} (see: {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


class _Renamed(argparse.Action):
    """The deprecated old spelling of an option: stores into the new option's value and
    prints a one-line note on stderr naming the new spelling."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"bayeslmm: note: {option_string} is deprecated and will be removed in the next "
              f"release; use {self.new} (same meaning)", file=sys.stderr)  # fmt: skip
        setattr(namespace, self.dest, values)


def _whole(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def _add_sampling_options(
    p: argparse.ArgumentParser,
    draws: int = 1000,
    tune: int = 1000,
    target_accept: float | None = None,
) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--draws", type=_whole(1), default=draws,
                   help="kept draws per chain (%(default)s)")  # fmt: skip
    g.add_argument("--tune", type=_whole(0), default=tune,
                   help="tuning steps per chain (%(default)s)")  # fmt: skip
    g.add_argument("--chains", type=_whole(1), default=4, help="chains (%(default)s)")
    g.add_argument("--seed", type=_whole(0), default=1, help="random seed (%(default)s)")
    g.add_argument("--sampler", choices=["auto", "pymc", "nutpie", "numpyro"], default="auto",
                   help="NUTS implementation; auto: nutpie on the compiled density (every "
                        "design it covers), else numpyro if installed and the model has up "
                        "to 10,000 random effects, else pymc (%(default)s)")  # fmt: skip
    g.add_argument("--method", choices=["auto", "marginal", "full"], default="auto",
                   help="marginal: random effects integrated out (one factor, nested or "
                        "crossed); full: explicit random effects; auto picks "
                        "(%(default)s)")  # fmt: skip
    g.add_argument("--target-accept", type=_probability, default=target_accept,
                   help="NUTS step-size target acceptance, in (0, 1) (default: 0.9, or "
                        "0.99 when a grouping factor has at most 5 levels or no more levels "
                        "than its covariance has parameters)")  # fmt: skip
    g.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--level", type=_probability, default=0.95, metavar="LEVEL",
                   help="the one interval level of the report: HDIs and confidence intervals "
                        "(%(default)s)")  # fmt: skip
    p.add_argument("--hdi", type=_probability, dest="level", action=_Renamed, new="--level",
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # deprecated spelling


def _add_random_comparison_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-random-comparison", action="store_true",
                   help="skip the comparison with simpler random-effects structures (each "
                        "random slope or correlation removed)")  # fmt: skip


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayeslmm`` command."""
    parser = _Parser(
        prog="bayeslmm",
        description="Bayesian linear mixed models from lme4 formulas: fit, compare with "
        "REML/ANCOVA/OLS, and write a report.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"bayeslmm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = sub.add_parser(
        "fit",
        help="fit a formula to a CSV or Parquet data set and write the report",
        description="Fit FORMULA (lme4 syntax) to DATA (a CSV file, or Parquet files read with "
        "Dask, which need not fit in memory), compare it with REML, ANCOVA and OLS fits, and "
        "write an HTML report with CSV tables to --out.",
        epilog='examples: bayeslmm fit sleep.csv "Reaction ~ Days + (Days | Subject)" --out '
        'rep;  bayeslmm fit data/*.parquet "y ~ x + (1 + x | user)" --scheduler '
        "tcp://scheduler:8786",
    )
    fit.add_argument("data", nargs="+",
                     help="CSV file with a header row (or a shipped dataset's name); or Parquet "
                          "data, read with Dask partition by partition: .parquet files, a "
                          "glob such as 'data/*.parquet', or a directory of them (needs "
                          "bayeslmm[dask])")  # fmt: skip
    fit.add_argument("formula", help='lme4 formula, e.g. "y ~ x + (1 + x | g)"')
    fit.add_argument("--scheduler", metavar="WHERE",
                     help="where Dask computes Parquet data's sums: 'threads' (Dask's default), "
                          "'processes', 'synchronous', or the address of a dask.distributed "
                          "scheduler, e.g. tcp://10.0.0.5:8786")  # fmt: skip
    fit.add_argument("--out", default="bayeslmm_report", help="output directory (%(default)s)")
    fit.add_argument("--term", help="fixed term the classical models are compared on (default: "
                                    "the first; with one grouping factor, the first numeric "
                                    "column)")  # fmt: skip
    fit.add_argument("--prior", action="append", default=[], metavar="KEY=DIST(...)",
                     help="override a prior, e.g. --prior 'sd=HalfNormal(sigma=5)' or "
                          "--prior 'Days=Normal(mu=0, sigma=20)'; repeatable")  # fmt: skip
    fit.add_argument("--no-compare", action="store_true",
                     help="skip the comparison with REML and the classical models")  # fmt: skip
    fit.add_argument("--residual", metavar="STRUCTURE",
                     help="correlated residuals, as nlme's correlation=: 'ar1(Days | Subject)' "
                          "(AR(1) over whole-number times within groups), 'ar1(1 | Subject)' "
                          "(in the rows' order) or 'cs(Subject)' (compound symmetry)")  # fmt: skip
    fit.add_argument("--se", metavar="COLUMN",
                     help="known standard errors (meta-analysis, e.g. eight schools; brms "
                          "'y | se(COLUMN)', metafor's sei): row i's residual is N(0, se_i^2) "
                          "with se_i from COLUMN, no residual SD estimated; fitted by REML "
                          "(bl.lmer(..., se=)) and NUTS (bl.LMM(..., se=)), without the "
                          "comparisons; Gaussian only")  # fmt: skip
    fam = fit.add_argument_group("response family (binary and count outcomes)")
    fam.add_argument("--family", choices=FAMILY_CHOICES, default="gaussian",
                     help="the response's distribution (%(default)s). Non-Gaussian: fitted "
                          "by maximum likelihood (bl.glmer, as lme4's glmer / glmer.nb) and "
                          "by NUTS (bl.LMM(..., family=...); negative_binomial samples theta), "
                          "summaries printed and written as CSV, the comparison models, "
                          "glmer's likelihood-ratio tests of the random effects and the HTML "
                          "report")  # fmt: skip
    fam.add_argument("--link", choices=LINK_CHOICES,
                     help="link function (default: the family's: logit for bernoulli and "
                          "binomial, which take logit, probit, cloglog; log for poisson and "
                          "negative_binomial, which take log, identity)")  # fmt: skip
    fam.add_argument("--weights", metavar="COLUMN",
                     help="binomial trials of a proportion response (a column of the data); "
                          "cbind(successes, failures) needs none")  # fmt: skip
    fam.add_argument("--offset", metavar="COLUMN",
                     help="a column added to the linear predictor (e.g. log exposure), as "
                          "offset(COLUMN) in the formula")  # fmt: skip
    _add_random_comparison_option(fit)
    _add_sampling_options(fit)
    _add_common(fit)

    demo = sub.add_parser(
        "demo",
        help="run the tutorial's classroom analysis on the shipped data",
        description=f"Fit {DEMO['formula']!r} to the shipped classroom data (60 pupils, "
        "3 classrooms), compare it with the seven classical models and write the report; "
        f"then the binary example, {DEMO_BINARY['formula']!r} (Bernoulli) on VerbAgg's "
        f"yes/no answers of its first {DEMO_BINARY['people']} people to 24 items, by glmer "
        "and NUTS (at most 1000 draws and tuning steps per chain), with its comparison, "
        "shrinkage and random-effects choice, in OUT/binary (--no-binary skips it).",
    )
    demo.add_argument("--out", default="bayeslmm_demo", help="output directory (%(default)s)")
    demo.add_argument("--no-binary", action="store_true",
                      help="skip the binary example (about a minute)")  # fmt: skip
    # 3 classrooms leave the random-slope SD weakly identified: longer chains, smaller steps
    # (at 0.95 one seed in five gave a divergent transition; at 0.99 none did, in 2 s each)
    _add_sampling_options(demo, draws=3000, tune=3000, target_accept=0.99)
    _add_random_comparison_option(demo)
    _add_common(demo)

    data = sub.add_parser("datasets", help="list the shipped datasets",
                          description="List the datasets shipped with bayeslmm.")  # fmt: skip
    _add_common(data)
    return parser


PARQUET = (".parquet", ".pq", ".parq")


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def _is_parquet(path: str) -> bool:
    """A Parquet file, a glob, or a directory holding Parquet files."""
    file = Path(path)
    if file.is_file() or file.suffix.lower() in PARQUET:
        return file.suffix.lower() in PARQUET
    if _is_glob(path):
        return True
    return file.is_dir() and any(p.suffix.lower() in PARQUET for p in file.rglob("*"))


def _read_data(paths: str | Sequence[str]):
    """A CSV file, the name of a shipped data set when no such file exists, or Parquet
    data as a Dask DataFrame (several paths, a glob, a directory, .parquet files)."""
    from ..datasets import _ALIASES, list_datasets, load_dataset

    paths = [paths] if isinstance(paths, str) else list(paths)
    if len(paths) > 1 or _is_parquet(paths[0]):
        return _read_parquet(paths)
    path = paths[0]
    file = Path(path)
    if file.is_dir():
        raise DataError(f"data {path!r} is a directory, not a CSV file (nor a directory of "
                        "Parquet files)")  # fmt: skip
    if not file.is_file():
        if path in list_datasets() or path in _ALIASES:
            return load_dataset(path)
        raise DataError(f"data file {path!r} does not exist (nor is it a shipped dataset: "
                        f"{', '.join(list_datasets())})")  # fmt: skip
    try:
        frame = _read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path!r} as CSV: {err}") from err
    except OSError as err:
        raise DataError(f"cannot read {path!r}: {err.strerror or err}") from err
    if frame.empty:
        raise DataError(f"data file {path!r} has no rows")
    return frame


def _hidden(path: Path, root: Path) -> bool:
    """Files Parquet readers skip in a directory: names starting with ``.`` or ``_``
    (``_metadata``, ``_SUCCESS``, ``.crc``) anywhere below ``root``."""
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _parquet_files(paths: list[str]) -> list[Path]:
    """Every file the paths name (directories searched, globs expanded); raises
    :class:`DataError` naming the files that are not Parquet, rather than skip them."""
    files: list[Path] = []
    for path in paths:
        if _is_glob(path):
            found = [Path(p) for p in sorted(glob.glob(path, recursive=True))]
            files += [p for p in found if p.is_file()]
        elif Path(path).is_dir():
            root = Path(path)
            files += [p for p in sorted(root.rglob("*")) if p.is_file() and not _hidden(p, root)]
        else:
            files.append(Path(path))
    other = [str(p) for p in files if p.suffix.lower() not in PARQUET]
    if other:
        more = f" and {len(other) - 5} more" if len(other) > 5 else ""
        raise DataError(
            f"{', '.join(map(repr, paths))} hold(s) files that are not Parquet "
            f"({', '.join(other[:5])}{more}); bayeslmm reads every file it is given, so "
            "name the Parquet files (e.g. 'dir/*.parquet') or move the others out (a CSV "
            "file is read alone)"
        )
    return files


def _check_parquet_columns(files: list[Path]) -> None:
    """Raise :class:`DataError` naming the file and the columns where the files' schemas
    (their metadata only) disagree on which columns they hold."""
    if len(files) < 2:
        return
    try:
        import pyarrow.parquet as pq
    except ImportError:  # another engine: Dask reports a mismatch itself
        return
    try:
        columns = {f: [n for n in pq.read_schema(f).names if not n.startswith("__")]
                   for f in files}  # fmt: skip
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read the Parquet metadata: {_one_line(err)}") from err
    union = list(dict.fromkeys(c for cols in columns.values() for c in cols))
    for file, cols in columns.items():
        missing = [c for c in union if c not in cols]
        if missing:
            holder = next(f for f, c in columns.items() if missing[0] in c)
            raise DataError(f"Parquet file {str(file)!r} lacks column(s) {missing} that "
                            f"{str(holder)!r} has: every file must hold the same columns")


def _read_parquet(paths: list[str]):
    """Parquet data as a lazy Dask DataFrame (nothing is read but the files' metadata)."""
    for path in paths:
        if _is_glob(path):
            if not glob.glob(path, recursive=True):
                raise DataError(f"no file matches {path!r}")
        elif not Path(path).exists():
            raise DataError(f"data file {path!r} does not exist")
        elif Path(path).is_file() and Path(path).suffix.lower() not in PARQUET:
            raise DataError(f"{path!r} is not a Parquet file (.parquet): several data paths "
                            "must all be Parquet files; a CSV file comes alone")  # fmt: skip
    try:
        import dask.dataframe as dd
    except ImportError as err:
        raise MissingDependencyError("reading Parquet data needs Dask: pip install "
                                     "'bayeslmm[dask]'") from err  # fmt: skip
    _check_parquet_columns(_parquet_files(paths))
    try:
        return dd.read_parquet(paths if len(paths) > 1 else paths[0])
    except (OSError, ValueError, TypeError) as err:
        raise DataError(f"cannot read {', '.join(map(repr, paths))} as Parquet: "
                        f"{_one_line(err)}") from err  # fmt: skip


@contextlib.contextmanager
def _scheduler(where: str | None) -> Iterator[None]:
    """Dask computes on ``where``: a scheduler's name, or a dask.distributed address."""
    if where is None:
        yield
        return
    try:
        import dask
    except ImportError as err:
        raise MissingDependencyError(
            "--scheduler needs Dask: pip install 'bayeslmm[dask]'"
        ) from err
    if where in ("threads", "processes", "synchronous", "sync", "single-threaded"):
        with dask.config.set(scheduler=where):
            yield
        return
    from distributed import Client

    try:
        client = Client(where, timeout=30)
    except (OSError, ValueError, TimeoutError) as err:
        raise DataError(f"--scheduler {where!r}: cannot reach a Dask scheduler there "
                        f"({_one_line(err)})") from err  # fmt: skip
    with client:
        yield


def _read_csv(file: Path) -> pd.DataFrame:
    """A CSV file, separated by commas, or by semicolons or tabs when the header says so;
    UTF-8 (with or without a byte-order mark), else Latin-1 for a text file."""
    head = file.open("rb").read(65536)
    encoding = "utf-8-sig"
    try:
        head.decode(encoding)
    except UnicodeDecodeError:
        if b"\x00" in head:  # not text at all
            raise
        encoding = "latin-1"
    first = head.decode(encoding, errors="replace").splitlines()[0] if head.strip() else ""
    sep = next((s for s in (",", ";", "\t") if s in first), ",")
    return pd.read_csv(file, sep=sep, encoding=encoding)


def _analyse(args: argparse.Namespace, data: pd.DataFrame, formula: str, priors: dict,
             term: str | None, compare_models: bool, title: str | None) -> Path:  # fmt: skip
    from ..bayes.model import LMM
    from ..bayes.settings import FitSettings
    from ..comparison.models import compare, comparison_setup
    from .report import prepare_output, report

    if not isinstance(data, pd.DataFrame):
        print(f"Computing the sums of {data.npartitions} Parquet partition(s) with Dask ...",
              file=sys.stderr)  # fmt: skip
    residual = getattr(args, "residual_structure", None)
    se = getattr(args, "se", None)  # the column is checked here, before any fit
    with warnings.catch_warnings(record=True) as caught:  # e.g. a 0/1 response as Gaussian
        warnings.simplefilter("always")
        model = LMM(formula, data, priors=priors or None, residual=residual, se=se)
    _print_warnings(caught, "the model")
    prepare_output(Path(args.out))  # before any fitting: a report that cannot be written
    comparison, why_not = None, None  # why_not: why the comparison is missing, if it is
    reml = None
    if se is not None:
        if compare_models:
            why_not, compare_models = ("No comparison with the classical models: they "
                                       "estimate a residual variance, and this model's "
                                       f"residual SDs are known (--se {se})."), False  # fmt: skip
        reml = _known_se_reml(formula, data, se)
    if compare_models and residual is not None:
        why_not, compare_models = ("No comparison with the classical models: they assume "
                                   "independent residuals, and this model's are correlated "
                                   f"({model.design.residual.describe()})."), False  # fmt: skip
    if compare_models:  # check before sampling: a bad --term must not cost a fit
        try:
            comparison_setup(model.design, term)
        except BayesLMMError as err:
            if term is not None:
                raise
            why_not, compare_models = f"No comparison with the classical models: {err}", False
    settings = FitSettings(
        draws=args.draws, tune=args.tune, chains=args.chains, random_seed=args.seed,
        sampler=args.sampler, target_accept=args.target_accept, progressbar=not args.no_progress,
        method=None if args.method == "auto" else args.method,
    )  # fmt: skip
    print(f"Fitting {model.formula} to {model.design.n_obs} rows ...", file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(**settings.kwargs())
    _print_warnings(caught, "the model")
    if compare_models:
        print("Fitting the comparison models ...", file=sys.stderr)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                comparison = compare(model, term=term, level=args.level,
                                     **settings.kwargs())  # the model's design and fit reused
            except BayesLMMError as err:
                why_not = f"No comparison with the classical models: {err}"
        _print_warnings(caught, "the comparison models")
    known = comparison.fits.values() if comparison is not None else ()
    if se is None:
        random_effects, random_note = _random_effects(args, model, settings, known)
    else:
        random_effects, random_note = None, (
            "No comparison of random-effects structures: its REML and Bayesian neighbours "
            f"are not fitted with known standard errors (--se {se}) yet.")  # fmt: skip
    if why_not:
        print(f"bayeslmm: note: {why_not}", file=sys.stderr)
    note = why_not or (
        None
        if comparison
        else "The comparison with the classical models was skipped (--no-compare)."
    )
    print("Writing the report ...", file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = report(
            model,
            comparison,
            args.out,
            title=title,
            comparison_note=note,
            random_effects=random_effects,
            random_effects_note=random_note,
            level=args.level,
            lmer=reml,
        )
    _print_warnings(caught, "the report")
    if files.failed:
        for name, why in files.failed.items():
            print(f"bayeslmm: warning: figure {name} not drawn: {why}", file=sys.stderr)
    return files.html


def _known_se_reml(formula: str, data: pd.DataFrame, se: str):
    """The REML fit with known standard errors (``bl.lmer(..., se=)``), printed."""
    from ..classical.lmer import lmer

    print(f"Fitting {formula} by REML with the known standard errors of column {se!r} ...",
          file=sys.stderr)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = lmer(formula, data, se=se)
    _print_warnings(caught, "the REML fit")
    print(repr(fit.summary()) + "\n")  # lmerTest's printed block
    return fit


def _family(args: argparse.Namespace):
    """The ``--family``/``--link`` pair checked (a link the family does not take is a
    :class:`~bayeslmm.spec.family.FamilyError` listing the ones it does), and the options
    that only some families take; before the data are read."""
    from ..spec.family import get_family

    family = get_family(args.family, args.link)
    if family.name == "gaussian":
        given = [o for o, v in (("--weights", args.weights), ("--offset", args.offset)) if v]
        if given:
            raise ArgumentError(f"{' and '.join(given)} are for the non-Gaussian families "
                                f"({', '.join(FAMILY_CHOICES[1:])}); the Gaussian fit takes "
                                "none")  # fmt: skip
        if family.link.name != "identity":
            raise ArgumentError(f"the gaussian family takes the identity link only here, not "
                                f"--link {family.link.name}")  # fmt: skip
        if args.se is not None and args.residual:
            raise ArgumentError("--se (known standard errors) and --residual cannot be "
                                "combined: the residuals' SDs are known and independent")
        return family
    if args.se is not None:
        raise ArgumentError(f"--se (known standard errors) is for Gaussian models; the "
                            f"{family.name} family has no residual SD")  # fmt: skip
    if args.residual:
        raise ArgumentError(f"--residual is for Gaussian models; the {family.name} family takes "
                            "none")  # fmt: skip
    if args.method == "marginal":
        raise ArgumentError(f"--method marginal integrates the random effects out in closed "
                            f"form, which only a Gaussian response allows; the {family.name} "
                            "family is sampled with explicit random effects (--method full, "
                            "or auto)")  # fmt: skip
    return family


def _write_csv(out: Path, name: str, table: pd.DataFrame, written: list[str]) -> None:
    table.to_csv(out / f"{name}.csv", index=False)
    written.append(f"{name}.csv")


def _analyse_glmm(args: argparse.Namespace, data, formula: str, priors: dict, family,
                  title: str | None = None) -> Path:  # fmt: skip
    """A non-Gaussian ``fit``: lme4's glmer (glmer.nb) by maximum likelihood, and the
    Bayesian GLMM where its family exists, both printed and written as CSV tables to
    ``--out``, with the comparison (unless ``--no-compare``) and the HTML report
    (:mod:`bayeslmm.present.glmm_report`); returns the report's path."""
    from ..bayes.glm_model import BAYES_FAMILIES
    from ..bayes.model import LMM
    from ..bayes.settings import FitSettings
    from ..classical.glmer import glmer
    from .report import prepare_output, report

    out = Path(args.out)
    options = {"weights": args.weights, "offset": args.offset}
    model = None
    if family.name in BAYES_FAMILIES:  # checks the response and priors before any fit
        model = LMM(formula, data, priors=priors or None, family=family, **options)
    elif priors:
        raise ArgumentError(f"--prior is for the Bayesian fit, which the {family.name} family "
                            "does not have yet (only glmer.nb's maximum-likelihood fit)")
    prepare_output(out)
    written: list[str] = []
    texts: list[str] = []
    ml = "glmer.nb" if family.negative_binomial else "glmer"
    print(f"Fitting {formula} ({family.name} family) by maximum likelihood ({ml}) ...",
          file=sys.stderr)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = glmer(formula, data, family=family, **options)
    _print_warnings(caught, f"the {ml} fit")
    texts.append(str(fit.summary()))
    print(texts[-1] + "\n")
    stats = {"family": str(fit.family), "n_obs": fit.design.n_obs, "AIC": fit.aic,
             "BIC": fit.bic, "logLik": fit.loglik, "deviance": fit.deviance,
             "df_resid": fit.df_resid, "singular": fit.singular,
             "converged": fit.converged}  # fmt: skip
    if family.negative_binomial:
        stats["theta"] = fit.nb_theta
    _write_csv(out, "glmer_fit", pd.DataFrame([stats]), written)
    _write_csv(out, "glmer_fixed_effects",
               fit.coefficients().rename_axis("term").reset_index(), written)  # fmt: skip
    _write_csv(out, "glmer_variance_components", fit.varcorr(), written)
    if fit.design.blocks:
        _write_csv(out, "glmer_random_effects",
                   pd.concat(fit.ranef(), names=["group"]).reset_index(), written)  # fmt: skip
    if model is None:
        print(f"bayeslmm: note: the Bayesian fit of the {family.name} family is not in "
              f"bayeslmm yet: only {ml}'s maximum-likelihood fit above", file=sys.stderr)
    else:
        settings = FitSettings(
            draws=args.draws, tune=args.tune, chains=args.chains, random_seed=args.seed,
            sampler=args.sampler, target_accept=args.target_accept,
            progressbar=not args.no_progress,
            method=None if args.method == "auto" else args.method,
        )  # fmt: skip
        print(f"Fitting {model.formula} ({family.name} family) by NUTS to "
              f"{model.design.n_obs} rows ...", file=sys.stderr)  # fmt: skip
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(**settings.kwargs())
        _print_warnings(caught, "the model")
        summary = model.summary(print_it=False, level=args.level)
        texts.append(str(summary))  # the lme4-like block, convergence verdict included
        print(texts[-1] + "\n")
        summary = summary.table
        conv = model.convergence
        table = summary.rename_axis("parameter").reset_index()
        _write_csv(out, "summary", table, written)
        fixed = summary.loc[summary["component"] == "fixed"].drop(columns="component")
        _write_csv(out, "fixed_effects", fixed.rename_axis("term").reset_index(), written)
        _write_csv(out, "variance_components", model.varcorr(level=args.level), written)
        cols = ["mean", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]
        convergence = summary[cols].rename_axis("parameter").reset_index()
        convergence["divergences"] = conv.divergences
        _write_csv(out, "convergence", convergence, written)
        if model.design.blocks:
            _write_csv(out, "random_effects",
                       pd.concat(model.ranef(level=args.level), names=["group"]).reset_index(),
                       written)  # fmt: skip
        print(f"bayeslmm: {'the sampler converged' if conv.ok else 'convergence PROBLEMS'}: "
              f"max R-hat {conv.max_rhat:.3f}, min bulk ESS {conv.min_ess_bulk:.0f}, "
              f"{conv.divergences} divergences", file=sys.stderr)  # fmt: skip
    comparison, why_not = None, "The comparison with the classical models was skipped " \
                                "(--no-compare)."  # fmt: skip
    if not args.no_compare:
        text, comparison, why_not = _compare_glmm(args, data, formula, family, model, out,
                                                  written)  # fmt: skip
        texts.append(text)
    known = [fit, *(comparison.fits.values() if comparison is not None else ())]
    bayes = model if getattr(args, "bayes_neighbours", True) else None
    if bayes is not None:
        known.append(bayes)  # its Bayesian neighbours are fitted as it was
    random_effects, random_note = _random_effects_glmm(args, data, formula, family, known, out,
                                                       written, bayes)  # fmt: skip
    if random_effects is not None:
        texts.append(str(random_effects))
    (out / "summary.txt").write_text("\n\n".join(t for t in texts if t) + "\n",
                                     encoding="utf-8")  # fmt: skip
    written.append("summary.txt")
    print(f"Tables written to {out.resolve()}: {', '.join(written)}")
    print("Writing the report ...", file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = report(model if model is not None else fit, comparison, out,
                       title=title, comparison_note=why_not, level=args.level,
                       glmer=fit if model is not None else None,
                       random_effects=random_effects,
                       random_effects_note=random_note)  # fmt: skip
    _print_warnings(caught, "the report")
    for name, why in files.failed.items():
        print(f"bayeslmm: warning: figure {name} not drawn: {why}", file=sys.stderr)
    return files.html


def _compare_glmm(args: argparse.Namespace, data, formula: str, family, model, out: Path,
                  written: list[str]):  # fmt: skip
    """The GLMM's comparison with the GLMs, aggregation, two-stage and glmer
    (:func:`bayeslmm.compare`, reusing the Bayesian fit), printed and written as
    ``comparison.csv`` and ``shrinkage.csv``: its text, the comparison and None, or "",
    None and why it could not be made (a one-line note says so too)."""
    from ..comparison.models import compare

    print("Fitting the comparison models ...", file=sys.stderr)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            comparison = compare(formula, data, term=args.term, bayes=model is not None,
                                 level=args.level, model=model, family=family,
                                 weights=args.weights, offset=args.offset)  # fmt: skip
    except BayesLMMError as err:
        print(f"bayeslmm: note: no comparison models: {err}", file=sys.stderr)
        return "", None, f"No comparison with the classical models: {err}"
    _print_warnings(caught, "the comparison models")
    table = comparison.table_at(args.level)
    ratio = table.attrs.get("ratio")
    shown = ["model", "estimate", "se", "ci_lower", "ci_upper", "p_value"]
    shown += ["exp_estimate", "exp_ci_lower", "exp_ci_upper"] if ratio else []
    shown += ["note"]
    text = (f"Comparison for {comparison.setup.term!r} ({family.link.name} scale"
            + (f"; exp_*: the {ratio}" if ratio else "") + "):\n"
            + table[[c for c in shown if c in table]].to_string(index=False))
    print(text + "\n")
    _write_csv(out, "comparison", table, written)
    _write_csv(out, "shrinkage", comparison.shrinkage(), written)
    return text, comparison, None


def _random_effects_glmm(args: argparse.Namespace, data, formula: str, family, known: list,
                         out: Path, written: list[str], model=None):  # fmt: skip
    """A binary or count model's comparison with simpler random-effects structures (glmer's
    likelihood-ratio tests, :func:`bayeslmm.compare_random_effects` with ``family=``; the
    fits in ``known`` reused; with the Bayesian ``model``, its neighbours fitted by NUTS
    with its settings, as the Gaussian command does: Bayes factors and leave-one-out),
    printed and written as ``random_effects_comparison.csv``; or None and why there is
    none."""
    from ..comparison.random_effects import compare_random_effects

    if args.no_random_comparison:
        return None, "The comparison of random-effects structures was skipped " \
                     "(--no-random-comparison)."  # fmt: skip
    print("Comparing simpler random-effects structures (glmer, maximum likelihood"
          + ("; Bayesian neighbours by NUTS" if model is not None else "") + ") ...",
          file=sys.stderr)  # fmt: skip
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = compare_random_effects(formula, data, family=family.name,
                                            link=family.link.name, weights=args.weights,
                                            offset=args.offset, fits=known,
                                            bayes=True if model is not None else None)  # fmt: skip
    except BayesLMMError as err:
        print(f"bayeslmm: note: no random-effects comparison: {err}", file=sys.stderr)
        return None, f"No comparison of random-effects structures: {err}"
    _print_warnings(caught, "the random-effects comparison")
    print(str(result) + "\n")
    print(f"bayeslmm: {result.summary}", file=sys.stderr)
    _write_csv(out, "random_effects_comparison", result.table, written)
    return result, None


def _random_effects(args: argparse.Namespace, model, settings, known=()):
    """The comparison with simpler random-effects structures, or why there is none
    (``known``: the comparison's fits, whose REML fits of the model and its neighbours are
    reused)."""
    from ..comparison.random_effects import compare_random_effects

    if getattr(args, "no_random_comparison", False):
        return None, "The comparison of random-effects structures was skipped " \
                     "(--no-random-comparison)."  # fmt: skip
    print("Comparing simpler random-effects structures ...", file=sys.stderr)
    result, note = None, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = compare_random_effects(model, fits=known, **settings.kwargs())
        except BayesLMMError as err:
            note = f"No comparison of random-effects structures: {err}"
    _print_warnings(caught, "the random-effects comparison")
    if result is not None:
        print(f"bayeslmm: {result.summary}", file=sys.stderr)
    return result, note


def _demo_binary(args: argparse.Namespace) -> Path:
    """The demo's binary example (:data:`DEMO_BINARY`) in ``OUT/binary``: glmer and the
    Bayesian Bernoulli GLMM, the comparison and shrinkage, the random-effects choice and
    the report, as ``bayeslmm fit ... --family bernoulli`` writes them."""
    from ..datasets import load_dataset
    from ..spec.family import get_family

    spec = DEMO_BINARY
    data = load_dataset(spec["dataset"])
    people = pd.unique(data["id"])[: spec["people"]]
    data = data[data["id"].isin(people)]
    draws, tune = min(args.draws, spec["draws"]), min(args.tune, spec["draws"])
    print(f"\nThe binary example: {spec['formula']} (Bernoulli: r2 is Y or N, whether a "
          f"person would want to or would do a verbally aggressive thing, item by item) on "
          f"VerbAgg's first {len(people)} of 316 people ({len(data)} rows, 24 items each); "
          f"{args.chains} chains x {draws} draws after {tune} tuning steps; report in "
          f"{Path(args.out) / 'binary'}", file=sys.stderr)  # fmt: skip
    binary = argparse.Namespace(**{
        **vars(args), "out": str(Path(args.out) / "binary"), "draws": draws, "tune": tune,
        "target_accept": None, "method": "auto", "weights": None, "offset": None,
        "no_compare": False, "term": None, "bayes_neighbours": False,
    })  # fmt: skip
    return _analyse_glmm(binary, data, spec["formula"], {}, get_family("bernoulli"),
                         spec["title"])  # fmt: skip


def _print_warnings(caught: list[warnings.WarningMessage], where: str) -> None:
    """bayeslmm's own warnings, each once, without file and line noise."""
    seen = set()
    for w in caught:
        if not issubclass(w.category, BayesLMMWarning):
            continue  # third-party noise (deprecations, ArviZ's notices)
        text = str(w.message)
        if text not in seen:
            seen.add(text)
            print(f"bayeslmm: warning ({where}, {w.category.__name__}): {text}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    if args.command == "datasets":
        from ..datasets import describe_datasets

        for row in describe_datasets().itertuples(index=False):
            alias = f" (alias {row.alias})" if row.alias else ""
            print(f"{row.name}{alias}: {row.rows} rows; columns {row.columns}\n"
                  f"    {row.description}\n"
                  f"    try: bayeslmm fit {row.alias or row.name} \"{row[5]}\"\n")  # fmt: skip
        return 0
    if args.command == "demo":
        from ..datasets import load_dataset

        data = load_dataset(DEMO["dataset"])
        html = _analyse(args, data, DEMO["formula"], {}, "edu", True, DEMO["title"])
        if not args.no_binary:
            binary = _demo_binary(args)
            print(f"The binary example's report written to {binary.resolve()}")
    else:
        family = _family(args)
        priors = dict(parse_prior(text) for text in args.prior)
        args.residual_structure = parse_residual(args.residual) if args.residual else None
        data = _read_data(args.data)
        if args.scheduler is not None and isinstance(data, pd.DataFrame):
            raise DataError("--scheduler is for Parquet data (read with Dask); the data are "
                            "a CSV file, fitted in memory")  # fmt: skip
        with _scheduler(args.scheduler):
            if family.name != "gaussian":
                html = _analyse_glmm(args, data, args.formula, priors, family)
            else:
                html = _analyse(args, data, args.formula, priors, args.term,
                                not args.no_compare, None)  # fmt: skip
    print(f"Report written to {html.resolve()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")  # the command only writes files: never open a window
    if args.debug:
        return _run(args)
    try:
        return _run(args)
    except BayesLMMError as err:  # the whole message: a formula error draws a caret under it
        print(f"bayeslmm: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bayeslmm: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # not bad input: a bug, or the machine (memory, disk)
        print(f"bayeslmm: error: {type(err).__name__}: {_one_line(err)} (bayeslmm did not "
              "expect this; --debug shows the traceback)", file=sys.stderr)  # fmt: skip
        return 1


def _one_line(err: BaseException) -> str:
    """An error's message on one line (a formula error's caret drawing dropped)."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else err
    return str(text).splitlines()[0] if str(text) else type(err).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

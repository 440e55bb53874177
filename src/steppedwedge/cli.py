"""Command-line interface: ``steppedwedge`` (also ``python -m steppedwedge``).

A thin shell over the public API: it parses arguments, calls the library and prints text or
JSON.  :func:`main` takes ``argv`` and returns the exit code, so it is testable without a
subprocess.

Commands
--------
``steppedwedge design``
    Build a design from a CSV of start dates (``--start-dates``) or the bundled example
    (``--example councils``); print its summary, optionally plot it (``--plot``) and save
    it as CSV (``--csv``).
``steppedwedge randomise``
    Allocate the clusters of a CSV (``--clusters``) to the waves of a stepped-wedge design,
    with strata and balance options, or exactly as a ``trial.toml`` says (``--config``);
    write the allocation record (``-o``, JSON or CSV).
``steppedwedge report``
    Build the trial report (Markdown, self-contained HTML, figures, allocation record) from
    a ``trial.toml`` or ``--example councils`` into a folder (``-o``); ``--init data.csv``
    writes a commented ``trial.toml`` template for the data instead.
``steppedwedge validate``
    Check a ``trial.toml`` (keys, types, values, files, columns, allocation record) without
    running anything; every problem is printed on its own line.

Every user error (a bad option, file, column or configuration key) prints one line starting
``steppedwedge COMMAND: error:`` and exits with status 2; an internal error exits with
status 1, with its traceback only under ``--debug``.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ._version import __version__
from .exceptions import DesignError, OptionError, SteppedWedgeError, SteppedWedgeWarning

__all__ = ["main"]

EXAMPLES = ("councils",)


class _UsageError(Exception):
    """A command-line usage error (exit status 2, one line)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors raised instead of printed."""

    def error(self, message: str) -> Any:
        raise _UsageError(self.prog, f"{message} (see `{self.prog} --help`)")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"the seed must be a non-negative integer; got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"the seed must be a non-negative integer; got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="steppedwedge",
        description="Design, randomise, power and analyse stepped-wedge cluster randomised trials.",
    )
    p.add_argument("--version", action="version", version=f"steppedwedge {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _add_design(sub.add_parser("design", help="build and show a design from start dates"))
    _add_randomise(sub.add_parser("randomise", help="randomise clusters to the waves of a design"))
    _add_report(sub.add_parser("report", help="build the trial report"))
    val = sub.add_parser("validate", help="check a trial.toml without running it")
    val.add_argument("config", metavar="TRIAL.toml", help="trial configuration")
    return p


def _add_design(d: argparse.ArgumentParser) -> None:
    """Options of ``steppedwedge design``."""
    src = d.add_mutually_exclusive_group(required=True)
    src.add_argument("--start-dates", metavar="CSV", help="CSV with columns cluster,start_date")
    src.add_argument("--example", choices=EXAMPLES, help="use a bundled example")
    d.add_argument("--periods", help='period grid "first/last", e.g. 2022Q1/2026Q4')
    d.add_argument(
        "--transition",
        default="first-treated",
        choices=("first-treated", "partial", "exclude"),
        help="value of the period containing a start date (default: first-treated)",
    )
    order = d.add_mutually_exclusive_group()
    order.add_argument(
        "--dayfirst",
        dest="dayfirst",
        action="store_const",
        const=True,
        help="read non-ISO dates day first: 01/07/2024 is 1 July (UK)",
    )
    order.add_argument(
        "--monthfirst",
        dest="dayfirst",
        action="store_const",
        const=False,
        help="read non-ISO dates month first: 07/01/2024 is 1 July (US)",
    )
    order.add_argument(
        "--date-format",
        metavar="FMT",
        help="exact strptime format of the start dates, e.g. %%d/%%m/%%Y "
        "(default: ISO 8601, YYYY-MM-DD)",
    )
    d.add_argument("--plot", metavar="PNG", help="write the design diagram to this PNG file")
    d.add_argument("--csv", metavar="CSV", help="write the design in long format to this CSV")


def _add_randomise(r: argparse.ArgumentParser) -> None:
    """Options of ``steppedwedge randomise``."""
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--clusters", metavar="CSV", help="one row per cluster (label + covariates)")
    src.add_argument("--example", choices=EXAMPLES, help="use a bundled example")
    src.add_argument(
        "--config",
        metavar="TRIAL.toml",
        help="randomise exactly as the report of this configuration does (its design, "
        "clusters, strata, balance and seed); the record it writes can be cited as "
        "[randomisation] record",
    )
    r.add_argument("--cluster-column", default="cluster", help="label column (default: cluster)")
    r.add_argument("--waves", type=int, help="number of waves (sequences) of a standard design")
    r.add_argument(
        "--clusters-per-wave",
        metavar="N,N,...",
        help="clusters in each wave (default: as even as possible, earlier waves larger)",
    )
    r.add_argument("--strata", help="column to stratify by")
    r.add_argument("--balance", metavar="COL,COL", help="covariates to balance on")
    r.add_argument("--cutoff", type=float, help="keep this best fraction of allocations (0, 1]")
    r.add_argument(
        "--seed", type=_seed, help="random seed (recorded; required unless --config gives it)"
    )
    r.add_argument("-o", "--output", metavar="FILE", help="write the record (.json or .csv)")


def _add_report(rep: argparse.ArgumentParser) -> None:
    """Options of ``steppedwedge report``."""
    src = rep.add_mutually_exclusive_group(required=True)
    src.add_argument("config", nargs="?", metavar="TRIAL.toml", help="trial configuration")
    src.add_argument("--example", choices=EXAMPLES, help="use a bundled example")
    src.add_argument(
        "--init",
        metavar="DATA.csv",
        help="write a commented trial.toml template for this CSV (to -o, default trial.toml)",
    )
    rep.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="output folder (default: report); with --init the template file",
    )
    rep.add_argument(
        "--pdf",
        action="store_true",
        help="also write report.pdf (needs the pdf extra: pip install 'steppedwedge[pdf]')",
    )


def _design(args: argparse.Namespace) -> int:
    from .design import Design

    if args.example:
        from .datasets import load_council_characteristics

        starts = load_council_characteristics().set_index("council")["start_date"]
        design = Design.from_start_dates(
            starts, args.periods or "2022Q1/2026Q4", transition=args.transition
        )
    else:
        if not args.periods:
            raise SteppedWedgeError("`--periods` is required with `--start-dates`.")
        frame = _read_csv(args.start_dates, "--start-dates")
        if frame.shape[1] != 2:
            raise SteppedWedgeError(
                f"{args.start_dates} must have two columns (cluster, start date); "
                f"got {list(frame.columns)}."
            )
        try:
            design = Design.from_start_dates(
                frame,
                args.periods,
                transition=args.transition,
                dayfirst=args.dayfirst,
                date_format=args.date_format,
            )
        except DesignError as exc:
            if "dayfirst" not in str(exc):
                raise
            raise DesignError(
                f"{exc} On the command line: --dayfirst, --monthfirst or --date-format FMT."
            ) from None
    print(design.summary())
    if args.csv:
        design.to_frame().to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if args.plot:
        _save_plot(design, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _read_csv(path: str, flag: str, *, text: bool = True) -> pd.DataFrame:
    """Read a CSV named on the command line, with messages that say what is wrong."""
    file = Path(path)
    if file.is_dir():
        raise SteppedWedgeError(f"`{flag}` {path!r} is a folder; give the path of a CSV file.")
    if not file.exists():
        raise SteppedWedgeError(f"`{flag}` file {path!r} does not exist.")
    try:
        # dates are read as text, so that the library (not pandas) decides how to read them
        frame = pd.read_csv(file, dtype=str) if text else pd.read_csv(file)
    except pd.errors.EmptyDataError:
        raise SteppedWedgeError(f"`{flag}` file {path!r} is empty.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SteppedWedgeError(f"`{flag}` file {path!r} is not a readable CSV: {exc}") from None
    if frame.empty:
        raise SteppedWedgeError(f"`{flag}` file {path!r} has a header but no rows.")
    return frame


def _save_plot(design: object, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = getattr(design, "n_clusters", 10)
    fig, ax = plt.subplots(figsize=(9.0, min(2.0 + 0.28 * n, 14.0)))
    design.plot(ax=ax)  # type: ignore[attr-defined]
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def _randomise(args: argparse.Namespace) -> int:
    from .design import Design
    from .randomise import randomise

    if args.config:
        return _randomise_config(args)
    if args.seed is None:
        raise OptionError("`--seed` is required (a non-negative integer, recorded).")
    if args.example:
        from .report import council_example
        from .report.build import planned_design

        cfg = council_example()
        template = planned_design(cfg)
        clusters = cfg.clusters.rename(columns={cfg.cluster_column: "cluster"})
        strata = args.strata if args.strata is not None else cfg.strata
        balance = _split(args.balance) or list(cfg.balance)
        cutoff = args.cutoff if args.cutoff is not None else cfg.cutoff
    else:
        frame = _read_csv(args.clusters, "--clusters", text=False)
        if args.cluster_column not in frame.columns:
            raise SteppedWedgeError(
                f"{args.clusters} has no column {args.cluster_column!r}; columns are "
                f"{list(frame.columns)} (use --cluster-column)."
            )
        clusters = frame.rename(columns={args.cluster_column: "cluster"})
        n = len(clusters)
        if args.clusters_per_wave:
            sizes = [int(s) for s in _split(args.clusters_per_wave)]
        elif args.waves:
            base, extra = divmod(n, args.waves)
            sizes = [base + (1 if w < extra else 0) for w in range(args.waves)]
        else:
            raise SteppedWedgeError("give `--waves` or `--clusters-per-wave`.")
        if sum(sizes) != n:
            raise SteppedWedgeError(
                f"`--clusters-per-wave` adds up to {sum(sizes)} but {args.clusters} has "
                f"{n} clusters."
            )
        template = Design.stepped_wedge(len(sizes), sizes)
        strata, balance, cutoff = args.strata, _split(args.balance), args.cutoff
    kwargs: dict[str, object] = {}
    if strata:
        kwargs["strata"] = strata
    if balance:
        kwargs["balance"] = balance
        kwargs["cutoff"] = cutoff
    allocation = randomise(template, clusters, rng=args.seed, **kwargs)  # type: ignore[arg-type]
    print(allocation.summary())
    if args.output:
        _write_record(allocation, Path(args.output))
    return 0


def _randomise_config(args: argparse.Namespace) -> int:
    from .report import TrialConfig

    given = [f for f, v in (("--strata", args.strata), ("--balance", args.balance)) if v]
    given += [f for f, v in (("--cutoff", args.cutoff), ("--waves", args.waves)) if v is not None]
    if given:
        raise OptionError(
            f"{', '.join(given)} cannot be combined with `--config`: the configuration "
            "says how to randomise."
        )
    cfg = TrialConfig.from_toml(args.config)
    if args.seed is not None and args.seed != cfg.seed:
        raise OptionError(
            f"`--seed` {args.seed} differs from the seed {cfg.seed} of {args.config}; "
            "leave `--seed` out (the configuration gives it)."
        )
    allocation = cfg.allocation()
    print(allocation.summary())
    if args.output:
        _write_record(allocation, Path(args.output))
    return 0


def _write_record(allocation: Any, out: Path) -> None:
    try:
        if out.suffix.lower() == ".csv":
            allocation.to_frame().to_csv(out, index=False)
        else:
            out.write_text(allocation.to_json() + "\n", encoding="utf-8")
    except OSError as exc:
        raise OptionError(f"cannot write {str(out)!r}: {exc.strerror or exc}.") from None
    print(f"wrote {out}")


def _report(args: argparse.Namespace) -> int:
    if args.init:
        return _init(args)
    from .report import TrialConfig, build_report, council_example

    output = Path(args.output or "report")
    if output.exists() and not output.is_dir():
        raise OptionError(f"`-o` {str(output)!r} is a file; give a folder for the report.")
    cfg = council_example() if args.example else TrialConfig.from_toml(args.config)
    report = build_report(cfg)
    try:
        written = report.write(output, pdf=args.pdf)
    except OSError as exc:
        raise OptionError(
            f"cannot write the report to {str(output)!r}: {exc.strerror or exc}."
        ) from None
    print(f"{report.title}")
    for sec in report.sections:
        print(f"  - {sec.title}")
    print(f"wrote {len(written)} files to {output}/ (open {output / 'report.html'})")
    return 0


def _init(args: argparse.Namespace) -> int:
    from .report.template import init_template

    out = Path(args.output or "trial.toml")
    if out.is_dir():
        raise OptionError(f"`-o` {str(out)!r} is a folder; give the path of the new trial.toml.")
    if out.exists():
        raise OptionError(f"{str(out)!r} exists; remove it or give another file with `-o`.")
    try:
        text = init_template(args.init, relative_to=out.parent)
    except OptionError as exc:
        raise OptionError(f"`--init` {exc}") from None
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OptionError(f"cannot write {str(out)!r}: {exc.strerror or exc}.") from None
    print(f"wrote {out}: check it, then `steppedwedge validate {out}`")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .report import TrialConfig
    from .report.schema import ConfigError

    try:
        cfg = TrialConfig.from_toml(args.config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"steppedwedge validate: error: {_one_line(str(issue))}", file=sys.stderr)
        return 2
    parts = [f"{cfg.n_clusters} clusters in {len(cfg.wave_starts)} waves"]
    if cfg.record is not None:
        parts.append(f"allocation record {cfg.record_source} verified")
    if cfg.data is not None:
        parts.append(f"data {cfg.data.source}: {len(cfg.data.frame)} rows")
    if cfg.analysis is not None:
        parts.append(
            f"primary {cfg.analysis.family} `{cfg.analysis.random}` + "
            f"{len(cfg.analysis.sensitivity)} sensitivity analyses"
        )
    print(f"{args.config}: valid ({'; '.join(parts)})")
    if cfg.data is not None and cfg.data.treatment is not None:
        deviations = cfg.treatment_deviations()
        if len(deviations):
            clusters = sorted({str(c) for c in deviations["cluster"]})
            print(
                f"warning: the data's treatment column `{cfg.data.treatment}` differs from the "
                f"allocation in {len(deviations)} cluster-periods ({len(clusters)} clusters: "
                f"{', '.join(clusters[:5])}{', ...' if len(clusters) > 5 else ''}): the report "
                "lists them as deviations; if the allocation is not the trial's, check the "
                "seed or give the allocation record.",
                file=sys.stderr,
            )
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    User errors (a bad option, file, column or configuration key: any
    :class:`~steppedwedge.SteppedWedgeError`) print one line naming what to fix to stderr and
    return 2; an internal error returns 1, with its traceback only under ``--debug``.
    Library warnings are printed as ``warning: ...`` lines.

    Examples
    --------
    >>> from steppedwedge.cli import main
    >>> main(["--version"])  # doctest: +SKIP
    steppedwedge 0.1.0.dev0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except _UsageError as exc:
        print(f"{exc.prog}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    handlers = {"design": _design, "randomise": _randomise, "report": _report}
    handlers["validate"] = _validate
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SteppedWedgeWarning)
        try:
            code = handlers[args.command](args)
        except (SteppedWedgeError, FileNotFoundError) as exc:
            print(f"steppedwedge {args.command}: error: {_one_line(str(exc))}", file=sys.stderr)
            code = 2
        except Exception as exc:  # an internal error: a bug to report, not a user error
            if args.debug:
                traceback.print_exc()
            print(
                f"steppedwedge {args.command}: internal error: {type(exc).__name__}: "
                f"{_one_line(str(exc))[:300]} (rerun with --debug for the traceback, and "
                "please report it)",
                file=sys.stderr,
            )
            code = 1
    for w in caught:
        if issubclass(w.category, SteppedWedgeWarning):
            print(f"warning: {_one_line(str(w.message))}", file=sys.stderr)
        else:  # pass on anything that is not ours unchanged
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return code

"""``blis plot SUMMARY.parquet``: line plots of a sweep's summary table (matplotlib, Agg).

One subplot per ``--y`` metric (and one row per value of ``--facet``), one line
per value of ``--by``; replicates (every other column, e.g. ``seed``) are
aggregated per x value (``--agg mean`` by default) with their min-max range
shaded.  Examples::

    # p90/p99 TTFT vs rate, one line per routing policy, at 4 instances
    blis plot out/summary.parquet --x rate --y ttft_p90_ms,ttft_p99_ms --by routing-policy \\
        --where num-instances=4 --out ttft.png
    # throughput vs instances, one row of plots per rate
    blis plot out/summary.parquet --x num-instances --y responses_per_sec --by routing-policy \\
        --facet rate --out throughput.png

When a swept column other than x, by, facet and ``seed`` varies within a line, the
plot says so on stderr (the line then averages over it): narrow it with ``--where``.
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from blis.errors import BlisError

FORMATS = (".png", ".svg", ".pdf")
AGGS = ("mean", "median", "min", "max")


class PlotError(BlisError):
    """Bad plot request (unknown column, empty selection, ...)."""


def _cols(text: Optional[str]) -> List[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def _check_col(df, name: str, flag: str) -> None:
    if name not in df.columns:
        close = difflib.get_close_matches(name, df.columns, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PlotError(f"{flag}: column must be in the summary, got {name!r}{hint}; "
                        f"valid: {', '.join(df.columns)}")


def _parse_value(df, col: str, text: str):
    import polars as pl

    dt = df.schema[col]
    try:
        if dt == pl.Boolean:
            low = text.lower()
            if low not in ("true", "false", "1", "0"):
                raise ValueError
            return low in ("true", "1")
        if dt.is_integer():
            f = float(text)
            return int(f) if f.is_integer() else f
        if dt.is_float():
            return float(text)
    except ValueError:
        raise PlotError(f"--where: value of {col} must be a {dt}, got {text!r}") from None
    return text


def apply_where(df, clauses: Sequence[str]):
    """``col=v`` or ``col=v1,v2`` filters (all must hold)."""
    import polars as pl

    for clause in clauses:
        if "=" not in clause:
            raise PlotError(f"--where: must be column=value[,value...], got {clause!r}")
        col, vals = clause.split("=", 1)
        col = col.strip()
        _check_col(df, col, "--where")
        values = [_parse_value(df, col, v.strip()) for v in vals.split(",")]
        df = df.filter(pl.col(col).is_in(values))
    return df


def sweep_axes(path: Path) -> List[str]:
    """The swept columns recorded in a summary written by ``blis sweep`` ([] otherwise)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"blis.sweep")
    if not raw:
        return []
    try:
        return list(json.loads(raw).get("axes", []))
    except ValueError:
        return []


def _label(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def plot_summary(summary: Path, x: str, y: Sequence[str], out: Path, by: Sequence[str] = (),
                 facet: Optional[str] = None, where: Sequence[str] = (), agg: str = "mean",
                 band: bool = True, logx: bool = False, logy: bool = False,
                 title: Optional[str] = None, dpi: int = 120) -> Path:
    """Draw the plot and write it to ``out`` (atomically); returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    summary, out = Path(summary), Path(out)
    if out.suffix.lower() not in FORMATS:
        raise PlotError(f"--out: file name must end in one of {', '.join(FORMATS)}, got {str(out)!r}")
    if not out.parent.is_dir():
        raise PlotError(f"--out: folder must exist, got {str(out.parent)!r}")
    if agg not in AGGS:
        raise PlotError(f"--agg: must be one of the valid aggregations, got {agg!r}; valid: {', '.join(AGGS)}")
    if not y:
        raise PlotError("--y: must name at least one metric column, got ''")
    try:
        df = pl.read_parquet(summary)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise PlotError(f"{summary}: must be a readable Parquet summary ({e})") from None
    _check_col(df, x, "--x")
    for c in y:
        _check_col(df, c, "--y")
        if not df.schema[c].is_numeric():
            raise PlotError(f"--y: column must be numeric, got {c!r} ({df.schema[c]})")
    for c in by:
        _check_col(df, c, "--by")
    if facet:
        _check_col(df, facet, "--facet")
    df = apply_where(df, where)
    if df.height == 0:
        raise PlotError("--where: selects no rows of the summary; loosen the filters")

    keys = ([facet] if facet else []) + list(by) + [x]
    varying = []
    for a in sweep_axes(summary):
        if a in keys or a == "seed" or a not in df.columns:
            continue
        if df.group_by(keys).agg(pl.col(a).n_unique().alias("n"))["n"].max() > 1:
            varying.append(a)
    if varying:
        sys.stderr.write(f"blis plot: note: {', '.join(varying)} varies within each line and is aggregated "
                         f"({agg}); use --where, --by or --facet to separate it\n")

    facet_vals = sorted(df[facet].unique().to_list()) if facet else [None]
    nrows, ncols = len(facet_vals), len(y)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False)
    x_is_num = df.schema[x].is_numeric()
    x_cats = sorted(df[x].unique().to_list()) if not x_is_num else None
    x_ticks = sorted(v for v in df[x].unique().to_list() if v is not None) if x_is_num else []
    aggfn = {"mean": pl.Expr.mean, "median": pl.Expr.median, "min": pl.Expr.min, "max": pl.Expr.max}[agg]
    for r, fv in enumerate(facet_vals):
        part = df if facet is None else df.filter(pl.col(facet) == fv)
        groups = (part.select(by).unique(maintain_order=False).sort(by).rows() if by else [()])
        for cidx, metric in enumerate(y):
            ax = axes[r][cidx]
            for g in groups:
                sel = part
                for col, val in zip(by, g):
                    sel = sel.filter(pl.col(col) == val)
                stats = (sel.group_by(x).agg(aggfn(pl.col(metric)).alias("v"),
                                             pl.col(metric).min().alias("lo"),
                                             pl.col(metric).max().alias("hi"), pl.len().alias("n"))
                         .sort(x))
                xs = stats[x].to_list()
                if not x_is_num:
                    xs = [x_cats.index(v) for v in xs]
                label = ", ".join(_label(v) for v in g) if by else metric
                line, = ax.plot(xs, stats["v"].to_list(), marker="o", label=label)
                if band and stats["n"].max() > 1:
                    ax.fill_between(xs, stats["lo"].to_list(), stats["hi"].to_list(),
                                    color=line.get_color(), alpha=0.15, linewidth=0)
            if not x_is_num:
                ax.set_xticks(range(len(x_cats)))
                ax.set_xticklabels([_label(v) for v in x_cats])
            elif len(x_ticks) <= 12:
                ax.set_xticks(x_ticks)
                ax.set_xticklabels([_label(v) for v in x_ticks])
                ax.minorticks_off()
            if logx and x_is_num:
                ax.set_xscale("log")
            if logy:
                ax.set_yscale("log")
            ax.set_xlabel(x)
            ax.set_ylabel(metric)
            ax.grid(True, alpha=0.3)
            sub = metric if facet is None else f"{metric} ({facet}={_label(fv)})"
            ax.set_title(sub, fontsize=10)
            if by:
                ax.legend(title=", ".join(by), fontsize=8, title_fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi, format=out.suffix[1:].lower())
        tmp.replace(out)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return out


# ---------------------------------------------------------------- command line
DESCRIPTION = ("Plot a sweep's summary.parquet: metrics (--y) against a column (--x), one line per "
               "--by value, replicates aggregated with their min-max range shaded.")


def _configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("summary", metavar="SUMMARY.parquet", help="summary.parquet written by blis sweep")
    p.add_argument("--x", required=True, help="x column, e.g. rate or num-instances")
    p.add_argument("--y", required=True, help="metric column(s), comma-separated: one subplot each, "
                                              "e.g. ttft_p90_ms,ttft_p99_ms")
    p.add_argument("--by", default="", help="column(s) whose values get one line each, e.g. routing-policy")
    p.add_argument("--facet", default=None, help="column whose values get one row of subplots each")
    p.add_argument("--where", action="append", default=[], metavar="COL=V[,V...]",
                   help="keep rows whose COL is one of the values (repeatable)")
    p.add_argument("--agg", default="mean", choices=AGGS, help="aggregate of the replicates (default mean)")
    p.add_argument("--no-band", action="store_true", help="do not shade the replicates' min-max range")
    p.add_argument("--logx", action="store_true", help="logarithmic x axis")
    p.add_argument("--logy", action="store_true", help="logarithmic y axis")
    p.add_argument("--title", default=None, help="figure title")
    p.add_argument("--dpi", type=int, default=120, help="resolution of PNG output (default 120)")
    p.add_argument("--out", required=True, help="output image: .png, .svg or .pdf")
    return p


def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Add ``plot`` to ``blis``'s subcommands; dispatch with :func:`run`."""
    p = subparsers.add_parser("plot", help="plot a sweep's summary.parquet", description=DESCRIPTION)
    _configure_parser(p)
    p.set_defaults(_run=run)
    return p


def run(ns: argparse.Namespace) -> int:
    try:
        out = plot_summary(Path(ns.summary), ns.x, _cols(ns.y), Path(ns.out), by=_cols(ns.by),
                           facet=ns.facet, where=ns.where, agg=ns.agg, band=not ns.no_band,
                           logx=ns.logx, logy=ns.logy, title=ns.title, dpi=ns.dpi)
    except BlisError as e:
        sys.stderr.write(f"blis plot: error: {e}\n")
        return 1
    except ImportError as e:
        sys.stderr.write(f"blis plot: error: matplotlib must be installed (pip install matplotlib), got {e}\n")
        return 1
    sys.stderr.write(f"blis plot: wrote {out}\n")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``blis plot ...`` without the ``plot`` word (``python -m blis.plot``)."""
    from blis.cli import _Parser

    p = _configure_parser(_Parser(prog="blis plot", description=DESCRIPTION))
    return run(p.parse_args(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

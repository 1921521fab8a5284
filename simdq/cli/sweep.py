"""`simdq sweep SWEEP.yaml`: estimate (and calibrate, emulate and parity-check) every point of a design space,
on Dask, into a resumable results store; a table of every point and Pareto charts."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import SimdqError
from .arguments import MAX_THREADS, integer

_SUFFIX_FORMATS = {".parquet": "parquet", ".csv": "csv", ".md": "markdown", ".txt": "table"}


def add_parser(commands) -> None:
    sweep = commands.add_parser("sweep", help="a design-space sweep: models x schemes x devices x batch on Dask, "
                                              "resumable, with Pareto charts")
    sweep.add_argument("sweep", metavar="SWEEP.yaml", help="base model.yaml and the axes to cross (see README)")
    where = sweep.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="an existing Dask cluster's scheduler (tcp://host:8786); default: a LocalCluster")
    where.add_argument("--workers", type=integer(0, MAX_THREADS), metavar="N",
                       help="LocalCluster worker processes (default: this machine's cores; 0: serial, no Dask)")
    sweep.add_argument("--store", metavar="DIR", default=".simdq-sweep",
                       help="results store: finished points, traces and artifacts (default .simdq-sweep)")
    sweep.add_argument("-o", "--output", metavar="FILE", help="write the table to FILE (.parquet, .csv, .md)")
    sweep.add_argument("--format", choices=("table", "markdown", "csv", "parquet"),
                       help="table format (default: from -o's suffix, else table); parquet needs -o")
    sweep.add_argument("--plot", metavar="FILE", help="Pareto charts: latency vs size, energy vs quality (pareto.png)")
    sweep.set_defaults(run=run_sweep)


def _need_sweep_extra() -> None:
    from importlib.util import find_spec

    missing = [module for module in ("pandas", "pyarrow") if find_spec(module) is None]
    if missing:
        raise SimdqError(f"simdq sweep needs {' and '.join(missing)}: pip install -e '.[sweep]'")


def _output_format(args) -> str:
    fmt = args.format or (_SUFFIX_FORMATS.get(Path(args.output).suffix.lower()) if args.output else None) or "table"
    if fmt == "parquet" and not args.output:
        raise SimdqError("--format parquet needs -o FILE (Parquet is not for a terminal)")
    return fmt


def _client(args):
    """A Dask client of a LocalCluster or of the cluster at --scheduler, or None for a serial run."""
    import os

    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if args.scheduler is None and workers == 0:
        return None
    from importlib.util import find_spec

    if find_spec("distributed") is None:
        raise SimdqError("simdq sweep on Dask needs dask and distributed: pip install -e '.[sweep]' "
                         "(or --workers 0 to run serially)")
    from ..sweep.run import connect, local_cluster

    return connect(args.scheduler) if args.scheduler else local_cluster(workers)


def run_sweep(args) -> int:
    _need_sweep_extra()
    from ..output import check_output_file
    from ..report.plots import check_plot_path
    from ..report.sweep import plot_pareto, render_sweep, write_sweep
    from ..sweep.plan import expand
    from ..sweep.progress import SweepProgress
    from ..sweep.run import run_dask, run_serial
    from ..sweep.spec import load_sweep
    from ..sweep.store import ResultStore
    from ..sweep.table import sweep_frame

    fmt = _output_format(args)
    if args.output:
        check_output_file(args.output, "-o")
    if args.plot:
        check_plot_path(args.plot)
    spec, folder = load_sweep(args.sweep)
    plan = expand(spec, folder, args.sweep)
    if not plan.points:
        raise SimdqError(f"{args.sweep}: every point is excluded ({plan.excluded} left out by exclude:)")
    store = ResultStore(args.store)
    client = _client(args)
    try:
        with SweepProgress(len(plan.points), enabled=sys.stderr.isatty()) as progress:
            outcome = run_serial(plan, store, progress.point) if client is None else \
                run_dask(plan, store, client, progress.point)
    finally:
        if client is not None:
            client.close()
            if args.scheduler is None:
                client.cluster.close()
    frame = sweep_frame(outcome.rows)
    if args.output:
        write_sweep(frame, args.output, fmt)
    else:
        sys.stdout.write(render_sweep(frame, fmt))
    if args.plot:
        plot_pareto(frame, args.plot)
    print(summary_line(plan, outcome, store), file=sys.stderr)
    return 0


def summary_line(plan, outcome, store) -> str:
    parts = [f"{len(plan.points)} points: {outcome.computed} computed, {outcome.reused} from {store.directory}"]
    if plan.excluded:
        parts.append(f"{plan.excluded} excluded")
    if outcome.failed:
        parts.append(f"{outcome.failed} failed (see the error column)")
    if outcome.damaged:
        parts.append(f"{outcome.damaged} damaged or foreign store entries recomputed")
    seconds = outcome.seconds
    if seconds:
        parts.append(", ".join(f"{kind} {value:.1f} s" for kind, value in sorted(seconds.items())) +
                     f" of task time ({outcome.traces_computed} traces)")
    return "; ".join(parts)

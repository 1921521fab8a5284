"""`simdq tables`: every published cost number of the seed papers (simdq/papers/data/) recounted, side by
side with the printed value, as a table, Markdown, CSV or LaTeX; `-o DIR` writes all of them and a figure."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

FORMATS = ("table", "markdown", "csv", "latex")
OUTPUTS = ("paper-tables.md", "paper-tables.csv", "paper-tables.tex", "paper-tables.png")


def add_parser(commands) -> None:
    from ..papers import paper_names

    tables = commands.add_parser("tables", help="the seed papers' published cost numbers beside simdq's recount")
    tables.add_argument("--paper", action="append", choices=paper_names(), metavar="NAME",
                        help=f"only this paper (repeatable): {', '.join(paper_names())}")
    tables.add_argument("--format", default="table", choices=FORMATS)
    tables.add_argument("-o", "--output", metavar="DIR",
                        help=f"write {', '.join(OUTPUTS)} into DIR (created if missing) instead of printing")
    tables.set_defaults(run=run)


class CaseEstimates:
    """Estimates of the paper cases; each UNet is traced once per input, whatever the number of schemes."""

    def __init__(self):
        self._traces = {}

    def __call__(self, data: dict, device: str, source: str):
        from hw_models import load_device

        from ..config import parse_config, unet_spec
        from ..cost.estimate import estimate_layers
        from .estimate import traced_layers

        config = parse_config(data, source)
        key = json.dumps([config.model.model_dump(), config.input.model_dump(),
                          config.runtime.fused_attention], sort_keys=True, default=str)
        if key not in self._traces:
            self._traces[key] = traced_layers(config)
        return estimate_layers(self._traces[key], config, load_device(device), unet_spec(config), config.input,
                               config.convention, {})


def run(args) -> int:
    from ..errors import SimdqError
    from ..output import write_text
    from ..papers import load_paper, paper_names, recount_papers
    from ..report import paper_tables
    from ..report.plots import check_plot_path

    names = args.paper or paper_names()
    if args.output or args.format == "latex":
        paper_tables.latex_backend()  # checked before the work
    if args.output:
        directory = Path(args.output)
        if directory.exists() and not directory.is_dir():
            raise SimdqError(f"-o {directory}: is a file; give a folder")
        directory.mkdir(parents=True, exist_ok=True)
        check_plot_path(str(directory / OUTPUTS[3]), "-o")
    started = time.perf_counter()
    results = recount_papers(names, CaseEstimates())
    titles = {name: load_paper(name).title for name in names}
    if not args.output:
        render = {"table": paper_tables.render_text, "csv": paper_tables.render_csv,
                  "latex": paper_tables.render_latex,
                  "markdown": lambda rows: paper_tables.render_markdown(rows, titles)}[args.format]
        sys.stdout.write(render(results))
        return 0
    md, csv_name, tex, png = (directory / name for name in OUTPUTS)
    write_text(md, paper_tables.render_markdown(results, titles), "-o")
    write_text(csv_name, paper_tables.render_csv(results), "-o")
    write_text(tex, paper_tables.render_latex(results), "-o")
    paper_tables.plot_size_vs_ops(results, str(png))
    counts = Counter(result.status for result in results)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    print(f"{len(results)} rows ({summary}) in {time.perf_counter() - started:.0f} s: "
          f"{', '.join(str(p) for p in (md, csv_name, tex, png))}")
    return 0

"""`dynamics context RUNS...`: validation loss against context length (analysis/context.py)."""
import os

import click

from analysis.context import figure_context, rows, table_text

from .common import IMAGE_SUFFIXES, load_all, output_file, run_files, saving, writable_dir


@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN.h5|FOLDER ...")
@click.option("-o", "--out", "out", default=os.path.join("figures", "context.png"), show_default=True,
              help="the figure (.png, .pdf or .svg)")
def context(runs, out):
    """Validation loss against context length: MLP runs by window, recurrent runs as lines."""
    output_file(out, IMAGE_SUFFIXES, "the figure")
    table = rows(load_all(run_files(runs)))
    writable_dir(os.path.dirname(out) or ".")
    fig = figure_context(table)
    saving(fig.savefig, out)
    click.echo(table_text(table))
    click.echo(out)

"""`dynamics compare RUN.h5 ...`: runs overlaid in one figure (analysis/compare.py)."""
import os

import click

from analysis.canvas import save
from analysis.compare import describe, figure_compare
from tasks.errors import InputError

from .common import IMAGE_SUFFIXES, load_all, output_file, saving, writable_dir


@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN.h5 ...")
@click.option("-o", "--out", "out", default=os.path.join("figures", "compare.png"),
              show_default=True, metavar="FILE.png", help="output image (.png, .pdf or .svg)")
@click.option("--dpi", default=100, show_default=True, type=click.IntRange(20, 600))
def compare(runs, out, dpi):
    """Overlay runs: validation error, gradient norms, ρ, final log10 g_t, g_t against t."""
    output_file(out, IMAGE_SUFFIXES, "the comparison")
    snaps = load_all(runs)
    writable_dir(os.path.dirname(out) or ".")
    fig = figure_compare(snaps)
    if fig is None:
        raise InputError("none of the runs has data to compare (no checks and no updates recorded)")
    saving(save, fig, out, dpi)
    for line in describe(snaps):
        click.echo(line)
    click.echo(out)

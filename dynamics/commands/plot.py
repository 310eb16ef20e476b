"""`dynamics plot RUN.h5`: the dashboard and one PNG per figure of a run (analysis/figures.py)."""
import os

import click

from analysis.figures import plot_run
from analysis.read import load

from .common import saving, writable_dir


@click.command()
@click.argument("run", metavar="RUN.h5")
@click.option("-o", "--out", "out_dir", default=None, metavar="DIR",
              help="output folder (default: figures/<run name>/)")
@click.option("--dpi", default=100, show_default=True, type=click.IntRange(20, 600),
              help="resolution of the PNG files")
def plot(run, out_dir, dpi):
    """The dashboard <name>_dashboard.png and one PNG per figure of a run."""
    snap = load(run)
    out_dir = out_dir or os.path.join("figures", snap.name)
    writable_dir(out_dir)
    for path in saving(plot_run, snap, out_dir, dpi):
        click.echo(path)

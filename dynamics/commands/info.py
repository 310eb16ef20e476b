"""`dynamics info RUN.h5`: a run's name, status, config, final numbers and verdicts (analysis/info.py)."""
import click

from analysis.info import info_text
from analysis.read import load


@click.command()
@click.argument("run", metavar="RUN.h5")
def info(run):
    """Name, status, config, final figures and verdicts of a run (also while it runs)."""
    click.echo(info_text(load(run)))

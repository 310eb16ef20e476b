"""`dynamics report RUNS... -o FILE.pdf`: the report of some runs, or a lab study's chapter
(analysis/report.py, analysis/lab_report.py)."""
import os

import click

from analysis.lab import is_study
from analysis.lab_report import write_lab
from analysis.report import write_report

from .common import load_all, output_file, run_files, saving, writable_dir


@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN.h5|FOLDER ...")
@click.option("-o", "--out", "out", default=os.path.join("report", "report.pdf"),
              show_default=True, metavar="FILE.pdf",
              help="the PDF; FILE.csv and FILE.md are written beside it")
def report(runs, out):
    """A PDF report: summary table, each run's dashboard, comparisons by task, LM table.

    A folder stands for its run files; a lab study's folder (`make lab`: runs/lab-quick/, with
    lm/, families/, presets/) gets the lab chapter instead, the answers to its questions."""
    output_file(out, (".pdf",), "the report")
    if len(runs) == 1 and is_study(runs[0]):
        writable_dir(os.path.dirname(out) or ".")
        for path in saving(write_lab, runs[0], out):
            click.echo(path)
        return
    snaps = load_all(run_files(runs))
    writable_dir(os.path.dirname(out) or ".")
    for path in saving(write_report, snaps, out):
        click.echo(path)

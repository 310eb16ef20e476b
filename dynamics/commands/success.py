"""`dynamics success FOLDER`: success rate against sequence length for the runs of a sweep
folder, Pascanu et al. Fig. 7 (the figure and its table: analysis/success.py)."""
import click

from analysis.success import plot_success

from .common import IMAGE_SUFFIXES, output_file


@click.command("success", context_settings={"max_content_width": 100})
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="the figure (default: FOLDER/success.png)")
def success(folder, output):
    """Success rate against sequence length for the runs of a sweep FOLDER (Pascanu et al. Fig. 7).

    One line per (init, method) with 95% Wilson intervals, and the iterations needed to solve."""
    if output is not None:
        output_file(output, IMAGE_SUFFIXES, "the figure")
    path, table = plot_success(folder, output)
    for line in table:
        click.echo(line)
    click.echo(f"figure: {path}")

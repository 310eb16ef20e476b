"""`dynamics export RUN.h5 --tensorboard DIR`: a run file's numbers as TensorBoard events
(dynamics/export.py)."""
import click

from ..export import export_tensorboard


@click.command("export", context_settings={"max_content_width": 100})
@click.argument("run", type=click.Path(dir_okay=False))
@click.option("--tensorboard", "folder", metavar="DIR", required=True, type=click.Path(file_okay=False),
              help="write TensorBoard events into DIR/<run name>/ (view with: tensorboard --logdir DIR)")
def export(run, folder):
    """Write a run file's numbers, histograms and samples as TensorBoard events."""
    target = export_tensorboard(run, folder)
    click.echo(f"{target}: events of {run} (tensorboard --logdir {folder})")
